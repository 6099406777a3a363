"""The Site's HTTP channel: request headers have a deadline, and unfinished requests a per-address cap.

twisted.web's own timeout is an idle one, reset by every byte, so a client sending one header
line every 5 s kept its socket for as long as it liked, and one address could hold thousands of
them (issue 13, item 6, "slowloris"). Here:

* the headers of a request must be complete ``header_timeout_s`` (15 s, the WebSocket handshake's
  timeout) after the connection opens, or after the previous response on a kept-alive
  connection; otherwise the client gets 408 (or, when it sent nothing, just the close);
* one address may hold at most ``max_unfinished_per_ip`` connections whose request headers are
  not complete, the same number and the same semantics as the WebSocket pre-auth cap (32 per
  address, counted from connect, released when the headers are complete or the socket closes);
  the next connection is answered 503 and closed at once.

A WebSocket upgrade completes its headers, so it leaves this count before the pre-auth cap counts it.
"""
from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from ..connection.limits import PreauthLimiter
from .headers import SECURITY_HEADERS

HEADER_TIMEOUT_S = 15.0


def _raw_response(status: bytes, message: str) -> bytes:
    body = message.encode("utf-8")
    head = [b"HTTP/1.1 " + status, *(name + b": " + value for name, value in SECURITY_HEADERS)]
    head += [b"Content-Type: text/plain; charset=utf-8", b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# The WebSocket pre-auth cap's status line: one wording for "this address holds too many sockets
# that are not in yet", whichever of the two caps refused it.
TOO_MANY = _raw_response(b"503 Too many unauthenticated sockets", "too many unfinished requests from this address")
TIMED_OUT = _raw_response(b"408 Request Timeout", "request headers took too long")


class _ChannelLimits(Protocol):
    """What the channel reads from its site (http/site.py's GatewaySite)."""

    unfinished: PreauthLimiter
    header_timeout_s: float


class GatewayHTTPChannel(HTTPChannel):
    """HTTPChannel plus the header deadline and the unfinished-request cap (see the module)."""

    site: _ChannelLimits

    _deadline: IDelayedCall | None = None
    _counted_ip: str | None = None
    _counted = False
    _started = False  # bytes of the current request have arrived

    def connectionMade(self) -> None:
        super().connectionMade()
        transport = self.transport
        assert transport is not None  # connected: makeConnection set it
        peer = transport.getPeer()
        ip = getattr(peer, "host", None) or ""
        if not self.site.unfinished.acquire(ip):
            transport.write(TOO_MANY)
            transport.loseConnection()
            return
        self._counted, self._counted_ip = True, ip
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        self._started = True
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._headers_done()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and self.transport is not None and not getattr(self.transport, "disconnecting", False):
            self._started = bool(self._dataBuffer)
            self._arm()  # the next request's headers get their own deadline

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._headers_done()
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._cancel()
        self._deadline = self.callLater(self.site.header_timeout_s, self._timed_out)

    def _cancel(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _headers_done(self) -> None:
        self._cancel()
        if self._counted:
            self._counted = False
            self.site.unfinished.release(self._counted_ip)

    def _timed_out(self) -> None:
        self._deadline = None
        self._headers_done()
        transport = self.transport
        if transport is None:
            return
        if self._started:
            transport.write(TIMED_OUT)
        transport.loseConnection()
