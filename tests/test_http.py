"""The HTTP side of the gateway port (http spec §0): probes, fallbacks, security headers, upgrades.

Most tests go through the real root resource (the one ``openclaw.tap`` serves) with
``treq.testing.StubTreq``, which runs a real ``Site`` on a memory reactor. Where the wire itself
matters (``Connection: close``, ``Content-Length``, ``100 Continue``) a ``GatewaySite`` protocol is
fed raw bytes over a ``StringTransport``. One test uses a real loopback socket to show that the
WebSocket and plain HTTP really share one port.
"""
from __future__ import annotations

import json
from typing import Any

import treq
from autobahn.twisted.resource import WebSocketResource
from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from openclaw.connection.factory import GatewayWebSocketFactory
from openclaw.http.app import GatewayHttpApp
from openclaw.http.site import GatewayRootResource, GatewaySite

from .support.gateway import TOKEN, make_gateway, start_gateway
from .support.loopback import parse_wire
from .support.wsclient import open_client

JSON_UTF8 = "application/json; charset=utf-8"
TEXT_UTF8 = "text/plain; charset=utf-8"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(self), geolocation=()",
}
LIVE_BODY = {"ok": True, "status": "live"}


def build_root(gateway: Any, **root_kwargs: Any) -> GatewayRootResource:
    """The root exactly as ``openclaw.tap.makeService`` builds it."""
    factory = GatewayWebSocketFactory(gateway, reactor=gateway.clock)
    return GatewayRootResource(WebSocketResource(factory), GatewayHttpApp(gateway).resource(), **root_kwargs)


def header(response: Any, name: str) -> str | None:
    """The first value of a response header as text, or None when it is absent."""
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


class _StubMixin:
    """A gateway (inline store, task.Clock) behind the real root, driven through StubTreq."""

    root_kwargs: dict[str, Any] = {}

    def setUp(self) -> None:
        self.gateway = make_gateway(self)
        self.clock = self.gateway.clock
        self.stub = StubTreq(build_root(self.gateway, **self.root_kwargs))

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[Any, bytes]:
        response = self.successResultOf(self.stub.request(method, "http://gateway.test" + path, headers=headers or {}, **kwargs))
        body = self.successResultOf(response.content())
        return response, body

    def assertSecurityHeaders(self, response: Any) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(response.headers.getRawHeaders(name), [value], name)


class LivenessProbeTests(_StubMixin, SynchronousTestCase):
    """``/health`` and ``/healthz`` answer without auth so orchestrators can probe the process."""

    def test_get(self):
        for path in ("/health", "/healthz"):
            with self.subTest(path=path):
                response, body = self.request("GET", path)
                self.assertEqual(response.code, 200)
                self.assertEqual(body, b'{"ok":true,"status":"live"}')
                self.assertEqual(header(response, "Content-Type"), JSON_UTF8)
                self.assertEqual(header(response, "Cache-Control"), "no-store")

    def test_head_has_headers_but_no_body(self):
        """HEAD is for cheap probes: same status and length, no body."""
        for path in ("/health", "/healthz"):
            with self.subTest(path=path):
                response, body = self.request("HEAD", path)
                self.assertEqual(response.code, 200)
                self.assertEqual(body, b"")
                self.assertEqual(header(response, "Content-Type"), JSON_UTF8)
                self.assertEqual(header(response, "Content-Length"), "27")
                self.assertEqual(header(response, "Cache-Control"), "no-store")

    def test_live_even_when_not_accepting(self):
        """Liveness is about the process; a draining gateway is alive (readiness says not ready)."""
        self.gateway.accepting = False
        response, body = self.request("GET", "/healthz")
        self.assertEqual((response.code, json.loads(body)), (200, LIVE_BODY))

    def test_other_methods_get_405_with_allow(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                response, body = self.request(method, "/healthz")
                self.assertEqual(response.code, 405)
                self.assertEqual(header(response, "Allow"), "GET, HEAD")
                self.assertEqual(header(response, "Content-Type"), TEXT_UTF8)
                self.assertEqual(body, b"Method Not Allowed")


class ReadinessProbeTests(_StubMixin, SynchronousTestCase):
    """``/ready`` and ``/readyz``: a bare verdict for everyone, details only for the operator."""

    def test_ready_without_auth_has_no_details(self):
        """Anonymous callers must not learn uptime or internals."""
        for path in ("/ready", "/readyz"):
            with self.subTest(path=path):
                response, body = self.request("GET", path)
                self.assertEqual(response.code, 200)
                self.assertEqual(json.loads(body), {"ready": True})
                self.assertEqual(header(response, "Content-Type"), JSON_UTF8)
                self.assertEqual(header(response, "Cache-Control"), "no-store")

    def test_wrong_token_gets_no_details(self):
        response, body = self.request("GET", "/readyz", {"Authorization": "Bearer not-the-token"})
        self.assertEqual((response.code, json.loads(body)), (200, {"ready": True}))

    def test_non_bearer_scheme_gets_no_details(self):
        response, body = self.request("GET", "/readyz", {"Authorization": f"Basic {TOKEN}"})
        self.assertEqual(json.loads(body), {"ready": True})

    def test_bearer_token_gets_details(self):
        for path in ("/ready", "/readyz"):
            with self.subTest(path=path):
                response, body = self.request("GET", path, {"Authorization": f"Bearer {TOKEN}"})
                self.assertEqual(response.code, 200)
                payload = json.loads(body)
                self.assertEqual(set(payload), {"ready", "failing", "uptimeMs", "eventLoop"})
                self.assertIs(payload["ready"], True)
                self.assertEqual(payload["failing"], [])
                self.assertIsInstance(payload["uptimeMs"], int)
                self.assertIsInstance(payload["eventLoop"], dict)
                self.assertIn("degraded", payload["eventLoop"])

    def test_bearer_scheme_is_case_insensitive(self):
        response, body = self.request("GET", "/readyz", {"Authorization": f"bearer {TOKEN}"})
        self.assertIn("failing", json.loads(body))

    def test_uptime_follows_the_gateway_clock(self):
        self.clock.advance(5)
        _, body = self.request("GET", "/readyz", {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(json.loads(body)["uptimeMs"], 5000)

    def test_not_accepting_is_503(self):
        """A draining gateway tells load balancers to stop sending it connections."""
        self.gateway.accepting = False
        for path in ("/ready", "/readyz"):
            with self.subTest(path=path):
                response, body = self.request("GET", path)
                self.assertEqual(response.code, 503)
                self.assertEqual(json.loads(body), {"ready": False})
                self.assertEqual(header(response, "Content-Type"), JSON_UTF8)

    def test_not_accepting_details_name_the_failing_check(self):
        self.gateway.accepting = False
        response, body = self.request("GET", "/readyz", {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(response.code, 503)
        payload = json.loads(body)
        self.assertIs(payload["ready"], False)
        self.assertIn("shutting-down", payload["failing"])

    def test_head_is_allowed(self):
        response, body = self.request("HEAD", "/readyz")
        self.assertEqual((response.code, body), (200, b""))

    def test_post_is_405(self):
        response, body = self.request("POST", "/readyz")
        self.assertEqual(response.code, 405)
        self.assertEqual(header(response, "Allow"), "GET, HEAD")
        self.assertEqual(body, b"Method Not Allowed")


class FallbackTests(_StubMixin, SynchronousTestCase):
    """Anything unrouted is a plain-text 404; handler crashes are a plain-text 500.

    (``/`` itself is the Control UI's page: tests/test_control_ui.py.)"""

    def test_unknown_path_is_plain_404(self):
        for path in ("/nope", "/v1/chat/completions", "/healthz/x", "/readyz/deep/er", "/healthzz"):
            with self.subTest(path=path):
                response, body = self.request("GET", path)
                self.assertEqual(response.code, 404)
                self.assertEqual(header(response, "Content-Type"), TEXT_UTF8)
                self.assertEqual(body, b"Not Found")

    def test_handler_crash_is_plain_500_and_logged(self):
        """No traceback reaches the client; the failure is logged for the operator."""

        def broken() -> list[str]:
            raise RuntimeError("probe exploded")

        self.gateway.failing_checks = broken
        response, body = self.request("GET", "/readyz")
        self.assertEqual(response.code, 500)
        self.assertEqual(header(response, "Content-Type"), TEXT_UTF8)
        self.assertEqual(header(response, "Cache-Control"), "no-store")
        self.assertEqual(body, b"Internal Server Error")
        self.assertSecurityHeaders(response)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SecurityHeaderTests(_StubMixin, SynchronousTestCase):
    """Every HTTP response carries the three security headers, whatever its status."""

    def test_on_every_kind_of_response(self):
        cases = [
            ("GET", "/healthz", {}, 200),
            ("HEAD", "/readyz", {}, 200),
            ("POST", "/healthz", {}, 405),
            ("GET", "/missing", {}, 404),
            ("GET", "/healthz", {"Upgrade": "h2c"}, 400),
            ("GET", "/healthz", {"Expect": "something-else"}, 417),
        ]
        for method, path, headers, status in cases:
            with self.subTest(method=method, path=path, headers=headers):
                response, _ = self.request(method, path, headers)
                self.assertEqual(response.code, status)
                self.assertSecurityHeaders(response)

    def test_on_503(self):
        self.gateway.accepting = False
        response, _ = self.request("GET", "/readyz")
        self.assertEqual(response.code, 503)
        self.assertSecurityHeaders(response)

    def test_no_hsts_by_default(self):
        """HSTS is only sent when configured: a loopback HTTP gateway must not pin browsers to TLS."""
        response, _ = self.request("GET", "/healthz")
        self.assertIsNone(response.headers.getRawHeaders("Strict-Transport-Security"))


class ConfiguredHstsTests(_StubMixin, SynchronousTestCase):
    """``gateway.http.securityHeaders.strictTransportSecurity`` adds HSTS to every response."""

    root_kwargs = {"strict_transport_security": "max-age=63072000; includeSubDomains"}

    def test_hsts_on_success_and_error(self):
        for path, status in (("/healthz", 200), ("/missing", 404)):
            with self.subTest(path=path):
                response, _ = self.request("GET", path)
                self.assertEqual(response.code, status)
                self.assertEqual(header(response, "Strict-Transport-Security"), "max-age=63072000; includeSubDomains")


class UpgradeAndExpectTests(_StubMixin, SynchronousTestCase):
    """Non-WebSocket upgrades are refused with 400 and unknown expectations with 417."""

    def test_other_upgrade_is_400(self):
        response, body = self.request("GET", "/healthz", {"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings"})
        self.assertEqual(response.code, 400)
        self.assertEqual(body, b"Bad Request")
        self.assertEqual(header(response, "Content-Type"), TEXT_UTF8)

    def test_websocket_upgrade_without_connection_upgrade_is_400(self):
        """Both tokens are needed; ``Upgrade: websocket`` alone is not a WebSocket handshake."""
        response, body = self.request("GET", "/", {"Upgrade": "websocket"})
        self.assertEqual((response.code, body), (400, b"Bad Request"))

    def test_unknown_expectation_is_417_with_empty_body(self):
        response, body = self.request("GET", "/healthz", {"Expect": "something-else"})
        self.assertEqual(response.code, 417)
        self.assertEqual(body, b"")

    def test_100_continue_is_served_normally(self):
        response, body = self.request("GET", "/healthz", {"Expect": "100-continue"})
        self.assertEqual((response.code, json.loads(body)), (200, LIVE_BODY))


class WireTests(SynchronousTestCase):
    """What actually goes on the wire, from a ``GatewaySite`` protocol fed raw request bytes."""

    def setUp(self) -> None:
        self.gateway = make_gateway(self)
        self.site = GatewaySite(build_root(self.gateway), reactor=self.gateway.clock)

    def exchange(self, raw: bytes) -> tuple[bytes, StringTransport]:
        address = IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(raw)
        self.addCleanup(protocol.connectionLost, None)
        return transport.value(), transport

    def test_probe_sets_content_length(self):
        wire, transport = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parse_wire(wire)
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(headers["content-length"], str(len(body)))
        self.assertEqual(json.loads(body), LIVE_BODY)
        self.assertFalse(transport.disconnecting, "keep-alive is preserved for ordinary requests")

    def test_refused_upgrade_says_close_and_closes(self):
        """Having sent ``Connection: close`` the server must actually close (RFC 9112 §9.6)."""
        wire, transport = self.exchange(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
        )
        status, headers, body = parse_wire(wire)
        self.assertEqual(status, "HTTP/1.1 400 Bad Request")
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(headers["content-type"], TEXT_UTF8)
        self.assertEqual(body, b"Bad Request")
        self.assertTrue(transport.disconnecting)

    def test_417_has_empty_body(self):
        wire, _ = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n")
        status, headers, body = parse_wire(wire)
        self.assertEqual(status, "HTTP/1.1 417 Expectation Failed")
        self.assertEqual(headers["content-length"], "0")
        self.assertEqual(body, b"")

    def test_100_continue_is_sent_first(self):
        wire, _ = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
        self.assertTrue(wire.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), wire)

    def test_head_sends_length_without_body(self):
        wire, _ = self.exchange(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = parse_wire(wire)
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(headers["content-length"], "27")
        self.assertEqual(body, b"")

    def test_no_tracebacks_and_no_access_log(self):
        """The Site stays quiet and never shows internals to clients."""
        self.assertFalse(self.site.displayTracebacks)
        self.assertFalse(self.site.noisy)


class SinglePortTests(TestCase):
    """On a real socket, one port serves the WebSocket on ``/`` and HTTP probes side by side."""

    def http_client(self) -> HTTPClient:
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool))

    @inlineCallbacks
    def test_websocket_and_http_share_the_port(self):
        running = yield start_gateway(self)
        client = yield open_client(self, running.url)
        self.assertEqual(client.challenge["type"], "event")
        self.assertEqual(client.challenge["event"], "connect.challenge")
        self.assertTrue(client.challenge["payload"]["nonce"])

        http = self.http_client()
        response = yield http.get(running.http_url + "/healthz")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), [JSON_UTF8])
        self.assertEqual(response.headers.getRawHeaders("X-Content-Type-Options"), ["nosniff"])
        body = yield treq.json_content(response)
        self.assertEqual(body, LIVE_BODY)

        response = yield http.get(running.http_url + "/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        body = yield treq.json_content(response)
        self.assertIs(body["ready"], True)
        self.assertEqual(body["failing"], [])

        # The WebSocket is unaffected by the HTTP traffic next to it.
        self.assertFalse(client.closed.called)
        yield client.close()
