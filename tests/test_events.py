"""Events: per-connection ``seq``, presence and ``stateVersion``, periodic tick/health, the
``hello-ok`` snapshot, and the shutdown sequence (protocol §2.3, §6, §8, §13 facts 13-15).

Socket-level tests use a real gateway on loopback because ordering between responses and
broadcasts, and the close that follows ``shutdown``, only exist on the wire. The periodic
broadcasts are timer-driven, so they run synchronously on a ``task.Clock`` with fake sinks.
"""
from __future__ import annotations

import json

import uuid

import attrs
import orjson
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.methods import absent, absent_workspace
from openclaw.methods.registry import MethodSpec
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.services.maintenance import PeriodicBroadcast
from openclaw.state.clients import ConnectedClient
from openclaw.state.presence import MAX_LISTED_ENTRIES, PresenceTracker

from .support.gateway import make_gateway, start_gateway
from .support.wsclient import CLI_CLIENT, connect, open_client

NODE_CLIENT = {"id": "node-host", "version": "1.0.0", "platform": "linux", "mode": "node"}


@inlineCallbacks
def call(client, method, params=None):
    """Send a req; return ``(response, frames_received_before_it)``."""
    request_id = uuid.uuid4().hex
    client.send({"type": "req", "id": request_id, "method": method, "params": {} if params is None else params})
    before = []
    while True:
        frame = yield client.next_frame()
        if frame.get("type") == "res" and frame.get("id") == request_id:
            return (frame, before)
        before.append(frame)


@inlineCallbacks
def next_event(client, name):
    """The next event called ``name`` (skipping others)."""
    frame = yield client.next_matching(lambda f: f.get("type") == "event" and f.get("event") == name)
    return frame


@inlineCallbacks
def frames_until_closed(client):
    """Everything the client receives until the socket closes."""
    frames = []
    while True:
        try:
            frame = yield client.next_frame()
        except ConnectionError:
            return frames
        frames.append(frame)


@inlineCallbacks
def operator(testcase, running, scopes, **client_fields):
    """A presence-tracked operator: CLI-mode sockets are ephemeral and never enter presence, so
    these use the protocol's ``test`` mode with a (silently paired) device to keep their scopes."""
    client, hello = yield connect(
        testcase,
        running.url,
        scopes=scopes,
        client={**CLI_CLIENT, "mode": "test", **client_fields},
        device=DeviceKeyPair.generate(),
    )
    testcase.assertTrue(hello["ok"], hello)
    return (client, hello["payload"])


@inlineCallbacks
def node(testcase, running):
    client, hello = yield connect(
        testcase, running.url, role="node", client=NODE_CLIENT, scopes=[], device=DeviceKeyPair.generate()
    )
    testcase.assertTrue(hello["ok"], hello)
    return (client, hello["payload"])


class SeqTests(TestCase):
    """``seq`` is per connection, starts at 1, and counts only the events delivered to that client."""

    @inlineCallbacks
    def test_independent_counters(self):
        running = yield start_gateway(self)
        a, _ = yield operator(self, running, ["operator.read"])
        first = yield a.next_frame()
        self.assertEqual((first["event"], first["seq"]), ("presence", 1))  # its own arrival

        b, _ = yield operator(self, running, ["operator.read"])
        a2 = yield a.next_frame()
        b1 = yield b.next_frame()
        self.assertEqual((a2["event"], a2["seq"]), ("presence", 2))
        self.assertEqual((b1["event"], b1["seq"]), ("presence", 1))

        # A CLI socket is ephemeral: its arrival broadcasts nothing, but its system-event does.
        admin, _ = yield connect(self, running.url, scopes=["operator.admin"])
        response, _ = yield call(admin, "system-event", {"text": "probe"})
        self.assertTrue(response["ok"], response)
        a3 = yield a.next_frame()
        b2 = yield b.next_frame()
        self.assertEqual((a3["event"], a3["seq"]), ("presence", 3))
        self.assertEqual((b2["event"], b2["seq"]), ("presence", 2))

        # A client without read never sees presence, so its first event is seq 1 however many
        # events the others have had.
        c, _ = yield operator(self, running, [])
        running.gateway.broadcast_tick()
        ticks = []
        for client in (a, b, c):
            tick = yield next_event(client, "tick")
            ticks.append(tick["seq"])
        self.assertEqual(ticks, [5, 4, 1])  # a also saw c's presence (seq 4), b saw it as 3

    @inlineCallbacks
    def test_responses_and_challenge_carry_no_seq(self):
        running = yield start_gateway(self)
        client = yield open_client(self, running.url)
        self.assertNotIn("seq", client.challenge)
        a, _ = yield operator(self, running, ["operator.read"])
        response, _ = yield call(a, "health")
        self.assertNotIn("seq", response)


class SystemEventTests(TestCase):
    """Golden "system-event (admin)": a presence broadcast (new presence version) precedes the res."""

    @inlineCallbacks
    def test_presence_broadcast_then_ok(self):
        running = yield start_gateway(self)
        gateway = running.gateway
        a, _ = yield operator(self, running, ["operator.admin"])
        yield next_event(a, "presence")
        version = gateway.state_version()

        params = {"text": "golden probe", "instanceId": "golden-probe", "host": "golden", "mode": "test", "reason": "golden"}
        response, before = yield call(a, "system-event", params)
        self.assertEqual(response["payload"], {"ok": True})
        self.assertEqual(len(before), 1, before)
        event = before[0]
        self.assertEqual(list(event), ["type", "event", "payload", "seq", "stateVersion"])
        self.assertEqual(event["event"], "presence")
        self.assertEqual(event["seq"], 2)
        self.assertEqual(event["stateVersion"], {"presence": version["presence"] + 1, "health": version["health"]})
        self.assertEqual(gateway.validators.event_payload_errors("presence", event["payload"]), [])
        self.assertTrue(gateway.validators.event_frame.is_valid(event))

        entries = event["payload"]["presence"]
        self.assertEqual((entries[0]["mode"], entries[0]["reason"]), ("gateway", "self"))
        probe = [entry for entry in entries if entry.get("instanceId") == "golden-probe"]
        self.assertEqual(len(probe), 1, entries)
        self.assertEqual(
            {key: probe[0][key] for key in ("text", "host", "mode", "reason")},
            {"text": "golden probe", "host": "golden", "mode": "test", "reason": "golden"},
        )
        self.assertIsInstance(probe[0]["ts"], int)

        listed, _ = yield call(a, "system-presence")
        self.assertIn("golden-probe", [entry.get("instanceId") for entry in listed["payload"]])


class PresenceLifecycleTests(TestCase):
    """Other clients' arrivals and departures are broadcast as presence to operators with read."""

    @inlineCallbacks
    def test_connect_and_disconnect(self):
        running = yield start_gateway(self)
        watcher, _ = yield operator(self, running, ["operator.read"])
        own = yield next_event(watcher, "presence")

        other, _ = yield operator(
            self, running, ["operator.read", "operator.write"], instanceId="inst-b", displayName="laptop"
        )
        arrived = yield next_event(watcher, "presence")
        self.assertEqual(arrived["stateVersion"]["presence"], own["stateVersion"]["presence"] + 1)
        entries = {entry.get("instanceId"): entry for entry in arrived["payload"]["presence"]}
        self.assertIn("inst-b", entries)
        entry = entries["inst-b"]
        self.assertEqual(entry["clientId"], "cli")
        self.assertEqual(entry["host"], "laptop")
        self.assertEqual(entry["mode"], "test")
        self.assertEqual(entry["reason"], "connect")
        self.assertEqual(entry["roles"], ["operator"])
        self.assertEqual(entry["scopes"], ["operator.read", "operator.write"])
        self.assertEqual(entry["ip"], "127.0.0.1")
        self.assertEqual(running.gateway.validators.event_payload_errors("presence", arrived["payload"]), [])

        yield other.close()
        left = yield next_event(watcher, "presence")
        self.assertEqual(left["stateVersion"]["presence"], arrived["stateVersion"]["presence"] + 1)
        self.assertNotIn("inst-b", [entry.get("instanceId") for entry in left["payload"]["presence"]])
        self.assertEqual(left["seq"], arrived["seq"] + 1)

    @inlineCallbacks
    def test_cli_backend_and_probe_sockets_are_ephemeral(self):
        """As in the reference: short-lived control-plane sockets never enter presence, so their
        comings and goings broadcast nothing (a thousand CLI calls cost no presence traffic)."""
        running = yield start_gateway(self)
        watcher, _ = yield operator(self, running, ["operator.read"])
        yield next_event(watcher, "presence")
        for mode, client_id in (("cli", "cli"), ("backend", "gateway-client"), ("probe", "cli")):
            ephemeral, hello = yield connect(
                self, running.url, scopes=["operator.read"], client={**CLI_CLIENT, "id": client_id, "mode": mode}
            )
            self.assertTrue(hello["ok"], hello)
            modes = [entry.get("mode") for entry in running.gateway.presence.entries()]
            self.assertEqual(modes, ["gateway", "test"], mode)
            yield ephemeral.close()
        response, before = yield call(watcher, "health")
        self.assertTrue(response["ok"])
        self.assertEqual([frame["event"] for frame in before], [])
        self.assertEqual(running.gateway.state_version()["presence"], 1)

    @inlineCallbacks
    def test_pairing_only_client_gets_no_presence(self):
        """presence needs operator.read; pairing does not imply it, and nodes never get it."""
        running = yield start_gateway(self)
        pairing_only, _ = yield operator(self, running, ["operator.pairing"])
        node_client, _ = yield node(self, running)
        reader, _ = yield operator(self, running, ["operator.read"])
        got = yield next_event(reader, "presence")
        self.assertEqual(got["seq"], 1)

        seen = {}
        for client in (pairing_only, node_client):
            response, before = yield call(client, "health")
            self.assertTrue(response["ok"])
            self.assertNotIn("presence", [frame["event"] for frame in before])
            seen[client] = len(before)
        # The pairing client does see the node's (silent) pairing; the node sees nothing.
        self.assertEqual(seen[node_client], 0)
        # Both get ungated events, and their seq counted only what they were sent.
        running.gateway.broadcast_tick()
        for client in (pairing_only, node_client):
            tick = yield client.next_frame()
            self.assertEqual((tick["event"], tick["seq"]), ("tick", seen[client] + 1))


@attrs.define
class FakeSink:
    """Stands in for a connection: records each frame it is handed."""

    frames: list = attrs.field(factory=list)
    droppable: list = attrs.field(factory=list)
    closed: tuple | None = None

    def deliver_frame(self, frame: bytes, *, droppable: bool) -> bool:
        self.frames.append(orjson.loads(frame))
        self.droppable.append(droppable)
        return True

    def close_with(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def add_client(gateway, conn_id, role, scopes):
    sink = FakeSink()
    gateway.clients.add(
        ConnectedClient(
            conn_id=conn_id,
            role=role,
            scopes=frozenset(scopes),
            client={"id": "cli", "mode": "cli"},
            sink=sink,
            connected_at_ms=0,
        )
    )
    return sink


class PeriodicBroadcastTests(SynchronousTestCase):
    """tick every tickIntervalMs and a health refresh every 60 s, to everyone including nodes."""

    def setUp(self):
        self.clock = Clock()
        self.gateway = make_gateway(self, clock=self.clock)
        settings = self.gateway.settings
        self.tick = PeriodicBroadcast(self.clock, settings.tick_interval_ms / 1000.0, self.gateway.broadcast_tick, what="tick")
        self.health = PeriodicBroadcast(
            self.clock, settings.health_refresh_interval_ms / 1000.0, self.gateway.broadcast_health, what="health"
        )
        self.operator = add_client(self.gateway, "op", "operator", [])
        self.node = add_client(self.gateway, "node", "node", [])
        self.admin = add_client(self.gateway, "admin", "operator", ["operator.admin"])
        for service in (self.tick, self.health):
            service.startService()
            self.addCleanup(lambda service=service: service.stopService() if service.running else None)

    def test_default_intervals(self):
        self.assertEqual(self.gateway.settings.tick_interval_ms, 30_000)
        self.assertEqual(self.gateway.settings.health_refresh_interval_ms, 60_000)

    def test_tick_every_interval(self):
        self.clock.advance(29.999)
        self.assertEqual(self.node.frames, [])
        self.clock.advance(0.001)
        for sink in (self.operator, self.node, self.admin):
            self.assertEqual(sink.frames, [{"type": "event", "event": "tick", "payload": {"ts": 30_000}, "seq": 1}])
        self.clock.advance(30)
        ticks = [frame for frame in self.node.frames if frame["event"] == "tick"]
        self.assertEqual([tick["payload"]["ts"] for tick in ticks], [30_000, 60_000])

    def test_health_every_minute_with_new_version(self):
        # Clock.advance jumps, so step no further than one tick at a time.
        self.clock.pump([30, 29.5])
        self.assertEqual([frame["event"] for frame in self.node.frames], ["tick"])
        self.clock.pump([0.5, 30, 30])
        for sink in (self.operator, self.node, self.admin):
            health = [(frame, droppable) for frame, droppable in zip(sink.frames, sink.droppable, strict=True) if frame["event"] == "health"]
            self.assertEqual([frame["stateVersion"] for frame, _ in health], [{"presence": 0, "health": 1}, {"presence": 0, "health": 2}])
            self.assertEqual([droppable for _, droppable in health], [False, False])  # health is not dropIfSlow
            self.assertIs(health[0][0]["payload"]["ok"], True)
            self.assertEqual(health[1][0]["payload"]["ts"], 120_000)
            self.assertEqual(self.gateway.validators.event_payload_errors("health", health[0][0]["payload"]), [])
            # seq runs across both kinds of event without gaps
            self.assertEqual([frame["seq"] for frame in sink.frames], list(range(1, len(sink.frames) + 1)))
            self.assertEqual(len(sink.frames), 6)  # 4 ticks, 2 health
        self.assertEqual(self.gateway.state_version(), {"presence": 0, "health": 2})

    def test_stop_stops(self):
        self.tick.stopService()
        self.health.stopService()
        self.clock.advance(600)
        self.assertEqual(self.node.frames, [])

    def test_failure_does_not_stop_the_loop(self):
        """One exception must not kill the LoopingCall (pitfall 11)."""
        calls = []

        def flaky():
            calls.append(self.clock.seconds())
            raise RuntimeError("broadcast failed")

        service = PeriodicBroadcast(self.clock, 5, flaky, what="flaky")
        service.startService()
        self.addCleanup(service.stopService)
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(calls, [5, 10])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class HelloSnapshotTests(TestCase):
    """What ``hello-ok`` tells a client about the gateway it joined (§2.3)."""

    @inlineCallbacks
    def test_snapshot_fields(self):
        running = yield start_gateway(self)
        gateway = running.gateway
        a, hello = yield operator(self, running, ["operator.admin"])
        self.assertTrue(gateway.validators.hello_ok.is_valid(hello), gateway.validators.hello_ok.errors(hello))
        snapshot = hello["snapshot"]
        self.assertEqual(snapshot["stateVersion"], {"presence": 0, "health": 0})
        self.assertEqual(snapshot["presence"][0]["reason"], "self")
        self.assertIs(snapshot["health"]["ok"], True)
        self.assertIsInstance(snapshot["uptimeMs"], int)
        self.assertGreaterEqual(snapshot["uptimeMs"], 0)
        self.assertEqual(
            snapshot["sessionDefaults"],
            {**gateway.session_defaults(), "defaultAgentId": "main", "mainKey": "main", "mainSessionKey": "agent:main:main"},
        )
        self.assertEqual(snapshot["authMode"], "token")
        self.assertEqual(snapshot["stateDir"], gateway.settings.state_dir)

        own = yield next_event(a, "presence")
        self.assertEqual(own["stateVersion"]["presence"], 1)

        # A later client's snapshot already holds the earlier client and the bumped version.
        b, hello_b = yield operator(self, running, ["operator.read"], instanceId="second")
        self.assertEqual(hello_b["snapshot"]["stateVersion"]["presence"], 1)
        self.assertIn("cli", [entry.get("clientId") for entry in hello_b["snapshot"]["presence"]])

    @inlineCallbacks
    def test_sensitive_fields_only_for_admin(self):
        running = yield start_gateway(self)
        gateway = running.gateway
        gateway.settings = attrs.evolve(gateway.settings, config_path="/tmp/openclaw-test/openclaw.json")
        _, admin = yield operator(self, running, ["operator.admin"])
        self.assertEqual(admin["snapshot"]["configPath"], "/tmp/openclaw-test/openclaw.json")
        self.assertEqual(admin["snapshot"]["stateDir"], gateway.settings.state_dir)
        _, other = yield operator(
            self, running, ["operator.read", "operator.write", "operator.approvals", "operator.pairing"]
        )
        self.assertNotIn("configPath", other["snapshot"])
        self.assertNotIn("stateDir", other["snapshot"])

    @inlineCallbacks
    def test_features_and_policy(self):
        running = yield start_gateway(self)
        gateway = running.gateway
        gateway.methods.add(MethodSpec("test.hidden", lambda ctx: None, advertised=False))
        gateway.methods.add(MethodSpec("test.visible", lambda ctx: None))
        _, hello = yield operator(self, running, [])
        methods = hello["features"]["methods"]
        self.assertEqual(methods, gateway.methods.advertised())
        self.assertEqual(len(methods), len(set(methods)))
        self.assertEqual(
            set(methods),
            {
                "health",
                "status",
                "system-presence",
                "system-event",
                "device.pair.list",
                "device.pair.approve",
                "device.pair.reject",
                "device.pair.remove",
                "device.pair.rename",
                "device.token.rotate",
                "device.token.revoke",
                "sessions.subscribe",
                "sessions.unsubscribe",
                "sessions.list",
                "sessions.preview",
                "sessions.patch",
                "sessions.reset",
                "sessions.delete",
                "sessions.compact",
                "chat.send",
                "chat.history",
                "chat.abort",
                "agent",
                "agent.wait",
                "models.list",
                "agents.list",
                "config.get",
                "config.schema",
                "config.schema.lookup",
                "config.set",
                "config.patch",
                "config.apply",
                "last-heartbeat",
                "set-heartbeats",
                "logs.tail",
                "node.list",
                "node.describe",
                "node.rename",
                "node.invoke",
                "node.invoke.result",
                "node.event",
                "node.skills.update",
                "node.pluginTools.update",
                "node.pair.list",
                "node.pair.approve",
                "node.pair.reject",
                "node.pair.remove",
                "wake",
                "diagnostics.stability",
                "usage.cost",
                "channels.status",
                "skills.status",
                "commands.list",
                "exec.approval.request",
                "exec.approval.list",
                "exec.approval.get",
                "exec.approval.resolve",
                "exec.approval.waitDecision",
                "exec.approval.grants.list",
                "exec.approval.grants.revoke",
                "approval.get",
                "approval.resolve",
                "approval.history",
                "exec.approvals.get",
                "exec.approvals.set",
                "exec.approvals.node.get",
                "exec.approvals.node.set",
                "test.visible",
                # what the Control UI opens a chat with
                "chat.startup",
                "chat.metadata",
                "sessions.describe",
                "sessions.create",
                "sessions.messages.subscribe",
                "sessions.messages.unsubscribe",
                "sessions.observer.visibility",
                "agent.identity.get",
                "models.authStatus",
                # its Systems, Usage and Debug pages
                "system.info",
                "environments.list",
                "usage.status",
                "sessions.usage",
                "diagnostics.lanes",
                "themes.list",
                "themes.get",
            }
            # truthfully empty reads of families this gateway lacks (their writes are not advertised)
            | {spec.name for family in (absent, absent_workspace) for spec in family.methods() if spec.advertised},
        )
        self.assertNotIn("test.hidden", methods)
        self.assertNotIn("cron.add", methods)
        events = hello["features"]["events"]
        for name in ("connect.challenge", "presence", "tick", "health", "shutdown"):
            self.assertIn(name, events)
        policy = hello["policy"]
        self.assertEqual(policy["maxPayload"], 26_214_400)
        self.assertEqual(policy["maxBufferedBytes"], 52_428_800)
        self.assertEqual(policy["tickIntervalMs"], 30_000)
        self.assertEqual(policy["attachments"], {"maxBytes": 20_971_520, "maxImageBytes": 6_291_456})


class ShutdownTests(TestCase):
    """Stopping the WebSocket service: ``shutdown`` to everyone, then close 1012 (§8)."""

    @inlineCallbacks
    def test_shutdown_event_then_1012(self):
        running = yield start_gateway(self)
        admin, _ = yield operator(self, running, ["operator.admin"])
        bare, _ = yield operator(self, running, [])
        node_client, _ = yield node(self, running)
        yield running.websocket.stopService()
        self.assertEqual(running.factory.connections, set())
        self.assertFalse(running.gateway.accepting)

        for client in (admin, bare, node_client):
            frames = yield frames_until_closed(client)
            seqs = [frame["seq"] for frame in frames]
            self.assertEqual(seqs, list(range(1, len(frames) + 1)))
            shutdown = frames[-1]
            self.assertEqual(
                shutdown,
                {"type": "event", "event": "shutdown", "payload": {"reason": "gateway stopping"}, "seq": len(frames)},
            )
            self.assertEqual((client.close_code, client.close_reason), (1012, "service restart"))
        self.assertEqual(len(seqs), 1)  # the node gets nothing but the shutdown

    @inlineCallbacks
    def test_restart_expected(self):
        running = yield start_gateway(self)
        client, _ = yield operator(self, running, [])
        running.websocket.restart_expected_ms = 5000
        yield running.websocket.stopService()
        frames = yield frames_until_closed(client)
        self.assertEqual(frames[-1]["payload"], {"reason": "gateway stopping", "restartExpectedMs": 5000})
        self.assertEqual(client.close_code, 1012)

    @inlineCallbacks
    def test_unauthenticated_socket_is_closed_without_event(self):
        """A socket still in the handshake gets no shutdown event (it was never admitted) but is closed."""
        running = yield start_gateway(self)
        pending = yield open_client(self, running.url)
        yield running.websocket.stopService()
        frames = yield frames_until_closed(pending)
        self.assertEqual(frames, [])
        self.assertEqual((pending.close_code, pending.close_reason), (1012, "service restart"))

    @inlineCallbacks
    def test_connect_during_drain(self):
        running = yield start_gateway(self)
        existing, _ = yield operator(self, running, [])
        stopping = running.websocket.stopService()
        late, response = yield connect(self, running.url, scopes=[])
        self.assertIs(response["ok"], False)
        error = response["error"]
        self.assertEqual(error["code"], "UNAVAILABLE")
        self.assertEqual(error["message"], "connect unavailable during gateway restart")
        self.assertIs(error["retryable"], True)
        self.assertEqual(error["retryAfterMs"], 1000)
        yield late.closed
        self.assertEqual((late.close_code, late.close_reason), (1013, "gateway restart in progress"))
        yield stopping
        yield existing.closed


class ShutdownDeliveryTests(SynchronousTestCase):
    """A client that is already backed up must be told 1012, not dropped as a slow consumer."""

    def test_shutdown_event_is_droppable_and_every_socket_gets_1012(self):
        from openclaw.services.websocket import WebSocketService
        from openclaw.state.clients import ConnectedClient

        class Sink:
            def __init__(self):
                self.delivered = []
                self.closed = []

            def deliver_frame(self, frame, *, droppable):
                self.delivered.append((json.loads(frame), droppable))
                return True

            def close_with(self, code, reason):
                self.closed.append((code, reason))

        class Factory:
            def __init__(self, connections):
                self.connections = set(connections)
                self.stopped = False
                self.drained = Deferred()

            def startFactory(self):
                pass

            def stopFactory(self):
                self.stopped = True

            def when_drained(self):
                return self.drained

        class Connection:
            conn_id = "c1"

            def __init__(self):
                self.closed = []
                self.aborted = False

            def close_with(self, code, reason):
                self.closed.append((code, reason))

            def dropConnection(self, abort=False):
                self.aborted = abort
                factory.connections.discard(self)
                factory.drained.callback(None)

        clock = Clock()
        gateway = make_gateway(self, clock=clock)
        sink = Sink()
        gateway.clients.add(
            ConnectedClient(conn_id="c1", role="operator", scopes=frozenset(), client={}, sink=sink, connected_at_ms=0)
        )
        connection = Connection()
        factory = Factory([connection])
        service = WebSocketService(gateway, factory, clock)
        service.startService()
        service.stopService()
        self.assertEqual([(frame["event"], droppable) for frame, droppable in sink.delivered], [("shutdown", True)])
        self.assertEqual(connection.closed, [(1012, "service restart")])
        self.assertFalse(factory.stopped)
        clock.advance(1)  # the grace period ends: a peer that never answered is aborted
        self.assertTrue(connection.aborted)
        self.assertTrue(factory.stopped)


class PresenceListCapTests(SynchronousTestCase):
    """The listing holds the gateway and the 199 freshest entries, as the reference's does."""

    def test_oldest_entries_fall_out_of_the_listing(self):
        clock = Clock()
        tracker = PresenceTracker(clock, version="1", instance_id="gw")
        for index in range(250):
            clock.advance(1)
            tracker.client_connected(f"key-{index}", f"conn-{index}", {"mode": "webchat", "instanceId": f"i-{index}"})
        listed = tracker.entries()
        self.assertEqual(len(listed), MAX_LISTED_ENTRIES)
        self.assertEqual(listed[0]["reason"], "self")
        self.assertEqual([entry["instanceId"] for entry in listed[1:]], [f"i-{index}" for index in range(51, 250)])
        tracker.client_disconnected("key-249", "conn-249")
        self.assertIn("i-50", [entry.get("instanceId") for entry in tracker.entries()])
