"""Slow request headers (issue 13, item 6): a deadline, and a per-address cap on unfinished requests.

One header line every 5 s used to keep a socket open for 70 s and more, and one address could
hold 2,000 such sockets. Now the headers of a request must be complete within
``HEADER_TIMEOUT_S`` of the connection opening (or of the previous response on a kept-alive
connection), and one address may hold at most as many connections without complete headers as
it may hold unauthenticated WebSockets (32): the next is answered 503 and closed. Driven on a
``task.Clock`` with ``StringTransport``s, plus one real loopback socket.
"""
from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.connection.factory import GatewayWebSocketFactory
from openclaw.http.app import GatewayHttpApp
from openclaw.http.channel import HEADER_TIMEOUT_S
from openclaw.http.site import GatewayRootResource, GatewaySite
from openclaw.protocol.constants import MAX_PREAUTH_CONNECTIONS_PER_IP

from .support.gateway import make_gateway, start_gateway

TOO_MANY = b"HTTP/1.1 503 Too many unauthenticated sockets\r\n"  # the pre-auth cap's line
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\n"


class SlowHeaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = make_gateway(self)
        self.clock = Clock()
        root = GatewayRootResource(
            WebSocketResource(GatewayWebSocketFactory(self.gateway, reactor=self.gateway.clock)), GatewayHttpApp(self.gateway).resource()
        )
        self.site = GatewaySite(root, reactor=self.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self, host: str = "203.0.113.9", port: int = 50000) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", host, port)
        protocol = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.addCleanup(self.lose, protocol, transport)
        return protocol, transport

    def lose(self, protocol: Any, transport: StringTransport) -> None:
        if not getattr(transport, "_test_lost", False):
            transport._test_lost = True
            protocol.connectionLost(Failure(ConnectionDone()))

    def test_the_deadline(self):
        self.assertEqual(HEADER_TIMEOUT_S, 15.0)
        self.assertEqual(self.site.header_timeout_s, HEADER_TIMEOUT_S)

    def test_a_header_line_every_five_seconds_is_cut_at_the_deadline(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /health HTTP/1.1\r\n")
        for index in range(2):
            self.clock.advance(5)
            protocol.dataReceived(b"X-Slow-%d: 1\r\n" % index)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(HEADER_TIMEOUT_S - 10)
        self.assertTrue(transport.value().startswith(TIMED_OUT), transport.value())
        self.assertIn(b"Connection: close", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual([call for call in self.clock.getDelayedCalls() if call.func.__name__ == "_timed_out"], [])

    def test_a_silent_connection_is_closed_without_an_answer(self):
        protocol, transport = self.connect()
        self.clock.advance(HEADER_TIMEOUT_S)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_complete_headers_stop_the_clock(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        self.clock.advance(HEADER_TIMEOUT_S + 1)
        self.assertFalse(transport.disconnecting)  # the body has its own 30 s (test_http_limits)

    def test_a_kept_alive_connection_gets_a_new_deadline_per_request(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"HTTP/1.1 404", transport.value())
        self.assertFalse(transport.disconnecting)
        transport.clear()
        self.clock.advance(HEADER_TIMEOUT_S - 1)
        protocol.dataReceived(b"GET /still-nothing HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(1)
        self.assertTrue(transport.value().startswith(TIMED_OUT), transport.value())

    def test_unfinished_requests_per_address_are_capped(self):
        held = [self.connect(port=40000 + index) for index in range(MAX_PREAUTH_CONNECTIONS_PER_IP)]
        for protocol, _ in held:
            protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        protocol, transport = self.connect(port=41000)
        self.assertTrue(transport.value().startswith(TOO_MANY), transport.value())
        self.assertIn(b"too many unfinished requests from this address", transport.value())
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        _, other = self.connect(host="198.51.100.1")  # another address is not affected
        self.assertEqual(other.value(), b"")
        self.assertFalse(other.disconnecting)

    def test_a_slot_is_freed_when_headers_complete_or_the_socket_closes(self):
        held = [self.connect(port=40000 + index) for index in range(MAX_PREAUTH_CONNECTIONS_PER_IP)]
        first, _ = held[0]
        first.dataReceived(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        protocol, transport = self.connect(port=41000)
        self.assertEqual(transport.value(), b"")
        self.lose(*held[1])
        protocol, transport = self.connect(port=41001)
        self.assertEqual(transport.value(), b"")
        protocol, transport = self.connect(port=41002)
        self.assertTrue(transport.value().startswith(TOO_MANY))


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class RealSocketTests(TestCase):
    timeout = 15

    @inlineCallbacks
    def test_the_cap_and_the_deadline_over_loopback(self):
        running = yield start_gateway(self)
        site = running.port.factory
        site.header_timeout_s = 0.5
        port = running.port.getHost().port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        held = []
        for _ in range(MAX_PREAUTH_CONNECTIONS_PER_IP):
            held.append((yield connectProtocol(endpoint, _Recorder())))
            held[-1].transport.write(b"GET / HTTP/1.1\r\n")
        refused = yield connectProtocol(endpoint, _Recorder())
        yield refused.lost
        self.assertTrue(refused.data.startswith(TOO_MANY), refused.data)
        for recorder in held:  # each is cut at the (shortened) deadline
            yield recorder.lost
            self.assertTrue(recorder.data.startswith(TIMED_OUT), recorder.data)
