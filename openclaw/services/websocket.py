"""Owns the WebSocket factory's life: started with the tree, and a graceful goodbye on stop.

``Site`` never starts a factory wrapped in a resource (the crossbar FIXME), so this service does.
On stop it refuses new connects, sends ``shutdown`` to everyone, closes every socket with
1012 "service restart", and waits (at most the close grace) for them to go.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..protocol.constants import CLOSE_GRACE_MS, CLOSE_SERVICE_RESTART

if TYPE_CHECKING:
    from ..connection.factory import GatewayWebSocketFactory
    from ..hub import GatewayHub

DEFAULT_SHUTDOWN_REASON = "gateway stopping"


class WebSocketService(Service):
    _log = Logger()

    def __init__(self, gateway: GatewayHub, factory: GatewayWebSocketFactory, clock: IReactorTime):
        self._gateway = gateway
        self.factory = factory
        self._clock = clock
        self.shutdown_reason = DEFAULT_SHUTDOWN_REASON
        self.restart_expected_ms: int | None = None

    def startService(self) -> None:
        super().startService()
        self._gateway.accepting = True
        self.factory.startFactory()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        gateway = self._gateway
        gateway.accepting = False
        # Pending exec approvals do not outlive the process (as in the reference): stop their timers.
        gateway.exec_approvals.records.clear()
        payload: dict[str, Any] = {"reason": self.shutdown_reason}
        if self.restart_expected_ms is not None:
            payload["restartExpectedMs"] = self.restart_expected_ms
        # Droppable: a client whose buffer is already full must still get the 1012 below (so it
        # reconnects), not a 1008 "slow consumer" for the sake of this one event.
        gateway.clients.broadcast("shutdown", payload, drop_if_slow=True)
        for connection in list(self.factory.connections):
            connection.close_with(CLOSE_SERVICE_RESTART, "service restart")
        d = self._drain()
        d.addBoth(self._stop_factory)
        return d

    def _drain(self) -> Deferred[None]:
        if not self.factory.connections:
            return succeed(None)
        drained = self.factory.when_drained().addTimeout(CLOSE_GRACE_MS / 1000.0, self._clock)
        return drained.addErrback(self._abort_stragglers)

    def _abort_stragglers(self, failure: Failure) -> Deferred[None]:
        """Past the grace period: abort whoever ignored the close, then wait for them to go."""
        failure.trap(TimeoutError)
        for connection in list(self.factory.connections):
            self._log.info("aborting connection {conn} that ignored the close", conn=connection.conn_id)
            connection.dropConnection(abort=True)
        return self.factory.when_drained() if self.factory.connections else succeed(None)

    def _stop_factory(self, result: Any) -> Any:
        self.factory.stopFactory()
        return result
