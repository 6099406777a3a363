"""``GatewayRequest`` on its own: the body cap (413) and the body timeout (408), byte by byte.

A ``GatewaySite`` protocol is fed raw request bytes over a ``StringTransport``, with a
``task.Clock`` as the site's reactor, so the 30 s body timeout is driven by advancing the clock.
"""
from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txaio._common import _BatchedTimer

from openclaw.connection.factory import GatewayWebSocketFactory
from openclaw.http.app import GatewayHttpApp
from openclaw.http.channel import HEADER_TIMEOUT_S
from openclaw.http.request import BODY_TIMEOUT_S, MAX_BODY_BYTES
from openclaw.http.site import GatewayRootResource, GatewaySite

from .support.gateway import make_gateway

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(self), geolocation=()",
}
TOO_LARGE = {"error": {"message": "Payload too large", "type": "invalid_request_error"}}
TIMED_OUT = {"error": {"message": "Request body timeout", "type": "invalid_request_error"}}
# Endpoints are off in this gateway, so a request that reaches the app is a plain 404.
REACHED_APP = b"HTTP/1.1 404 Not Found\r\n"


def post_head(length: int | None = None, chunked: bool = False) -> bytes:
    lines = [b"POST /v1/chat/completions HTTP/1.1", b"Host: x", b"Content-Type: application/json"]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class GatewayRequestLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = make_gateway(self)
        self.clock = Clock()
        root = GatewayRootResource(
            WebSocketResource(GatewayWebSocketFactory(self.gateway, reactor=self.gateway.clock)), GatewayHttpApp(self.gateway).resource()
        )
        self.site = GatewaySite(root, reactor=self.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)

        self.addCleanup(self.lose, protocol)
        return protocol, transport

    def lose(self, protocol: Any) -> None:
        if not getattr(protocol, "_test_lost", False):
            protocol._test_lost = True
            protocol.connectionLost(Failure(ConnectionDone()))

    def body_timers(self) -> list[Any]:
        return [call for call in self.clock.getDelayedCalls() if getattr(call.func, "__name__", "") == "_reject"]

    def assertRejected(self, transport: StringTransport, status_line: bytes, body: Any) -> None:
        wire = transport.value()
        head, _, raw_body = wire.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], status_line)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            self.assertNotIn(name.lower(), headers, "each header once")
            headers[name.lower()] = value.strip()
        self.assertEqual(json.loads(raw_body), body)
        self.assertEqual(headers["content-length"], str(len(raw_body)))
        self.assertEqual(headers["content-type"], "application/json; charset=utf-8")
        self.assertEqual(headers["connection"], "close")
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(headers[name], value)
        self.assertNotIn("server", headers)
        self.assertTrue(transport.disconnecting, "the rest of the body cannot frame a next request")
        self.assertEqual(self.body_timers(), [])

    # -- defaults --------------------------------------------------------------------------------

    def test_reference_limits(self):
        self.assertEqual((MAX_BODY_BYTES, BODY_TIMEOUT_S), (20 * 1024 * 1024, 30.0))
        self.assertEqual((self.site.max_body_bytes, self.site.body_timeout_s), (MAX_BODY_BYTES, BODY_TIMEOUT_S))

    # -- 413 ---------------------------------------------------------------------------------------

    def test_declared_length_over_the_cap_is_refused_before_any_body(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(MAX_BODY_BYTES + 1))
        self.assertRejected(transport, b"HTTP/1.1 413 Payload Too Large", TOO_LARGE)

    def test_declared_length_at_the_cap_is_accepted(self):
        self.site.max_body_bytes = 10
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(10) + b"{}        ")
        self.assertTrue(transport.value().startswith(REACHED_APP), transport.value())

    def test_chunked_running_total_over_the_cap(self):
        self.site.max_body_bytes = 10
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(chunked=True) + chunk(b"123456"))
        self.assertEqual(transport.value(), b"", "under the cap so far")
        protocol.dataReceived(chunk(b"12345"))
        self.assertRejected(transport, b"HTTP/1.1 413 Payload Too Large", TOO_LARGE)
        answered = transport.value()
        # Whatever else the client sends is ignored: one answer only.
        protocol.dataReceived(chunk(b"more") + b"0\r\n\r\n")
        self.assertEqual(transport.value(), answered)

    def test_chunked_body_at_the_cap_is_accepted(self):
        self.site.max_body_bytes = 10
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(chunked=True) + chunk(b"{}   ") + chunk(b"     ") + b"0\r\n\r\n")
        self.assertTrue(transport.value().startswith(REACHED_APP), transport.value())
        self.assertFalse(transport.disconnecting)

    # -- 408 ---------------------------------------------------------------------------------------

    def test_body_timeout_is_408_at_exactly_the_limit(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(100) + b'{"model":')
        self.assertEqual([call.getTime() for call in self.body_timers()], [BODY_TIMEOUT_S])
        self.clock.advance(BODY_TIMEOUT_S - 0.001)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.001)
        self.assertRejected(transport, b"HTTP/1.1 408 Request Timeout", TIMED_OUT)
        answered = transport.value()
        protocol.dataReceived(b"x" * 91)  # the rest, too late
        self.assertEqual(transport.value(), answered)

    def test_timeout_counts_from_the_headers_not_from_the_last_byte(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(100))
        for _ in range(29):
            self.clock.advance(1)
            protocol.dataReceived(b" ")
        self.assertEqual(transport.value(), b"")
        self.clock.advance(1)
        self.assertRejected(transport, b"HTTP/1.1 408 Request Timeout", TIMED_OUT)

    def test_chunked_body_timeout(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(chunked=True) + chunk(b"{"))
        self.clock.advance(BODY_TIMEOUT_S)
        self.assertRejected(transport, b"HTTP/1.1 408 Request Timeout", TIMED_OUT)

    def test_site_timeout_is_configurable(self):
        self.site.body_timeout_s = 2.5
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(5) + b"{")
        self.clock.advance(2.5)
        self.assertRejected(transport, b"HTTP/1.1 408 Request Timeout", TIMED_OUT)

    def test_complete_body_cancels_the_timer(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(2) + b"{")
        self.assertEqual(len(self.body_timers()), 1)
        protocol.dataReceived(b"}")
        self.assertEqual(self.body_timers(), [])
        answered = transport.value()
        self.assertTrue(answered.startswith(REACHED_APP), answered)
        self.clock.advance(HEADER_TIMEOUT_S - 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(BODY_TIMEOUT_S)
        # No late 408: the idle kept-alive connection is only closed, silently, once the next
        # request's headers are overdue (tests/test_slowloris.py).
        self.assertEqual(transport.value(), answered, "no late 408 after the answer")

    def test_complete_chunked_body_cancels_the_timer(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(chunked=True) + chunk(b"{}"))
        self.assertEqual(len(self.body_timers()), 1)
        protocol.dataReceived(b"0\r\n\r\n")
        self.assertEqual(self.body_timers(), [])
        self.assertTrue(transport.value().startswith(REACHED_APP))

    def test_no_timer_without_a_body(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.body_timers(), [])
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        protocol.dataReceived(post_head(0))
        self.assertEqual(self.body_timers(), [])

    def test_keep_alive_requests_each_get_their_own_timer(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(2) + b"{}")
        self.assertEqual(self.body_timers(), [])
        self.clock.advance(HEADER_TIMEOUT_S - 1)  # idle, but within the next headers' deadline
        protocol.dataReceived(post_head(2) + b"{")
        self.clock.advance(BODY_TIMEOUT_S - 1)
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)
        self.clock.advance(1)
        self.assertIn(b"HTTP/1.1 408 Request Timeout\r\n", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_connection_lost_cancels_the_timer(self):
        protocol, transport = self.connect()
        protocol.dataReceived(post_head(100) + b"{")
        self.assertEqual(len(self.body_timers()), 1)
        self.lose(protocol)
        self.assertEqual(self.body_timers(), [])
        self.assertEqual(transport.value(), b"")


WS_UPGRADE = (
    b"GET / HTTP/1.1\r\n"
    b"Host: 127.0.0.1:18789\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def split_response(wire: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    return lines[0], headers, body


class StatusLineAndBannerTests(SynchronousTestCase):
    """Reason phrases Twisted lacks, and what the WebSocket upgrade answers (101 and 503)."""

    lose = GatewayRequestLimitTests.lose

    def setUp(self) -> None:
        self.gateway = make_gateway(self)
        self.clock = Clock()
        factory = GatewayWebSocketFactory(self.gateway, reactor=self.gateway.clock)
        # Autobahn's timers (handshake, ping) go through a txaio batched timer on the global
        # reactor; keep them on this test's clock instead.
        factory._batched_timer = _BatchedTimer(1000.0, 100, self.clock.seconds, self.clock.callLater)
        root = GatewayRootResource(WebSocketResource(factory), GatewayHttpApp(self.gateway).resource())
        self.site = GatewaySite(root, reactor=self.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self) -> tuple[Any, StringTransport]:
        protocol, transport = GatewayRequestLimitTests.connect(self)
        transport.protocol = protocol  # Autobahn's WebSocketResource swaps the transport's protocol
        return protocol, transport

    def test_429_has_the_standard_reason_phrase(self):
        limiter = self.gateway.rate_limiter
        limiter.configure(exempt_loopback=False)
        for _ in range(10):
            limiter.record_failure("127.0.0.1", "shared-secret")
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = split_response(transport.value())
        self.assertEqual(status, b"HTTP/1.1 429 Too Many Requests")
        self.assertEqual(json.loads(body)["error"]["type"], "rate_limited")
        self.assertIn("retry-after", headers)

    def test_every_status_we_send_has_a_known_reason_phrase(self):
        from twisted.web.http import RESPONSES

        from openclaw.http.request import EXTRA_REASON_PHRASES

        for status in (400, 401, 403, 404, 405, 408, 413, 417, 429, 500, 502, 503, 504):
            self.assertIn(status, set(RESPONSES) | set(EXTRA_REASON_PHRASES), status)

    def test_upgrade_answer_has_no_server_banner(self):
        protocol, transport = self.connect()
        protocol.dataReceived(WS_UPGRADE)
        status, headers, _ = split_response(transport.value())
        self.assertEqual(status, b"HTTP/1.1 101 Switching Protocols")
        self.assertNotIn("server", headers)

    def test_preauth_refusal_has_a_body_and_security_headers(self):
        self.gateway.preauth.max_per_ip = 0
        protocol, transport = self.connect()
        protocol.dataReceived(WS_UPGRADE)
        status, headers, body = split_response(transport.value())
        self.assertEqual(status, b"HTTP/1.1 503 Too many unauthenticated sockets")
        self.assertEqual(body, b"Too many unauthenticated sockets\n")
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(headers["content-length"], str(len(body)))
        self.assertEqual(headers["connection"], "close")
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(headers[name], value)
        self.assertNotIn("server", headers)
        self.assertTrue(transport.disconnecting)
