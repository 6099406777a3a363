"""One ``twisted.web`` Site for the port: WebSocket upgrades go to Autobahn, the rest to Klein.

The root resource is a leaf that looks at each request once. A real upgrade (``Upgrade:
websocket`` and ``Connection: upgrade``) is handed to Autobahn's ``WebSocketResource``; any other
``Upgrade`` is refused with 400, as the reference does; everything else renders through Klein.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Site

from ..connection.limits import PreauthLimiter
from ..protocol.constants import MAX_PREAUTH_CONNECTIONS_PER_IP
from .channel import HEADER_TIMEOUT_S, GatewayHTTPChannel
from .headers import apply_security_headers, plain_text
from .request import BODY_TIMEOUT_S, MAX_BODY_BYTES, GatewayRequest


def _tokens(request: Any, name: bytes) -> set[str]:
    value = request.getHeader(name)
    if not value:
        return set()
    return {part.strip().lower() for part in value.decode("latin-1").split(",")}


def is_websocket_upgrade(request: Any) -> bool:
    return "websocket" in _tokens(request, b"upgrade") and "upgrade" in _tokens(request, b"connection")


class GatewayRootResource(Resource):
    isLeaf = True

    def __init__(
        self,
        websocket: WebSocketResource,
        http: Resource,
        strict_transport_security: Callable[[], str | None] | str | None = None,
    ):
        super().__init__()
        self._websocket = websocket
        self._http = http
        # A callable is read per request, so a reloaded HSTS setting applies at once.
        self._hsts = strict_transport_security if callable(strict_transport_security) else (lambda: strict_transport_security)

    def render(self, request: Any) -> Any:
        if is_websocket_upgrade(request):
            return self._websocket.render(request)
        apply_security_headers(request, self._hsts())
        request.responseHeaders.removeHeader(b"server")  # no version banner, as in the reference
        if request.getHeader(b"upgrade"):
            request.setHeader(b"Connection", b"close")
            channel = getattr(request, "channel", None)
            if channel is not None:
                # Twisted only honours a client's "Connection: close"; having said close, close.
                channel.persistent = False
            return plain_text(request, 400, "Bad Request")
        expect = request.getHeader(b"expect")
        if expect and expect.strip().lower() != b"100-continue":
            request.setResponseCode(417)
            return b""
        return self._http.render(request)


class GatewaySite(Site):
    """A quiet Site: no access log lines, no tracebacks to clients, bounded request bodies, and
    request headers with a deadline and a per-address cap on unfinished ones (http/channel.py)."""

    noisy = False
    displayTracebacks = False
    # Twisted annotates this for its default HTTP/1.1-or-2 wrapper; buildProtocol takes any HTTPChannel.
    protocol = GatewayHTTPChannel  # type: ignore[assignment]
    requestFactory = GatewayRequest
    max_body_bytes = MAX_BODY_BYTES
    body_timeout_s = BODY_TIMEOUT_S
    header_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, resource: Any, *args: Any, max_unfinished_per_ip: int = MAX_PREAUTH_CONNECTIONS_PER_IP, **kwargs: Any):
        super().__init__(resource, *args, **kwargs)
        self.unfinished = PreauthLimiter(max_unfinished_per_ip)

    def log(self, request: Any) -> None:
        """Access logging is off; failures are logged where they happen."""
