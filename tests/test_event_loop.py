"""The event-loop monitor: late timers become ``delayP99Ms`` and ``degraded`` in health/status."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.services.event_loop import DEGRADED_P99_MS, EventLoopMonitor


class EventLoopMonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cpu = [0.0]
        self.monitor = EventLoopMonitor(self.clock, cpu_time=lambda: self.cpu[0])
        self.monitor.startService()
        self.addCleanup(self.monitor.stopService)

    def test_on_time_loop_is_healthy(self):
        for _ in range(5):
            self.cpu[0] += 0.25
            self.clock.advance(1.0)
        summary = self.monitor.summary()
        self.assertEqual((summary["degraded"], summary["delayP99Ms"]), (False, 0.0))
        self.assertEqual(summary["utilization"], 0.25)

    def test_summary_follows_each_new_sample(self):
        """The summary is cached between samples, so a late sample must still show at once."""
        self.clock.advance(1.0)
        self.assertFalse(self.monitor.summary()["degraded"])
        self.clock.advance(1.0 + (DEGRADED_P99_MS + 50) / 1000.0)  # the next call fires late
        summary = self.monitor.summary()
        self.assertTrue(summary["degraded"])
        self.assertEqual(summary["reasons"], ["event-loop-delay"])
        self.assertGreater(summary["delayMaxMs"], DEGRADED_P99_MS)

    def test_callers_get_their_own_copy(self):
        self.clock.advance(1.0)
        self.monitor.summary()["degraded"] = "changed"
        self.assertFalse(self.monitor.summary()["degraded"])
