"""Overload hardening (issue 8) over real loopback sockets.

The unit tests in test_backpressure.py, test_handshake.py and test_rate_limit.py prove each
mechanism on its own: the bounded outbound queue, the per-address pre-auth counter, the failed-auth
limiter. These tests exist to show the mechanisms still hold when the gateway is actually under
pressure, with real sockets and the real reactor:

* thousands of idle authenticated connections plus one client that stops reading — the stalled
  client is closed 1008 ``slow consumer`` and what the gateway buffers for it never passes the
  configured bound, while every idle connection keeps working;
* a flood of upgraded-but-silent sockets from one address at the default cap of 32;
* a flood of bad tokens from one (non-exempt) address, whose lockout holds for the right token
  too, on the WebSocket and on the HTTP API, until the lockout window has passed.

The idle sockets use the lean client in tests/support/rawws.py: an Autobahn client per socket
would make the test's own side the bottleneck.
"""
from __future__ import annotations

import resource

import orjson
from twisted.internet import reactor
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    DeferredSemaphore,
    inlineCallbacks,
)
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from openclaw.protocol.constants import (
    AUTH_RATE_LIMIT_LOCKOUT_MS,
    HANDSHAKE_TIMEOUT_MS,
    MAX_BUFFERED_BYTES,
    MAX_PREAUTH_CONNECTIONS_PER_IP,
)

from tests.support import rawws
from tests.support.gateway import TOKEN, start_gateway
from tests.support.loopback import wait_until
from tests.support.shapes import rate_limited_error

IDLE_CONNECTIONS = 5000
HANDSHAKE_CONCURRENCY = 30  # below the 32 pre-auth slots per address, and below listenTCP's backlog of 50
LOCALHOST = "127.0.0.1"
MODELS_ENABLED = {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": True}}}}}  # serves /v1/models


def raise_fd_limit(testcase: TestCase, needed: int) -> None:
    """Lift the soft descriptor limit to the hard one when ``needed`` does not fit; skip if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SkipTest(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        testcase.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))


def transport_held_bytes(transport) -> int:
    """What a Twisted TCP transport holds in memory, as it counts it against ``bufferSize``."""
    return len(transport.dataBuffer) + transport._tempDataLen


def resident_bytes() -> int | None:
    """This process's resident set size (Linux procfs), or None where there is no procfs."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize()
    except OSError:
        return None


@inlineCallbacks
def close_everything(running, sockets: list) -> Deferred:
    """Cleanup: abort every client socket, then wait until the gateway has seen each one go."""
    yield rawws.close_all(sockets)
    yield wait_until(lambda: not running.factory.connections)


def server_side(running, conn_id: str):
    matches = [proto for proto in running.factory.connections if proto.conn_id == conn_id]
    assert len(matches) == 1, matches
    return matches[0]


def first_of(*deferreds: Deferred) -> Deferred:
    """Fires with ``(result, index)`` of whichever fires first."""
    return DeferredList(list(deferreds), fireOnOneCallback=True, fireOnOneErrback=True, consumeErrors=True)


class IdleConnectionsWithSlowReaderTests(TestCase):
    """5,000 idle operators and one client that never reads, against one in-process gateway."""

    timeout = 180

    @inlineCallbacks
    def test_slow_reader_is_closed_and_idle_connections_survive(self):
        raise_fd_limit(self, 2 * IDLE_CONNECTIONS + 500)
        running = yield start_gateway(self)
        gateway = running.gateway
        port = running.port.getHost().port
        self.assertEqual(gateway.settings.max_buffered_bytes, MAX_BUFFERED_BYTES)  # the default bound, 50 MiB
        sockets: list[rawws.RawWebSocket] = []
        self.addCleanup(close_everything, running, sockets)

        # The idle operators are local CLI connections with the CLI's full scopes; like the
        # reference, the gateway keeps such control-plane sockets out of presence, so none of
        # them makes the others' hello-ok or presence traffic grow.
        upgrade = rawws.upgrade_request(port)
        idle_connect = rawws.connect_frame()
        slots = DeferredSemaphore(HANDSHAKE_CONCURRENCY)
        idle = yield rawws.gather(
            [slots.run(rawws.open_authenticated, port, upgrade, idle_connect, sockets) for _ in range(IDLE_CONNECTIONS)]
        )
        for socket in idle:
            socket.hello = None  # keep the test's own memory small
        self.assertEqual(len(gateway.clients), IDLE_CONNECTIONS)
        self.assertEqual(len(running.factory.connections), IDLE_CONNECTIONS)
        self.assertEqual(gateway.preauth.count(LOCALHOST), 0)

        # The slow reader: one more such CLI, that asks for `health` over and over and never reads.
        slow = yield rawws.open_authenticated(port, upgrade, rawws.connect_frame(), sockets)
        proto = server_side(running, slow.hello["payload"]["server"]["connId"])
        self.assertIs(proto.transport.producer, proto)
        probe = yield slow.request("probe", "health")
        response_size = len(orjson.dumps(probe))
        bound = gateway.settings.max_buffered_bytes

        # Enough requests to fill the bound three times over, kernel socket buffers included; if the
        # gateway never closes the reader, it answers every one of them and the test fails below.
        requests = 3 * (bound + 16 * 1024 * 1024) // response_size
        samples = {"peak_held": 0, "peak_queued": 0, "largest_frame": 0, "responses": 0, "peak_rss": 0}
        closed: Deferred = Deferred()
        all_answered: Deferred = Deferred()
        enqueue, close_with = proto._enqueue, proto.close_with

        def spy_enqueue(frame, *, droppable):
            result = enqueue(frame, droppable=droppable)
            samples["responses"] += 1
            samples["largest_frame"] = max(samples["largest_frame"], len(frame))
            queued = proto._outbound.queued_bytes
            samples["peak_queued"] = max(samples["peak_queued"], queued)
            samples["peak_held"] = max(samples["peak_held"], queued + transport_held_bytes(proto.transport))
            if samples["responses"] % 4096 == 0:
                samples["peak_rss"] = max(samples["peak_rss"], resident_bytes() or 0)
            if samples["responses"] >= requests and not all_answered.called:
                reactor.callLater(0, all_answered.callback, None)
            return result

        def spy_close_with(code, reason):
            close_with(code, reason)
            if not closed.called:  # the test goes on outside the gateway's call stack
                reactor.callLater(0, closed.callback, (code, reason))

        proto._enqueue, proto.close_with = spy_enqueue, spy_close_with

        rss_before = resident_bytes()
        slow.stop_reading()
        pipelined = b"".join(rawws.request_frame(f"h{n}", "health") for n in range(requests))
        slow.send(pipelined)
        result, _ = yield first_of(closed, all_answered)
        self.assertTrue(closed.called, f"the gateway answered all {requests} requests and never closed the reader")
        code, reason = result
        self.assertEqual((code, reason), (1008, "slow consumer"))
        self.assertEqual((proto.localCloseCode, proto.localCloseReason), (1008, b"slow consumer"))

        # It really filled the queue up to the bound, and never held more than bound + what the
        # transport may hold before it pauses us (its bufferSize plus the frame that crossed it).
        held_bound = bound + proto.transport.bufferSize + samples["largest_frame"]
        self.assertGreater(samples["peak_queued"], bound - samples["largest_frame"], samples)
        self.assertLessEqual(samples["peak_queued"], bound, samples)
        self.assertLessEqual(samples["peak_held"], held_bound, samples)
        self.assertLess(samples["responses"], requests, samples)
        # The process as a whole (gateway and test client) grew by about the bound while the reader
        # filled it, plus the test's own pipelined requests: the byte count is the real cost.
        if rss_before is not None:
            growth = samples["peak_rss"] - rss_before
            self.assertLess(growth, held_bound + len(pipelined) + 32 * 1024 * 1024, samples)
        del pipelined

        # The reader never reads the close frame, so the gateway hangs up once the close handshake
        # times out; its socket and its registry entry are gone.
        yield slow.lost
        self.assertIsNone(slow.close_code)
        yield wait_until(lambda: proto not in running.factory.connections)
        self.assertNotIn(proto.conn_id, [client.conn_id for client in gateway.clients])

        # Every idle connection is still open, gets a non-droppable broadcast and answers a request.
        self.assertEqual(len(gateway.clients), IDLE_CONNECTIONS)
        self.assertTrue(all(socket.connected for socket in idle))
        self.assertEqual(sum(len(p._outbound) for p in running.factory.connections), 0)
        events = [socket.wait_event("health") for socket in idle]
        gateway.broadcast_health()
        received = yield rawws.gather(events)
        self.assertEqual({event["payload"]["ok"] for event in received}, {True})
        answers = yield rawws.gather([socket.request("after", "health") for socket in idle])
        self.assertEqual([answer["ok"] for answer in answers], [True] * IDLE_CONNECTIONS)
        self.assertEqual(len(gateway.clients), IDLE_CONNECTIONS)


class PreauthFloodTests(TestCase):
    """Upgraded sockets that never send ``connect``, from one address, at the default cap of 32."""

    FLOOD = 40

    @inlineCallbacks
    def flood(self, port: int, count: int, sockets: list):
        """``count`` sockets upgrading at once; returns (admitted to pre-auth, refused)."""
        upgrade = rawws.upgrade_request(port)
        opened = yield rawws.gather([rawws.open_raw(port, upgrade, sockets) for _ in range(count)])
        results = yield DeferredList([socket.upgraded for socket in opened], consumeErrors=True)
        accepted = [socket for socket, (ok, _) in zip(opened, results, strict=True) if ok]
        refused = [socket for socket, (ok, _) in zip(opened, results, strict=True) if not ok]
        return accepted, refused

    @inlineCallbacks
    def test_flood_is_capped_at_32_and_slots_come_back(self):
        clock = Clock()
        running = yield start_gateway(self, clock=clock)
        gateway = running.gateway
        port = running.port.getHost().port
        self.assertEqual(gateway.settings.max_preauth_per_ip, MAX_PREAUTH_CONNECTIONS_PER_IP)
        cap = MAX_PREAUTH_CONNECTIONS_PER_IP
        sockets: list[rawws.RawWebSocket] = []
        self.addCleanup(close_everything, running, sockets)

        accepted, refused = yield self.flood(port, self.FLOOD, sockets)
        self.assertEqual((len(accepted), len(refused)), (cap, self.FLOOD - cap))
        self.assertEqual(gateway.preauth.count(LOCALHOST), cap)
        for socket in accepted:
            challenge = yield socket.wait_event("connect.challenge")
            self.assertIn("nonce", challenge["payload"])
        # The refusal is an HTTP answer to the upgrade, after which the gateway hangs up.
        yield DeferredList([socket.lost for socket in refused])
        for socket in refused:
            self.assertEqual(socket.status, 503)
            head, _, _ = socket.http_response.partition(b"\r\n")
            self.assertEqual(head, b"HTTP/1.1 503 Too many unauthenticated sockets")
            self.assertNotIn(b"connect.challenge", socket.http_response)
        self.assertEqual(len(running.factory.connections), cap)

        # While the flood holds every slot, even a client with the right token cannot get in.
        _, [blocked] = yield self.flood(port, 1, sockets)
        self.assertEqual(blocked.status, 503)

        # Flooders that hang up give their slots back, and a real client gets in.
        for socket in accepted[:4]:
            yield socket.abort()
        yield wait_until(lambda: gateway.preauth.count(LOCALHOST) == cap - 4)
        upgrade = rawws.upgrade_request(port)
        operator = yield rawws.open_authenticated(port, upgrade, rawws.connect_frame(), sockets)
        self.assertEqual(operator.hello["payload"]["type"], "hello-ok")
        self.assertEqual(gateway.preauth.count(LOCALHOST), cap - 4)  # its slot went back on hello-ok

        # The rest are timed out after 15 s (gateway clock) with 1000 "" and release their slots;
        # the authenticated client is not touched.
        silent = accepted[4:]
        clock.advance(HANDSHAKE_TIMEOUT_MS / 1000.0 - 0.1)
        self.assertEqual(gateway.preauth.count(LOCALHOST), cap - 4)
        clock.advance(0.1)
        yield DeferredList([socket.lost for socket in silent])
        self.assertEqual({(socket.close_code, socket.close_reason) for socket in silent}, {(1000, "")})
        self.assertEqual(gateway.preauth.count(LOCALHOST), 0)
        answer = yield operator.request("after-flood", "health")
        self.assertTrue(answer["ok"], answer)
        self.assertTrue(operator.connected)

        # With every slot free again, a second flood is capped exactly like the first.
        accepted, refused = yield self.flood(port, self.FLOOD, sockets)
        self.assertEqual((len(accepted), len(refused)), (cap, self.FLOOD - cap))


class FailedAuthFloodTests(TestCase):
    """Ten bad tokens over real sockets lock the address out, the right token included, on WS and HTTP."""

    @inlineCallbacks
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        # Loopback is exempt by default; the test turns that off rather than faking the address.
        self.running = yield start_gateway(
            self, clock=self.clock, rate_limit_exempt_loopback=False, config=MODELS_ENABLED
        )
        self.port = self.running.port.getHost().port
        self.sockets: list[rawws.RawWebSocket] = []
        self.addCleanup(close_everything, self.running, self.sockets)
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=pool)

    @inlineCallbacks
    def attempt(self, token: str):
        """One connect with ``token``: returns (response, close code, close reason) once the socket is gone."""
        socket = yield rawws.open_raw(self.port, rawws.upgrade_request(self.port), self.sockets)
        yield socket.upgraded
        yield socket.wait_event("connect.challenge")
        socket.send(rawws.connect_frame(token=token))
        response = yield socket.wait_response("connect-1")
        if response["ok"]:
            return response, None, None
        yield socket.lost
        return response, socket.close_code, socket.close_reason

    @inlineCallbacks
    def models(self, token: str):
        headers = Headers({b"Authorization": [f"Bearer {token}".encode("ascii")]})
        response = yield self.agent.request(b"GET", f"{self.running.http_url}/v1/models".encode("ascii"), headers)
        body = yield readBody(response)
        return response, body

    def assertRateLimited(self, response, code, reason, retry_after_ms):
        self.assertEqual(response["ok"], False)
        self.assertEqual(response["error"], rate_limited_error(retry_after_ms))
        self.assertEqual((code, reason), (1008, "unauthorized: too many failed authentication attempts (retry later)"))

    @inlineCallbacks
    def test_ten_bad_tokens_lock_out_the_right_one_until_the_window_passes(self):
        for n in range(10):
            response, code, reason = yield self.attempt("wrong-token")
            self.assertEqual(response["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", n)
            self.assertEqual(code, 1008)

        response, code, reason = yield self.attempt(TOKEN)
        self.assertRateLimited(response, code, reason, AUTH_RATE_LIMIT_LOCKOUT_MS)

        # The HTTP API asks the same limiter: the right bearer token gets 429 with Retry-After.
        http_response, body = yield self.models(TOKEN)
        self.assertEqual(http_response.code, 429)
        self.assertEqual(http_response.headers.getRawHeaders(b"retry-after"), [b"300"])
        self.assertEqual(orjson.loads(body)["error"]["type"], "rate_limited")

        # The lockout counts down on the gateway clock and holds until it is over.
        self.clock.advance(AUTH_RATE_LIMIT_LOCKOUT_MS / 1000.0 - 1)
        response, code, reason = yield self.attempt(TOKEN)
        self.assertRateLimited(response, code, reason, 1000)
        self.clock.advance(1)
        response, _, _ = yield self.attempt(TOKEN)
        self.assertTrue(response["ok"], response)
        http_response, body = yield self.models(TOKEN)
        self.assertEqual(http_response.code, 200, body)

    @inlineCallbacks
    def test_bad_bearer_tokens_lock_out_the_websocket_too(self):
        for _ in range(10):
            http_response, _ = yield self.models("wrong-token")
            self.assertEqual(http_response.code, 401)
        response, code, reason = yield self.attempt(TOKEN)
        self.assertRateLimited(response, code, reason, AUTH_RATE_LIMIT_LOCKOUT_MS)

    @inlineCallbacks
    def test_nine_bad_tokens_do_not_lock_out(self):
        for _ in range(9):
            response, _, _ = yield self.attempt("wrong-token")
            self.assertEqual(response["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH")
        response, _, _ = yield self.attempt(TOKEN)
        self.assertTrue(response["ok"], response)
