"""Watches how late the reactor runs its timers, the gateway's own measure of being overloaded.

A one-second ``LoopingCall`` records how far behind schedule each call fired; ``health`` and
``status`` report the p99 and maximum delay and the process CPU share over the last minute.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

SAMPLE_INTERVAL_S = 1.0
SAMPLES_KEPT = 60
DEGRADED_P99_MS = 250.0


class EventLoopMonitor(Service):
    _log = Logger()

    def __init__(self, clock: IReactorTime, *, cpu_time: Callable[[], float] = time.process_time):
        self._clock = clock
        self._cpu_time = cpu_time
        self._delays: deque[float] = deque(maxlen=SAMPLES_KEPT)
        self._expected_at = 0.0
        self._cpu_mark = (0.0, 0.0)
        self._utilization = 0.0
        self._degraded_since_ms: int | None = None
        # The summary only changes once a second, but status and health read it per request.
        self._summary: dict[str, Any] | None = None
        self._loop = LoopingCall(self._sample)
        self._loop.clock = clock
        # Told (degraded, p99 ms) when the loop turns degraded or recovers (the stability record).
        self.on_change: Callable[[bool, float], None] | None = None

    def startService(self) -> None:
        super().startService()
        self._expected_at = self._clock.seconds() + SAMPLE_INTERVAL_S
        self._cpu_mark = (self._clock.seconds(), self._cpu_time())
        self._loop.start(SAMPLE_INTERVAL_S, now=False)

    def stopService(self) -> None:
        if self._loop.running:
            self._loop.stop()
        super().stopService()

    def _sample(self) -> None:
        self._summary = None
        try:
            now = self._clock.seconds()
            self._delays.append(max(0.0, (now - self._expected_at) * 1000.0))
            self._expected_at = now + SAMPLE_INTERVAL_S
            wall_mark, cpu_mark = self._cpu_mark
            cpu_now = self._cpu_time()
            if now > wall_mark:
                self._utilization = max(0.0, (cpu_now - cpu_mark) / (now - wall_mark))
            self._cpu_mark = (now, cpu_now)
            p99 = self._p99()
            degraded = p99 > DEGRADED_P99_MS
            was_degraded = self._degraded_since_ms is not None
            if degraded and not was_degraded:
                self._degraded_since_ms = int(now * 1000)
            elif not degraded:
                self._degraded_since_ms = None
            if degraded != was_degraded and self.on_change is not None:
                self.on_change(degraded, p99)
        except Exception:  # a failure must never stop the LoopingCall for good
            self._log.failure("event loop sample failed")

    def _p99(self) -> float:
        if not self._delays:
            return 0.0
        ordered = sorted(self._delays)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = self._summarise()
        return dict(self._summary)

    def _summarise(self) -> dict[str, Any]:
        degraded = self._degraded_since_ms is not None
        return {
            "degraded": degraded,
            "degradedSinceMs": self._degraded_since_ms,
            "reasons": ["event-loop-delay"] if degraded else [],
            "intervalMs": SAMPLE_INTERVAL_S * 1000.0,
            "delayP99Ms": round(self._p99(), 1),
            "delayMaxMs": round(max(self._delays, default=0.0), 1),
            "utilization": round(min(self._utilization, 1.0), 3),
            "cpuCoreRatio": round(self._utilization, 3),
        }
