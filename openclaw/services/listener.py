"""One listening address of the gateway's port, as a service whose start says whether it listens.

``StreamServerEndpointService`` only reports a failure to listen through a private flag
(``_raiseSynchronously``); this service returns the listen Deferred from ``startService``
instead, so the ordered tree waits on it and a failure reaches whoever started the tree. The
first address must listen or start-up fails; an extra one (``::1`` on a host without IPv6) is
``required=False``: the failure is logged and the gateway serves on the others.
"""
from __future__ import annotations


from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure


class EndpointListener(Service):
    """Listens with ``factory`` on ``endpoint`` while running."""

    _log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, required: bool = True):
        self.endpoint = endpoint
        self.factory = factory
        self.required = required
        self._port: IListeningPort | None = None

    def startService(self) -> Deferred[None]:
        super().startService()
        d = self.endpoint.listen(self.factory).addCallback(self._listening)
        if not self.required:
            d.addErrback(self._unavailable)
        return d

    def _listening(self, port: IListeningPort) -> None:
        self._port = port

    def _unavailable(self, failure: Failure) -> None:
        self._log.failure("not listening on {name}; serving on the other addresses", failure, name=self.name)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self._port = self._port, None
        stopping = port.stopListening() if port is not None else None
        return stopping if stopping is not None else succeed(None)
