"""The Autobahn server factory, with every protocol option set explicitly (pitfalls 3, 5, 9)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.defer import Deferred

from ._autobahn import defer_debug_formatting
from .protocol import GatewayServerProtocol

if TYPE_CHECKING:
    from ..hub import GatewayHub

AUTO_PING_INTERVAL_S = 30
AUTO_PING_TIMEOUT_S = 25
OPEN_HANDSHAKE_TIMEOUT_S = 10
CLOSE_HANDSHAKE_TIMEOUT_S = 1


class GatewayWebSocketFactory(WebSocketServerFactory):
    protocol = GatewayServerProtocol

    def __init__(self, gateway: GatewayHub, reactor: Any = None):
        # No ``Server`` banner on the 101 (Autobahn sends ``server`` as that header when set),
        # consistent with the HTTP responses, which strip it.
        super().__init__(server=None, reactor=reactor)
        defer_debug_formatting()
        self.gateway = gateway
        self.connections: set[GatewayServerProtocol] = set()
        self._drain_waiters: list[Deferred[None]] = []
        self.setProtocolOptions(
            # Clients send JSON text; compression is deliberately off, as in the reference.
            perMessageCompressionAccept=lambda offers: None,
            maxFramePayloadSize=gateway.settings.max_payload,
            maxMessagePayloadSize=gateway.settings.max_payload,
            autoFragmentSize=0,
            failByDrop=False,
            openHandshakeTimeout=OPEN_HANDSHAKE_TIMEOUT_S,
            closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT_S,
            autoPingInterval=AUTO_PING_INTERVAL_S,
            autoPingTimeout=AUTO_PING_TIMEOUT_S,
            autoPingRestartOnAnyTraffic=True,
            tcpNoDelay=True,
            # Origins are judged in the connect handshake (CONTROL_UI_ORIGIN_NOT_ALLOWED), so the
            # upgrade itself accepts any; passed explicitly because setProtocolOptions resets them.
            allowedOrigins=["*"],
            allowNullOrigin=True,
            trustXForwardedFor=0,
            maxConnections=0,
        )

    def connection_opened(self, connection: GatewayServerProtocol) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: GatewayServerProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def when_drained(self) -> Deferred[None]:
        """Fires once no WebSocket connection is left (used by a graceful stop)."""
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
        else:
            self._drain_waiters.append(d)
        return d
