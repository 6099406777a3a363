"""GatewayClient against our gateway over real loopback sockets."""
from __future__ import annotations

import os
import stat

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.client import ClientOptions, GatewayCallError, GatewayClient
from openclaw.client.client import TICK_WATCHDOG_CLOSE_CODE
from openclaw.client.identity import DeviceTokenStore, load_or_create_identity
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.security.scopes import ADMIN, PAIRING, READ, WRITE

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

    def client(self, **options):
        events = []
        closes = []
        gaps = []
        options.setdefault("token", TOKEN)
        options.setdefault("scopes", ALL)
        client = GatewayClient(
            ClientOptions(url=self.running.url, **options),
            on_event=lambda event, payload, frame: events.append((event, payload, frame)),
            on_close=lambda code, reason, hint: closes.append((code, reason, hint)),
            on_gap=gaps.append,
        )
        client.events, client.closes, client.gaps = events, closes, gaps
        self.addCleanup(client.close)
        return client

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


class NodeModeTests(TestCase):
    @inlineCallbacks
    def test_node_client_answers_invokes_with_its_handler(self):
        running = yield start_gateway(self)
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
        yield wait_for(lambda: running.gateway.node_pairing.surface_approved(node_id, ["echo", "fail"], []))
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

    def test_policy_and_revoked_closes_do_not_reconnect(self):
        clock = Clock()
        client = GatewayClient(ClientOptions(url="ws://127.0.0.1:1"), reactor=clock)
        client._dial = lambda: None
        for code in (1008, 4001):
            client._retry = None
            client._closed(None, code, "")
            self.assertIsNone(client._retry)


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
