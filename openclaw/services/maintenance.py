"""Periodic broadcasts: ``tick`` every ``tickIntervalMs`` and a ``health`` refresh every 60 s.

Both run on the injected clock and swallow (and log) their own failures, because one exception
would otherwise stop a ``LoopingCall`` for good while the service still claims to run (pitfall 11).
"""
from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


class PeriodicBroadcast(Service):
    _log = Logger()

    def __init__(self, clock: IReactorTime, interval_s: float, action: Callable[[], None], *, what: str):
        self._interval = interval_s
        self._action = action
        self._what = what
        self._loop = LoopingCall(self._run)
        self._loop.clock = clock

    def _run(self) -> None:
        try:
            self._action()
        except Exception:
            self._log.failure("periodic {what} failed", what=self._what)

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> None:
        if self._loop.running:
            self._loop.stop()
        super().stopService()
