"""The session store and agent runs as a service: load on start, wind down on stop.

Stopping aborts every run first (each records what it streamed so far), then closes the
upstream connection pool, then the store; the store's single worker runs those writes before
the close because it takes work in order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList

from ..stores.sqlite import refuse_to_start_without

if TYPE_CHECKING:
    from ..hub import GatewayHub


class AgentService(Service):
    def __init__(self, gateway: GatewayHub, pool: Any = None):
        self._gateway = gateway
        self._pool = pool

    def startService(self) -> Deferred[None]:
        super().startService()
        d: Deferred[None] = self._gateway.sessions.load()
        d.addCallback(self._loaded)
        d.addErrback(refuse_to_start_without("session store", self._gateway.sessions.path))
        return d

    def _loaded(self, _: object) -> None:
        self._gateway.sessions_loaded = True

    def stopService(self) -> Deferred[list[tuple[bool, Any]]]:
        super().stopService()
        self._gateway.runs.stop_all()
        closing = []
        if self._pool is not None:
            closing.append(self._pool.closeCachedConnections())
        closing.append(self._gateway.sessions.close())
        return DeferredList(closing, consumeErrors=True)
