"""GatewayClient against our gateway over real loopback sockets."""
from __future__ import annotations

import json
import os
import stat

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.client import ClientOptions, GatewayCallError, GatewayClient
from openclaw.client.client import TICK_WATCHDOG_CLOSE_CODE, TLS_PIN_MISMATCH
from openclaw.client.identity import DeviceTokenStore, load_or_create_identity
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.security.scopes import ADMIN, PAIRING, READ, WRITE
from openclaw.tls.certificates import fingerprint_sha256, generate_self_signed
from openclaw.tls.server import server_options

from .support.gateway import TOKEN, start_gateway

ALL = (ADMIN, READ, WRITE, PAIRING)


def wait_for(predicate, clock=reactor, limit=2000):
    """Poll ``predicate`` once per reactor turn (bounded), without sleeping."""
    d = Deferred()

    def check(remaining):
        if predicate():
            d.callback(None)
        elif remaining <= 0:
            d.errback(AssertionError("condition never became true"))
        else:
            clock.callLater(0, check, remaining - 1)

    check(limit)
    return d


class ClientTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.running = yield start_gateway(self)

    def client(self, clock=None, url=None, **options):
        events = []
        closes = []
        gaps = []
        snapshots = []
        errors = []
        options.setdefault("token", TOKEN)
        options.setdefault("scopes", ALL)
        client = GatewayClient(
            ClientOptions(url=url or self.running.url, **options),
            clock=clock,
            on_event=lambda event, payload, frame: events.append((event, payload, frame)),
            on_close=lambda code, reason, hint: closes.append((code, reason, hint)),
            on_gap=gaps.append,
            on_snapshot=snapshots.append,
            on_connect_error=errors.append,
        )
        client.events, client.closes, client.gaps, client.snapshots, client.errors = events, closes, gaps, snapshots, errors
        self.addCleanup(client.close)
        return client

    def retry_delay(self, client, clock):
        self.assertIsNotNone(client._retry, "the client is not going to reconnect")
        return client._retry.getTime() - clock.seconds()

    @inlineCallbacks
    def test_connect_call_and_events(self):
        client = self.client(device=DeviceKeyPair.generate())
        hello = yield client.connect()
        self.assertEqual(hello["type"], "hello-ok")
        self.assertEqual(hello["protocol"], 4)
        health = yield client.call("health")
        self.assertIs(health["ok"], True)
        self.running.gateway.broadcast_tick()
        yield wait_for(lambda: any(event == "tick" for event, _, _ in client.events))

    @inlineCallbacks
    def test_failed_call_is_a_gateway_call_error(self):
        client = self.client()
        yield client.connect()
        with self.assertRaises(GatewayCallError) as caught:
            yield client.call("sessions.list", {"limit": 0})
        self.assertEqual(caught.exception.code, "INVALID_REQUEST")
        self.assertIn("limit", caught.exception.message)

    @inlineCallbacks
    def test_wrong_token_fails_connect_without_reconnecting(self):
        client = self.client(token="wrong")
        with self.assertRaises(GatewayCallError) as caught:
            yield client.connect()
        self.assertEqual(caught.exception.code, "INVALID_REQUEST")
        self.assertEqual(client.closes[-1][0], 1008)
        self.assertIsNone(client._retry)

    @inlineCallbacks
    def test_device_token_is_stored_and_reused(self):
        device = DeviceKeyPair.generate()
        tokens = DeviceTokenStore()
        first = self.client(device=device, device_tokens=tokens)
        hello = yield first.connect()
        issued = hello["auth"]["deviceToken"]
        self.assertEqual(tokens.get(device.device_id, "operator"), issued)
        yield first.close()
        # No shared secret this time: the stored device token gets it in.
        second = self.client(device=device, device_tokens=tokens, token=None)
        hello = yield second.connect()
        self.assertEqual(hello["auth"]["role"], "operator")

    @inlineCallbacks
    def test_stale_shared_secret_falls_back_to_the_device_token(self):
        """``canRetryWithDeviceToken``: one immediate retry with the stored token, then it sticks."""
        device = DeviceKeyPair.generate()
        tokens = DeviceTokenStore()
        first = self.client(device=device, device_tokens=tokens)
        yield first.connect()
        yield first.close()
        stale = self.client(device=device, device_tokens=tokens, token="rotated-away", reconnect=False)
        hello = yield stale.connect()
        self.assertEqual(hello["auth"]["role"], "operator")
        self.assertEqual([hint for _, _, hint in stale.closes], ["shared secret refused: retrying with the device token"])
        self.assertEqual(stale.errors, [])  # a fallback that worked is not a connect error

    @inlineCallbacks
    def test_device_token_fallback_is_tried_once(self):
        device = DeviceKeyPair.generate()
        tokens = DeviceTokenStore()
        first = self.client(device=device, device_tokens=tokens)
        yield first.connect()  # pairs the device and stores the real token
        yield first.close()
        tokens.put(device.device_id, "operator", "stale-too")
        client = self.client(device=device, device_tokens=tokens, token="wrong")
        with self.assertRaises(GatewayCallError) as caught:
            yield client.connect()
        self.assertEqual(caught.exception.details["code"], "AUTH_TOKEN_MISMATCH")
        self.assertIs(caught.exception.details["canRetryWithDeviceToken"], False)
        self.assertEqual(len(client.closes), 2)  # the secret, then the device token; no more
        self.assertIsNone(client._retry)

    @inlineCallbacks
    def test_seq_gap_is_reported_and_state_refreshed(self):
        client = self.client()
        yield client.connect()
        protocol = client.protocol
        calls = []
        original = protocol.request
        protocol.request = lambda method, *args, **kw: (calls.append(method), original(method, *args, **kw))[1]
        protocol.expected_seq = 1
        protocol._event({"type": "event", "event": "tick", "payload": {"ts": 1}, "seq": 5})
        self.assertEqual(client.gaps, [{"expected": 1, "received": 5}])
        self.assertEqual(calls, ["health", "system-presence"])
        self.assertEqual(protocol.expected_seq, 6)

    @inlineCallbacks
    def test_seq_gap_refresh_reaches_the_snapshot(self):
        """The refetched health and presence land where hello-ok's snapshot went: on_snapshot."""
        client = self.client()
        hello = yield client.connect()
        self.assertEqual(len(client.snapshots), 1)
        self.assertEqual(client.snapshots[0]["health"], hello["snapshot"]["health"])
        client.snapshot["health"] = client.snapshot["presence"] = "stale"
        client.protocol.expected_seq = 1
        client.protocol._event({"type": "event", "event": "tick", "payload": {"ts": 1}, "seq": 5})
        yield wait_for(lambda: len(client.snapshots) == 2)
        refreshed = client.snapshots[1]
        self.assertIs(refreshed["health"]["ok"], True)
        self.assertIn("gateway", [entry.get("mode") for entry in refreshed["presence"]])
        self.assertEqual(refreshed["stateVersion"], hello["snapshot"]["stateVersion"])
        self.assertEqual(client.snapshot, refreshed)

    @inlineCallbacks
    def test_presence_and_health_events_keep_the_snapshot_current(self):
        client = self.client()
        yield client.connect()
        self.running.gateway.broadcast_health()
        yield wait_for(lambda: any(event == "health" for event, _, _ in client.events))
        health = [payload for event, payload, _ in client.events if event == "health"][-1]
        self.assertEqual(client.snapshot["health"], health)
        self.assertEqual(client.snapshot["stateVersion"], self.running.gateway.state_version())

    @inlineCallbacks
    def test_rate_limited_connect_is_retried_after_retry_after(self):
        limiter = self.running.gateway.rate_limiter
        limiter.retry_after_ms = lambda address, kind: 7000  # locked out (loopback is normally exempt)
        clock = Clock()
        client = self.client(clock=clock)
        connected = client.connect()
        yield wait_for(lambda: client.closes)
        self.assertEqual(client.closes[0][0], 1008)
        self.assertEqual(client.errors[0].details["code"], "AUTH_RATE_LIMITED")
        self.assertEqual(client.errors[0].retry_after_ms, 7000)
        self.assertIn("retrying", client.closes[0][2])
        self.assertNoResult(connected)
        self.assertGreaterEqual(self.retry_delay(client, clock), 7.0)
        del limiter.retry_after_ms  # the lockout is over
        clock.advance(6.9)
        self.assertEqual(len(client.closes), 1)  # did not dial early
        clock.advance(0.1)
        hello = yield connected
        self.assertEqual(hello["type"], "hello-ok")

    @inlineCallbacks
    def test_pairing_required_is_retried_until_approved(self):
        gateway = self.running.gateway
        gateway.settings = attrs.evolve(gateway.settings, auto_approve_local=False)
        clock = Clock()
        client = self.client(clock=clock, device=DeviceKeyPair.generate(), scopes=(READ,))
        connected = client.connect()
        yield wait_for(lambda: client.closes)
        refusal = client.errors[0]
        self.assertEqual(refusal.details["code"], "PAIRING_REQUIRED")
        self.assertEqual(refusal.details["recommendedNextStep"], "wait_then_retry")
        self.assertEqual(self.retry_delay(client, clock), 1.0)
        clock.advance(1)  # still pending: refused again, the same request refreshed
        yield wait_for(lambda: len(client.closes) == 2)
        self.assertEqual(client.errors[1].details["requestId"], refusal.details["requestId"])
        self.assertEqual(self.retry_delay(client, clock), 2.0)
        yield gateway.pairing.approve(refusal.details["requestId"], ["operator.admin"])
        clock.advance(2)
        hello = yield connected
        self.assertEqual(hello["auth"]["scopes"], [READ])

    @inlineCallbacks
    def test_close_while_waiting_to_retry_fails_connect(self):
        self.running.gateway.settings = attrs.evolve(self.running.gateway.settings, auto_approve_local=False)
        clock = Clock()
        client = self.client(clock=clock, device=DeviceKeyPair.generate())
        connected = client.connect()
        yield wait_for(lambda: client.closes)
        self.assertIsNotNone(client._retry)
        yield client.close()
        self.assertEqual(self.failureResultOf(connected, GatewayCallError).value.message, "client closed")
        self.assertFalse(client._retry.active())

    @inlineCallbacks
    def test_protocol_mismatch_fails_connect_without_reconnecting(self):
        clock = Clock()
        client = self.client(clock=clock, min_protocol=9, max_protocol=9)
        connected = client.connect()
        yield wait_for(lambda: client.closes)
        self.assertIsNone(client._retry)
        error = self.failureResultOf(connected, GatewayCallError).value
        self.assertEqual(error.details["code"], "PROTOCOL_MISMATCH")
        self.assertEqual(client.closes[0][0], 1002)
        self.assertIn("protocol mismatch", client.closes[0][2])
        self.assertIs(client.last_error, error)

    @inlineCallbacks
    def test_restart_expected_ms_delays_the_first_reconnect(self):
        clock = Clock()
        client = self.client(clock=clock)
        yield client.connect()
        self.running.websocket.restart_expected_ms = 5000
        yield self.running.websocket.stopService()  # shutdown {restartExpectedMs: 5000} + 1012
        yield wait_for(lambda: client.closes)
        self.assertEqual(client.closes[0][0], 1012)
        shutdown = [payload for event, payload, _ in client.events if event == "shutdown"]
        self.assertEqual(shutdown[0]["restartExpectedMs"], 5000)
        self.assertEqual(self.retry_delay(client, clock), 5.0)
        self.running.websocket.startService()
        clock.advance(4.9)
        self.assertIsNone(client.protocol)
        clock.advance(0.1)
        hello = yield client.when_connected()
        self.assertEqual(hello["type"], "hello-ok")

    @inlineCallbacks
    def test_reconnects_after_the_server_restarts(self):
        client = self.client()
        yield client.connect()
        client._backoff = 0.01  # keep the test fast; the schedule itself is tested below
        yield self.running.websocket.stopService()  # shutdown + 1012
        yield wait_for(lambda: client.closes)
        self.assertEqual(client.closes[0][0], 1012)
        self.assertIn("restart", client.closes[0][2])
        self.running.websocket.startService()
        self.running.gateway.accepting = True
        hello = yield client.when_connected()
        self.assertEqual(hello["type"], "hello-ok")

    @inlineCallbacks
    def test_expect_final_waits_for_the_second_response(self):
        client = self.client()
        yield client.connect()
        # agent without a provider: accepted, then an error frame on the same id.
        with self.assertRaises(GatewayCallError) as caught:
            yield client.call("agent", {"message": "hi", "idempotencyKey": "x1"}, expect_final=True)
        self.assertEqual(caught.exception.code, "UNAVAILABLE")
        self.assertEqual(caught.exception.payload["status"], "error")
        accepted = yield client.call("agent", {"message": "hi", "idempotencyKey": "x2"})
        self.assertEqual(accepted["status"], "accepted")


class _TLSServer(Protocol):
    def connectionMade(self):
        self.factory.open.append(self)

    def connectionLost(self, reason):
        self.factory.open.remove(self)


class TLSPinTests(TestCase):
    @inlineCallbacks
    def test_pin_mismatch_fails_connect_without_reconnecting(self):
        cert, key = generate_self_signed()
        factory = Factory.forProtocol(_TLSServer)
        factory.open = []
        port = reactor.listenSSL(0, factory, server_options(cert, key), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        wrong = "sha256:" + ":".join(["AB"] * 32)
        self.assertNotEqual(fingerprint_sha256(cert).lower(), wrong.lower())
        clock = Clock()
        closes, errors = [], []
        client = GatewayClient(
            ClientOptions(url=f"wss://127.0.0.1:{port.getHost().port}", token=TOKEN, tls_fingerprint=wrong),
            clock=clock,
            on_close=lambda code, reason, hint: closes.append((code, reason, hint)),
            on_connect_error=errors.append,
        )
        self.addCleanup(client.close)
        connected = client.connect()
        yield wait_for(lambda: closes)
        yield wait_for(lambda: not factory.open)  # the server side is gone too
        self.assertIsNone(client._retry)
        failure = self.failureResultOf(connected, GatewayCallError)
        self.assertEqual(failure.value.details["code"], TLS_PIN_MISMATCH)
        self.assertIn("pinned fingerprint", failure.value.message)
        self.assertEqual(closes[0][0], 1006)
        self.assertIn("pinned fingerprint", closes[0][2])
        self.assertIn("not reconnecting", closes[0][2])
        self.assertEqual([error.details["code"] for error in errors], [TLS_PIN_MISMATCH])
        self.assertIs(client.last_error, failure.value)


class NodeModeTests(TestCase):
    @inlineCallbacks
    def test_node_client_answers_invokes_with_its_handler(self):
        running = yield start_gateway(self, config={"gateway": {"nodes": {"commands": {"allow": ["echo", "fail"]}}}})
        node = GatewayClient(
            ClientOptions(
                url=running.url,
                token=TOKEN,
                client_id="node-host",
                mode="node",
                role="node",
                scopes=(),
                commands=("echo", "fail"),
                device=DeviceKeyPair.generate(),
            ),
            command_handler=lambda command, params: {"echo": params} if command == "echo" else 1 / 0,
        )
        self.addCleanup(node.close)
        hello = yield node.connect()
        operator = GatewayClient(ClientOptions(url=running.url, token=TOKEN, scopes=ALL))
        self.addCleanup(operator.close)
        yield operator.connect()
        node_id = node.options.device.device_id
        # As with the reference, the node's command surface waits for an operator's approval.
        yield wait_for(lambda: running.gateway.node_pairing.store.pending_for(node_id))
        pending = running.gateway.node_pairing.store.pending_for(node_id)
        yield operator.call("node.pair.approve", {"requestId": pending["requestId"]})
        result = yield operator.call("node.invoke", {"nodeId": node_id, "command": "echo", "params": {"a": 1}, "idempotencyKey": "i1"})
        self.assertEqual(result["payload"], {"echo": {"a": 1}})
        with self.assertRaises(GatewayCallError) as caught:
            yield operator.call("node.invoke", {"nodeId": node_id, "command": "fail", "idempotencyKey": "i2"})
        self.assertEqual(caught.exception.code, "UNAVAILABLE")
        self.assertIn("division", caught.exception.message)
        self.assertEqual(hello["auth"]["role"], "node")


class WatchdogTests(TestCase):
    @inlineCallbacks
    def test_silence_for_two_ticks_closes_4000(self):
        running = yield start_gateway(self)
        clock = Clock()
        closes = []
        client = GatewayClient(
            ClientOptions(url=running.url, token=TOKEN, reconnect=False),
            clock=clock,
            on_close=lambda code, reason, hint: closes.append(code),
        )
        self.addCleanup(client.close)
        hello = yield client.connect()
        self.assertEqual(hello["policy"]["tickIntervalMs"], 30_000)
        clock.advance(59)
        self.assertEqual(closes, [])
        clock.advance(2)
        yield wait_for(lambda: closes)
        self.assertEqual(closes, [TICK_WATCHDOG_CLOSE_CODE])


class BackoffTests(SynchronousTestCase):
    def test_backoff_doubles_to_thirty_seconds(self):
        clock = Clock()
        client = GatewayClient(ClientOptions(url="ws://127.0.0.1:1"), reactor=clock)
        dialed = []
        client._dial = lambda: dialed.append(clock.seconds())
        delays = []
        for _ in range(7):
            before = clock.seconds()
            client._closed(None, 1006, "")
            clock.advance(client._retry.getTime() - clock.seconds())
            delays.append(clock.seconds() - before)
        self.assertEqual(delays, [1, 2, 4, 8, 16, 30, 30])

    def test_policy_revoked_and_protocol_closes_do_not_reconnect(self):
        clock = Clock()
        client = GatewayClient(ClientOptions(url="ws://127.0.0.1:1"), reactor=clock)
        client._dial = lambda: None
        for code in (1002, 1008, 4001):
            client._retry = None
            client._closed(None, code, "")
            self.assertIsNone(client._retry)

    def schedule(self, client, clock, closes):
        delays = []
        for code, refusal in closes:
            before = clock.seconds()
            client._refusal = refusal
            client._closed(None, code, "")
            if client._retry is None or not client._retry.active():
                delays.append(None)
                continue
            clock.advance(client._retry.getTime() - clock.seconds())
            delays.append(clock.seconds() - before)
        return delays

    def test_retryable_refusals_wait_retry_after(self):
        clock = Clock()
        client = GatewayClient(ClientOptions(url="ws://127.0.0.1:1"), reactor=clock)
        client._dial = lambda: None
        limited = GatewayCallError(
            "INVALID_REQUEST",
            "unauthorized: too many failed authentication attempts (retry later)",
            {"code": "AUTH_RATE_LIMITED", "recommendedNextStep": "wait_then_retry"},
            retryable=True,
            retry_after_ms=12_000,
        )
        pairing = GatewayCallError("NOT_PAIRED", "pairing required", {"code": "PAIRING_REQUIRED", "recommendedNextStep": "wait_then_retry", "retryable": True, "pauseReconnect": False})
        paused = GatewayCallError("NOT_PAIRED", "pairing required", {"code": "PAIRING_REQUIRED", "retryable": True, "pauseReconnect": True})
        wrong = GatewayCallError("INVALID_REQUEST", "unauthorized", {"code": "AUTH_TOKEN_MISMATCH", "recommendedNextStep": "update_auth_credentials"})
        starting = GatewayCallError("UNAVAILABLE", "gateway starting; retry shortly", retryable=True, retry_after_ms=500)
        self.assertEqual(
            self.schedule(client, clock, [(1008, limited), (1008, pairing), (1013, starting), (1008, paused)]),
            [12, 2, 4, None],
        )
        self.assertIs(client.last_error, paused)
        self.assertEqual(self.schedule(client, clock, [(1008, wrong)]), [None])

    def test_announced_restart_sets_the_first_delay_then_backoff_resumes(self):
        clock = Clock()
        client = GatewayClient(ClientOptions(url="ws://127.0.0.1:1"), reactor=clock)
        client._dial = lambda: None
        client._backoff = 8  # whatever it was before: the announced time replaces it
        client._shutdown_announced({"reason": "gateway restarting", "restartExpectedMs": 5000})
        self.assertEqual(self.schedule(client, clock, [(1012, None)] * 4), [5, 1, 2, 4])
        client._shutdown_announced({"reason": "gateway stopping"})  # no time given: plain backoff
        self.assertEqual(self.schedule(client, clock, [(1012, None)]), [8])

    def test_malformed_pin_is_refused_up_front(self):
        with self.assertRaises(ValueError):
            ClientOptions(url="wss://127.0.0.1:1", tls_fingerprint="sha256:zz")


class IdentityFileTests(SynchronousTestCase):
    def test_key_created_once_private(self):
        path = os.path.join(self.mktemp(), "identity", "device.pem")
        first = load_or_create_identity(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_or_create_identity(path).device_id, first.device_id)

    def test_token_store_round_trip(self):
        path = os.path.join(self.mktemp(), "tokens.json")
        store = DeviceTokenStore(path)
        store.put("dev", "operator", "t1")
        self.assertEqual(DeviceTokenStore(path).get("dev", "operator"), "t1")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        store.put("dev", "operator", None)
        self.assertIsNone(DeviceTokenStore(path).get("dev", "operator"))


class RequestTimeoutTests(SynchronousTestCase):
    """A request the gateway never answers fails TIMEOUT at its deadline, on the owner's clock."""

    def _protocol(self):
        from openclaw.client.client import GatewayClientProtocol

        protocol = GatewayClientProtocol()
        protocol.owner = type("Owner", (), {"clock": Clock()})()
        protocol.pending = {}
        protocol.sent = []
        protocol.sendMessage = lambda payload, isBinary: protocol.sent.append(json.loads(payload))
        return protocol

    def test_unanswered_request_times_out_and_a_late_answer_is_ignored(self) -> None:
        protocol = self._protocol()
        d = protocol.request("health", None, timeout_s=5)
        protocol.owner.clock.advance(4.9)
        self.assertNoResult(d)
        protocol.owner.clock.advance(0.1)
        error = self.failureResultOf(d, GatewayCallError).value
        self.assertEqual((error.code, error.message), ("TIMEOUT", "health timed out"))
        self.assertEqual(protocol.pending, {})
        protocol._response({"type": "res", "id": protocol.sent[0]["id"], "ok": True, "payload": {}})

    def test_a_response_whose_id_is_not_a_string_is_ignored(self) -> None:
        """A malformed ``res`` (an id that is a list) used to raise TypeError (unhashable) here."""
        protocol = self._protocol()
        d = protocol.request("health", None, timeout_s=5)
        protocol._response({"type": "res", "id": [protocol.sent[0]["id"]], "ok": True, "payload": {}})
        protocol._response({"type": "res", "id": {"a": 1}, "ok": True, "payload": {}})
        self.assertNoResult(d)
        protocol._response({"type": "res", "id": protocol.sent[0]["id"], "ok": True, "payload": {"ok": True}})
        self.assertEqual(self.successResultOf(d), {"ok": True})

    def test_an_answer_in_time_leaves_no_timer(self) -> None:
        protocol = self._protocol()
        d = protocol.request("health", None, timeout_s=5)
        protocol._response({"type": "res", "id": protocol.sent[0]["id"], "ok": True, "payload": {"ok": True}})
        self.assertEqual(self.successResultOf(d), {"ok": True})
        self.assertEqual(protocol.owner.clock.getDelayedCalls(), [])
