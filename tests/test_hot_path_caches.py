"""The hot paths' caches (issue 18): each gives the same bytes as the uncached code, and each is
invalidated by what changes its source.

hello-ok's pre-encoded parts (features, policy, the health snapshot), the registry's advertised
list, the empty-params verdict of a validator, the request-frame shortcut and the loopback
shortcut; all of them hold one entry per key, so their bound is structural.
"""
from __future__ import annotations

from typing import Any

import attrs
import orjson
from hypothesis import given, settings, strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.connection.handshake import Admission, ConnectionInfo
from openclaw.protocol.errors import GatewayError
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.methods.registry import MethodSpec
from openclaw.protocol.schema.common import integer, obj
from openclaw.protocol.validation import ProtocolValidators, SchemaValidator, is_plain_request
from openclaw.security.rate_limit import is_loopback
from openclaw.state.clients import ConnectedClient

from .support.gateway import make_gateway
from .support.wsclient import TOKEN, connect_params

CLI_CLIENT = {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"}
VALIDATORS = ProtocolValidators()


class _Sink:
    def deliver_frame(self, frame: bytes, *, droppable: bool) -> bool:
        return True

    def close_with(self, code: int, reason: str) -> None:
        pass


class HelloOkCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.gateway = make_gateway(self, clock=self.clock)

    def hello_bytes(self) -> tuple[bytes, bytes]:
        client = ConnectedClient(
            conn_id="c1", role="operator", scopes=frozenset({"operator.read"}), client=dict(CLI_CLIENT),
            sink=_Sink(), connected_at_ms=self.gateway.now_ms(), remote_ip="127.0.0.1", auth_method="token",
        )
        admission = Admission(protocol=4, role="operator", scopes=("operator.read",), params={"client": CLI_CLIENT}, auth_method="token")
        plain = orjson.dumps(self.gateway.hello_ok(client, admission))
        wire = orjson.dumps(self.gateway.hello_ok_for_wire(client, admission))
        return plain, wire

    def test_wire_hello_is_byte_for_byte_the_plain_one(self) -> None:
        for _ in range(2):  # the second time from the cache
            plain, wire = self.hello_bytes()
            self.assertEqual(plain, wire)

    def test_a_method_registered_later_is_advertised_at_once(self) -> None:
        self.hello_bytes()
        self.gateway.methods.add(MethodSpec("bench.later", lambda ctx: {}))
        plain, wire = self.hello_bytes()
        self.assertEqual(plain, wire)
        self.assertIn("bench.later", orjson.loads(wire)["features"]["methods"])

    def test_a_changed_event_list_is_advertised_at_once(self) -> None:
        self.hello_bytes()
        self.gateway.events.append("bench.event")
        _, wire = self.hello_bytes()
        self.assertIn("bench.event", orjson.loads(wire)["features"]["events"])

    def test_reloaded_policy_settings_are_sent_at_once(self) -> None:
        self.hello_bytes()
        self.gateway.settings = attrs.evolve(self.gateway.settings, max_payload=1234, tick_interval_ms=5000)
        plain, wire = self.hello_bytes()
        self.assertEqual(plain, wire)
        policy = orjson.loads(wire)["policy"]
        self.assertEqual((policy["maxPayload"], policy["tickIntervalMs"]), (1234, 5000))

    def test_a_rebuilt_health_snapshot_replaces_the_encoded_one(self) -> None:
        _, before = self.hello_bytes()
        self.clock.advance(3)  # past the health cache's 2 s
        plain, after = self.hello_bytes()
        self.assertEqual(plain, after)
        self.assertGreater(orjson.loads(after)["snapshot"]["health"]["ts"], orjson.loads(before)["snapshot"]["health"]["ts"])
        self.gateway.health.refresh()
        self.assertEqual(orjson.loads(orjson.dumps(self.gateway.health.current_json())), self.gateway.health.current())

    def test_callers_cannot_alter_the_cached_parts(self) -> None:
        plain = orjson.loads(self.hello_bytes()[0])
        client = ConnectedClient(
            conn_id="c2", role="operator", scopes=frozenset(), client=dict(CLI_CLIENT), sink=_Sink(), connected_at_ms=0,
        )
        admission = Admission(protocol=4, role="operator", scopes=(), params={"client": CLI_CLIENT}, auth_method="token")
        self.gateway.hello_ok(client, admission)["features"]["methods"].clear()
        self.assertEqual(orjson.loads(self.hello_bytes()[1])["features"], plain["features"])


class AdvertisedListTests(SynchronousTestCase):
    def test_list_follows_registrations_and_is_a_copy(self) -> None:
        gateway = make_gateway(self)
        first = gateway.methods.advertised()
        first.clear()
        self.assertTrue(gateway.methods.advertised())
        gateway.methods.add(MethodSpec("hidden.one", lambda ctx: {}, advertised=False))
        gateway.methods.add(MethodSpec("shown.one", lambda ctx: {}))
        names = gateway.methods.advertised()
        self.assertIn("shown.one", names)
        self.assertNotIn("hidden.one", names)


class EmptyParamsTests(SynchronousTestCase):
    def test_empty_params_verdict_is_the_schemas(self) -> None:
        required = SchemaValidator(obj({"n": integer(0)}, ("n",)))
        optional = SchemaValidator(obj({"n": integer(0)}))
        for _ in range(2):
            self.assertFalse(required.is_valid({}))
            self.assertEqual(required.errors({}), ["must have required property 'n'"])
            self.assertTrue(optional.is_valid({}))
        self.assertTrue(required.is_valid({"n": 1}))
        self.assertFalse(optional.is_valid({"n": -1}))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
frames = st.dictionaries(
    st.sampled_from(["type", "id", "method", "params", "traceparent", "extra"]),
    st.sampled_from(["req", "res", "", "1", "health"]) | json_values,
    max_size=5,
)


class RequestFrameShortcutTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(frames)
    def test_shortcut_never_accepts_what_the_schema_refuses(self, frame) -> None:
        if is_plain_request(frame):
            self.assertTrue(VALIDATORS.request_frame.is_valid(frame))
        self.assertEqual(VALIDATORS.request_frame_ok(frame), VALIDATORS.request_frame.is_valid(frame))

    def test_the_usual_frame_takes_the_shortcut(self) -> None:
        self.assertTrue(is_plain_request({"type": "req", "id": "1", "method": "health", "params": {}}))
        self.assertFalse(is_plain_request({"type": "req", "id": "1", "method": "health", "traceparent": "x"}))
        self.assertFalse(is_plain_request({"type": "req", "id": "", "method": "health"}))


class LoopbackShortcutTests(SynchronousTestCase):
    def test_shortcut_agrees_with_parsing(self) -> None:
        for address, expected in [
            ("127.0.0.1", True), ("::1", True), ("127.0.0.2", True), ("::ffff:127.0.0.1", True),
            ("10.0.0.1", False), ("localhost", True), ("", False), (None, False), ("example", False),
        ]:
            self.assertEqual(is_loopback(address), expected, address)


class BroadcastFrameTests(SynchronousTestCase):
    """Broadcast frames are event_frame's bytes, each with the recipient's own seq."""

    def test_frames_match_event_frame(self) -> None:
        from openclaw.state.clients import ClientRegistry, event_frame

        class Keep(_Sink):
            def __init__(self) -> None:
                self.frames: list[bytes] = []

            def deliver_frame(self, frame: bytes, *, droppable: bool) -> bool:
                self.frames.append(frame)
                return True

        registry = ClientRegistry()
        sinks = [Keep(), Keep()]
        for index, sink in enumerate(sinks):
            registry.add(ConnectedClient(
                conn_id=f"c{index}", role="operator", scopes=frozenset({"operator.read"}), client=dict(CLI_CLIENT),
                sink=sink, connected_at_ms=0, seq=index * 7,
            ))
        payload = {"presence": [{"text": "é"}]}
        registry.broadcast("presence", payload, state_version={"presence": 3, "health": 1})
        registry.broadcast("tick", {"ts": 1})
        for index, sink in enumerate(sinks):
            self.assertEqual(sink.frames, [
                event_frame(b'"presence"', orjson.dumps(payload), index * 7 + 1, b'{"presence":3,"health":1}'),
                event_frame(b'"tick"', b'{"ts":1}', index * 7 + 2, None),
            ])


class _PendingWrites:
    """A database whose writes wait until the test fires them: the disk as seen from the reactor."""

    def __init__(self) -> None:
        self.writes: list[Deferred[Any]] = []

    def run(self, work: Any) -> Deferred[Any]:
        self.writes.append(Deferred())
        return self.writes[-1]


class DeviceTokenMemoryTests(SynchronousTestCase):
    """Paired devices and their tokens are read from memory on every handshake (last-used written
    behind), and a revoke is seen by the very next handshake, before its own write has finished."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.gateway = make_gateway(self, clock=self.clock)
        self.key = DeviceKeyPair.generate()
        first = self.successResultOf(self.admit({"token": TOKEN}))  # silently paired: a local CLI
        self.device_token = first.device_token.token
        self.store = self.gateway.pairing.store
        self.disk = _PendingWrites()
        self.patch(self.store._db, "run", self.disk.run)

    def admit(self, auth: dict[str, Any]) -> Deferred[Admission]:
        nonce = f"n{len(self.clock.getDelayedCalls())}-{self.clock.seconds()}"
        info = ConnectionInfo(conn_id="c", nonce=nonce, remote_ip="127.0.0.1", headers={"host": "127.0.0.1:18789"})
        params = connect_params(device=self.key, nonce=nonce, auth=auth, signed_at_ms=self.gateway.now_ms())
        return self.gateway.handshake.admit(info, params)

    def test_a_stale_last_used_time_is_written_behind(self) -> None:
        self.clock.advance(61)  # past the once-a-minute last-used write
        admission = self.successResultOf(self.admit({"deviceToken": self.device_token}))
        self.assertEqual(admission.auth_method, "device-token")
        self.assertEqual(len(self.disk.writes), 2)  # paired device's last-seen and the token's last-used
        self.assertEqual(admission.device_token.last_used_at_ms, self.gateway.now_ms())

    def test_a_confirmed_token_costs_no_write(self) -> None:
        self.successResultOf(self.admit({"deviceToken": self.device_token}))
        self.assertEqual(self.disk.writes, [])

    def test_a_revoked_token_is_refused_at_once(self) -> None:
        revoked = self.gateway.pairing.revoke_token(self.key.device_id, "operator")
        self.assertNoResult(revoked)  # its delete is still on the way to the disk
        failure = self.failureResultOf(self.admit({"deviceToken": self.device_token}), GatewayError)
        self.assertEqual(failure.value.details["authReason"], "device_token_mismatch")

    def test_a_failed_write_behind_does_not_bring_back_a_revoked_token(self) -> None:
        self.clock.advance(61)
        self.successResultOf(self.admit({"deviceToken": self.device_token}))
        token_write = self.disk.writes[-1]
        self.gateway.pairing.revoke_token(self.key.device_id, "operator")
        token_write.errback(OSError("disk full"))
        self.assertIsNone(self.store.token(self.key.device_id, "operator"))
        self.failureResultOf(self.admit({"deviceToken": self.device_token}), GatewayError)
        self.flushLoggedErrors(OSError)

    def test_a_changed_scope_waits_for_its_write(self) -> None:
        paired_scopes = list(self.store.paired(self.key.device_id).scopes)
        self.store.token(self.key.device_id, "operator").scopes = ["operator.read"]
        pending = self.admit({"token": TOKEN})
        self.assertNoResult(pending)  # the token's new scopes are a real change: hello-ok waits for the disk
        self.disk.writes[-1].callback(None)
        self.assertEqual(self.successResultOf(pending).device_token.scopes, paired_scopes)


class ConnectionCountTests(SynchronousTestCase):
    """``status`` reads the counts on every call, so they are kept as clients come and go."""

    def test_counts_follow_adds_removes_and_replacements(self):
        from openclaw.state.clients import ClientRegistry

        def client(conn_id: str, role: str) -> ConnectedClient:
            return ConnectedClient(conn_id=conn_id, role=role, scopes=frozenset(), client={}, sink=_Sink(), connected_at_ms=0)

        registry = ClientRegistry()
        registry.add(client("a", "operator"))
        registry.add(client("b", "node"))
        registry.add(client("c", "operator"))
        self.assertEqual(registry.counts(), {"total": 3, "operators": 2, "nodes": 1})
        registry.add(client("c", "node"))  # the same connection id again replaces, never double-counts
        self.assertEqual(registry.counts(), {"total": 3, "operators": 1, "nodes": 2})
        self.assertIsNotNone(registry.remove("a"))
        self.assertIsNone(registry.remove("a"))  # a second remove changes nothing
        self.assertEqual(registry.counts(), {"total": 2, "operators": 0, "nodes": 2})
