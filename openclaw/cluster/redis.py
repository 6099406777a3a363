"""Two Redis connections (commands, subscriptions) speaking txredisapi's protocols.

The connections are kept by Twisted's ``ClientService`` on the injected reactor, so a Redis
restart is followed by reconnects with backoff; each time the subscriber is back it subscribes
again and ``on_ready`` runs (the bus then re-announces this instance and re-reads its peers).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger

from .options import RedisAddress

CONNECT_TIMEOUT_S = 5
REPLY_TIMEOUT_S = 10


def _ignore(_: object) -> None:
    """Consume a failure already reported elsewhere."""


class RedisUnavailable(Exception):
    """The bus cannot reach Redis right now."""


class _Subscriber(txredisapi.SubscriberProtocol):
    on_message: Callable[[str, Any], None]

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.on_message(channel if isinstance(channel, str) else channel.decode(), message)


class _RedisFactory(Factory):
    """Builds one txredisapi protocol per connection (auth and SELECT happen in it)."""

    noisy = False
    isLazy = True  # txredisapi logs auth/SELECT errors instead of failing a pool Deferred

    def __init__(self, protocol: type, address: RedisAddress, ready: Callable[[Any], None], lost: Callable[[Any], None]):
        self._protocol = protocol
        self._address = address
        self._ready = ready
        self._lost = lost

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self._protocol(
            password=self._address.password,
            dbid=self._address.db,
            replyTimeout=REPLY_TIMEOUT_S if self._protocol is txredisapi.RedisProtocol else None,
        )
        protocol.factory = self
        protocol.whenConnected().addCallback(self._connected)
        return protocol

    def _connected(self, protocol: Any) -> None:
        protocol.whenDisconnected().addCallback(self._lost)
        self._ready(protocol)

    # txredisapi calls these when AUTH or SELECT fail: the connection is closed and retried.
    def stopTrying(self) -> None:
        pass

    def connectionError(self, why: str) -> None:
        Logger(namespace="openclaw.cluster.redis").error("{why}", why=why)


class RedisLink:
    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        channels: list[str],
        on_message: Callable[[str, Any], None],
        on_ready: Callable[[], None],
        on_lost: Callable[[], None],
    ):
        self._clock = reactor
        self._address = address
        self._channels = channels
        self._on_message = on_message
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._commands: Any = None
        self._subscriber: Any = None

        def endpoint() -> HostnameEndpoint:
            return HostnameEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT_S)

        policy = backoffPolicy(initialDelay=0.5, maxDelay=5.0)
        self._command_service = ClientService(
            endpoint(), _RedisFactory(txredisapi.RedisProtocol, address, self._commands_ready, self._commands_lost),
            retryPolicy=policy, clock=reactor,
        )
        self._subscriber_service = ClientService(
            endpoint(), _RedisFactory(_Subscriber, address, self._subscriber_ready, self._subscriber_lost),
            retryPolicy=policy, clock=reactor,
        )
        self.connected = False
        self._first_ready: Deferred[None] | None = Deferred()

    @property
    def where(self) -> str:
        return f"{self._address.host}:{self._address.port}"

    def start(self) -> Deferred[None]:
        """Connect; fires once both connections are up and subscribed, fails on the first refusal."""
        self._command_service.startService()
        self._subscriber_service.startService()
        first = self._command_service.whenConnected(failAfterFailures=1)
        ready = self._first_ready

        def subscriber(_: object) -> Deferred[IProtocol]:
            return self._subscriber_service.whenConnected(failAfterFailures=1)

        def subscribed(_: object) -> Deferred[None]:
            return ready if ready is not None else succeed(None)

        return first.addCallback(subscriber).addCallback(subscribed)

    def stop(self) -> Deferred[list[Any]]:
        """Close both connections (on the next turn: a refused start may still be inside
        ClientService's own callbacks, which cannot be re-entered)."""
        if self._first_ready is not None and not self._first_ready.called:
            self._first_ready.errback(RedisUnavailable("stopped before Redis answered"))
            self._first_ready.addErrback(_ignore)

        def stop_both(_: None) -> Deferred[list[Any]]:
            return gatherResults([self._command_service.stopService(), self._subscriber_service.stopService()])

        return deferLater(self._clock, 0).addCallback(stop_both)

    def command(self, *args: Any) -> Deferred[Any]:
        protocol = self._commands
        if protocol is None or not protocol.connected:
            return fail(RedisUnavailable(f"Redis at {self.where} is not connected"))
        reply: Deferred[Any] = protocol.execute_command(*args)  # txredisapi replies: any Redis value
        return reply

    def _commands_ready(self, protocol: Any) -> None:
        self._commands = protocol
        self._maybe_ready()

    def _commands_lost(self, protocol: Any) -> None:
        if self._commands is protocol:
            self._commands = None
        self._lost()

    def _subscriber_ready(self, protocol: Any) -> None:
        protocol.on_message = self._on_message
        d = protocol.subscribe(self._channels)

        def done(_: Any) -> None:
            self._subscriber = protocol
            self._maybe_ready()

        d.addCallbacks(done, lambda failure: self._log.failure("subscribing to the cluster bus failed", failure))

    def _subscriber_lost(self, protocol: Any) -> None:
        if self._subscriber is protocol:
            self._subscriber = None
        self._lost()

    def _maybe_ready(self) -> None:
        if self.connected or self._commands is None or self._subscriber is None:
            return
        self.connected = True
        if self._first_ready is not None:
            first, self._first_ready = self._first_ready, None
            first.callback(None)
        self._on_ready()

    def _lost(self) -> None:
        if self.connected:
            self.connected = False
            self._on_lost()
