"""Helpers for tests whose model traffic runs over real loopback HTTP to FakeUpstream.

A model stream settles on its ``[DONE]`` event, a reactor turn or two before the HTTP response
itself ends; a test that stops right then would leave the keep-alive connection behind. The
cleanup here closes every connection to the upstream and waits until both ends are gone, so
trial's dirty-reactor check stays quiet without any sleeping.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool


class WatchedList(list):
    """A list that can fire a Deferred once a condition on it holds (checked on every change)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self._watchers: list[tuple[Callable[[list], Any], Deferred]] = []

    def append(self, item: Any) -> None:
        super().append(item)
        self._changed()

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._changed()

    def when(self, predicate: Callable[[list], Any]) -> Deferred:
        if predicate(self):
            return succeed(self)
        d: Deferred = Deferred()
        self._watchers.append((predicate, d))
        return d

    def _changed(self) -> None:
        for entry in list(self._watchers):
            predicate, d = entry
            if predicate(self):
                self._watchers.remove(entry)
                d.callback(self)


def watch_upstream(upstream: Any) -> Any:
    """Make ``upstream.requests``, ``open_requests`` and ``connections`` WatchedLists.

    Requests reach the upstream only after a threaded name lookup, so waiting for them by
    turning the reactor a fixed number of times is not enough on a loaded machine; waiting
    on ``upstream.open_requests.when(...)`` is.
    """
    upstream.requests = WatchedList(upstream.requests)
    upstream.open_requests = WatchedList(upstream.open_requests)
    upstream.connections = WatchedList(upstream.connections)
    return upstream


@inlineCallbacks
def wait_until(predicate: Callable[[], Any], limit: int = 10000):
    """Let the reactor turn until ``predicate()`` holds (a bounded number of turns).

    Only for conditions that need no threads (socket traffic already under way)."""
    for _ in range(limit):
        if predicate():
            return
        yield deferLater(reactor, 0, lambda: None)
    raise AssertionError("condition never became true")


def _ports(connection: Any) -> tuple[int, ...]:
    try:
        return (connection.getHost().port, connection.getPeer().port)
    except OSError:  # a socket already half torn down
        return ()


def _upstream_connections(port: int) -> list[Any]:
    selectables = set(reactor.getReaders()) | set(reactor.getWriters())
    return [s for s in selectables if isinstance(s, tcp.Connection) and port in _ports(s)]


def loopback_http(testcase: Any, upstream: Any) -> HTTPClient:
    """A treq client with its own pool; after the test every connection to ``upstream`` is closed.

    Call after ``upstream.start(testcase)`` so this cleanup runs before the upstream's own.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)

    @inlineCallbacks
    def drain():
        for request in list(upstream.open_requests):
            if not request.finished and request.channel is not None:
                request.channel.transport.abortConnection()
        port = upstream.port.getHost().port
        for _ in range(10000):
            yield pool.closeCachedConnections()
            if not _upstream_connections(port):
                return
            yield deferLater(reactor, 0, lambda: None)
        raise AssertionError(f"connections to the upstream stayed open: {_upstream_connections(port)}")

    testcase.addCleanup(drain)
    return HTTPClient(Agent(reactor, pool=pool))


@inlineCallbacks
def settle_autobahn_timers(limit_s: float = 3.0):
    """Wait out txaio's batched-timer bucket calls, which outlive the timers they served.

    Autobahn schedules its handshake/ping timers through txaio's ``_BatchedTimer``; cancelling a
    timer leaves the bucket's ``_notify_bucket`` call on the global reactor, which trial then
    reports as a dirty reactor against whichever test happens to be running. Tests that drive
    Autobahn clients on the real reactor call this in cleanup.
    """
    deadline = reactor.seconds() + limit_s
    while reactor.seconds() < deadline:
        pending = [call for call in reactor.getDelayedCalls() if "_notify_bucket" in repr(call.func)]
        if not pending:
            return
        yield deferLater(reactor, min(0.05, max(0.0, min(call.getTime() for call in pending) - reactor.seconds()) + 0.01), lambda: None)


def parse_wire(wire: bytes) -> tuple[str, dict[str, str], bytes]:
    """A complete raw HTTP/1.1 response with a Content-Length body: status line, headers, body."""
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body
