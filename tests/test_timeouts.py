"""The waits that give up after a deadline: Deferred.addTimeout on the injected clock.

Each of these once had a hand-written callLater timer; the tests pin what happens when the
deadline passes (and that nothing fires early), with task.Clock standing in for the reactor.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.methods.sessions import _finished_within
from openclaw.protocol.constants import CLOSE_GRACE_MS
from openclaw.protocol.errors import UNAVAILABLE, GatewayError
from openclaw.services.websocket import WebSocketService


class _Connection:
    def __init__(self, factory: _Factory, conn_id: str):
        self.factory, self.conn_id, self.aborted = factory, conn_id, False

    def dropConnection(self, abort: bool = False) -> None:
        self.aborted = abort
        self.factory.closed(self)


class _Factory:
    """The slice of GatewayWebSocketFactory the drain uses: its connections and a drained signal."""

    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.waiters: list[Deferred] = []

    def when_drained(self) -> Deferred:
        if not self.connections:
            return succeed(None)
        d: Deferred = Deferred()
        self.waiters.append(d)
        return d

    def closed(self, connection: Any) -> None:
        self.connections.discard(connection)
        if not self.connections:
            for waiter in self.waiters:
                if not waiter.called:
                    waiter.callback(None)


class DrainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = _Factory()
        self.service = WebSocketService(gateway=None, factory=self.factory, clock=self.clock)  # type: ignore[arg-type]
        self.straggler = _Connection(self.factory, "c1")
        self.factory.connections.add(self.straggler)

    def test_connections_that_ignore_the_close_are_aborted_after_the_grace(self) -> None:
        drained = self.service._drain()
        self.clock.advance(CLOSE_GRACE_MS / 1000.0 - 0.001)
        self.assertNoResult(drained)
        self.assertFalse(self.straggler.aborted)
        self.clock.advance(0.001)
        self.assertTrue(self.straggler.aborted)
        self.assertIsNone(self.successResultOf(drained))

    def test_a_prompt_close_ends_the_drain_without_aborting(self) -> None:
        drained = self.service._drain()
        self.factory.closed(self.straggler)
        self.assertIsNone(self.successResultOf(drained))
        self.clock.advance(CLOSE_GRACE_MS / 1000.0)
        self.assertFalse(self.straggler.aborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Run:
    def __init__(self) -> None:
        self.finished: Deferred = Deferred()

    def when_finished(self) -> Deferred:
        return self.finished


class _Gateway:
    def __init__(self, clock: Clock):
        self.clock = clock


class FinishedWithinTests(SynchronousTestCase):
    def test_a_run_that_does_not_wind_down_is_unavailable_after_the_wait(self) -> None:
        clock = Clock()
        waited = _finished_within(_Gateway(clock), _Run(), 5.0, "agent:main:main")
        clock.advance(4.9)
        self.assertNoResult(waited)
        clock.advance(0.1)
        error = self.failureResultOf(waited, GatewayError).value
        self.assertEqual(error.code, UNAVAILABLE)
        self.assertTrue(error.retryable)
        self.assertIn("agent:main:main is still active", error.message)

    def test_a_run_that_finishes_in_time_passes_its_result_through(self) -> None:
        clock = Clock()
        run = _Run()
        waited = _finished_within(_Gateway(clock), run, 5.0, "agent:main:main")
        run.finished.callback("done")
        self.assertEqual(self.successResultOf(waited), "done")
        self.assertEqual(clock.getDelayedCalls(), [])
