"""``status.processMemory``: one procfs reading per second of gateway clock, not one per request."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.state.process import ProcessMemory, read_process_memory


class ProcessMemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.readings = iter(range(1, 100))
        self.memory = ProcessMemory(self.clock, read=lambda: {"rssBytes": next(self.readings)})

    def test_reading_is_reused_within_a_second(self):
        self.assertEqual(self.memory.current(), {"rssBytes": 1})
        self.clock.advance(0.999)
        self.assertEqual(self.memory.current(), {"rssBytes": 1})
        self.clock.advance(0.001)
        self.assertEqual(self.memory.current(), {"rssBytes": 2})

    def test_callers_cannot_change_the_cached_reading(self):
        self.memory.current()["rssBytes"] = 0
        self.assertEqual(self.memory.current(), {"rssBytes": 1})

    def test_real_reading_has_a_resident_size(self):
        self.assertGreater(read_process_memory()["rssBytes"], 0)
