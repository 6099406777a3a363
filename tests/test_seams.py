"""Today's single-process parts declare the seams of :mod:`openclaw.seams`, and really provide them."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from openclaw import seams
from openclaw.agents.dedupe import IdempotencyCache
from openclaw.parts import local_parts
from openclaw.security.rate_limit import AuthRateLimiter
from openclaw.state.clients import LOCAL_EVENTS, ClientRegistry, ConnectedClient
from openclaw.stores import devices, nodes, sessions
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase


class LocalPartsTests(SynchronousTestCase):
    def test_single_process_classes_provide_the_interfaces(self):
        clock = Clock()
        directory = self.mktemp()
        database = lambda name, migrations: SQLiteDatabase(f"{directory}/{name}", migrations, InlineExecutor())
        verifyObject(seams.IDeviceStore, devices.DeviceStore(database("d", devices.MIGRATIONS)))
        verifyObject(seams.INodeStore, nodes.NodeStore(database("n", nodes.MIGRATIONS)))
        verifyObject(seams.ISessionStore, sessions.SessionStore(database("s", sessions.MIGRATIONS), directory))
        parts = local_parts()
        verifyObject(seams.IPresence, parts.presence(clock, version="1", instance_id="i", ip=None))
        verifyObject(seams.INodeRegistry, parts.nodes(clock))
        verifyObject(seams.IAuthRateLimiter, AuthRateLimiter(clock))
        verifyObject(seams.IIdempotencyCache, IdempotencyCache(clock))
        self.assertIsNone(parts.relay)

    def test_device_store_refresh_answers_at_once(self):
        store = devices.DeviceStore(SQLiteDatabase(f"{self.mktemp()}/d", devices.MIGRATIONS, InlineExecutor()))
        self.assertIsNone(self.successResultOf(store.refresh("any")))


class Sink:
    def __init__(self):
        self.frames = []

    def deliver_frame(self, frame, *, droppable):
        self.frames.append(frame)
        return True

    def close_with(self, code, reason):
        pass


class RecordingRelay:
    def __init__(self):
        self.relayed = []

    def relay(self, event, payload_json, drop_if_slow, topic):
        self.relayed.append((event, payload_json, drop_if_slow, topic))


class RelayTests(SynchronousTestCase):
    def client(self, registry, conn_id, scopes=("operator.read",)):
        client = ConnectedClient(conn_id, "operator", frozenset(scopes), {"id": "cli"}, Sink(), 0)
        registry.add(client)
        return client

    def test_broadcast_is_delivered_here_and_relayed_once_encoded(self):
        relay = RecordingRelay()
        registry = ClientRegistry(relay=relay)
        client = self.client(registry, "c1")
        registry.broadcast("node.event", {"a": 1})
        self.assertEqual(relay.relayed, [("node.event", b'{"a":1}', False, None)])
        self.assertEqual(client.sink.frames, [b'{"type":"event","event":"node.event","payload":{"a":1},"seq":1}'])

    def test_local_events_are_not_relayed(self):
        relay = RecordingRelay()
        registry = ClientRegistry(relay=relay)
        self.client(registry, "c1")
        for event in sorted(LOCAL_EVENTS):
            registry.broadcast(event, {})
        self.assertEqual(relay.relayed, [])

    def test_encoded_delivery_gates_scopes_and_counts_seq_locally(self):
        registry = ClientRegistry()
        reader = self.client(registry, "r")
        nobody = self.client(registry, "n", scopes=())
        reader.seq = 41
        registry.deliver_encoded("node.event", b'{"x":true}')
        self.assertEqual(reader.sink.frames, [b'{"type":"event","event":"node.event","payload":{"x":true},"seq":42}'])
        self.assertEqual(nobody.sink.frames, [])
