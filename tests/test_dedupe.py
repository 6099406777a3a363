"""IdempotencyCache: entries live 300 s, at most 1000 are kept, the oldest go first."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from openclaw.agents.dedupe import DEDUPE_MAX_ENTRIES, DEDUPE_TTL_S, IdempotencyCache


class IdempotencyCacheTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.cache = IdempotencyCache(self.clock)

    def test_reference_numbers(self):
        self.assertEqual(DEDUPE_TTL_S, 300.0)
        self.assertEqual(DEDUPE_MAX_ENTRIES, 1000)

    def test_get_missing(self):
        self.assertIsNone(self.cache.get("nope"))
        self.assertEqual(len(self.cache), 0)

    def test_entry_lives_for_the_ttl(self):
        self.cache.put("k", "v")
        self.clock.advance(DEDUPE_TTL_S - 0.001)
        self.assertEqual(self.cache.get("k"), "v")
        self.clock.advance(0.001)
        self.assertIsNone(self.cache.get("k"))
        self.assertEqual(len(self.cache), 0)

    def test_ttl_counts_from_each_put(self):
        self.cache.put("a", 1)
        self.clock.advance(100)
        self.cache.put("b", 2)
        self.clock.advance(200)
        self.assertIsNone(self.cache.get("a"))
        self.assertEqual(self.cache.get("b"), 2)
        self.clock.advance(100)
        self.assertIsNone(self.cache.get("b"))

    def test_put_again_refreshes_ttl_and_value(self):
        self.cache.put("a", 1)
        self.clock.advance(250)
        self.cache.put("a", 2)
        self.clock.advance(250)
        self.assertEqual(self.cache.get("a"), 2)

    def test_refreshed_entry_does_not_shield_older_ones_from_expiry(self):
        self.cache.put("a", 1)
        self.cache.put("b", 2)
        self.clock.advance(10)
        self.cache.put("a", 3)  # moves behind b
        self.clock.advance(DEDUPE_TTL_S - 5)
        self.assertIsNone(self.cache.get("b"))
        self.assertEqual(self.cache.get("a"), 3)
        self.assertEqual(len(self.cache), 1)

    def test_get_does_not_extend_ttl(self):
        self.cache.put("a", 1)
        self.clock.advance(299)
        self.assertEqual(self.cache.get("a"), 1)
        self.clock.advance(1)
        self.assertIsNone(self.cache.get("a"))

    def test_max_entries_evicts_oldest(self):
        for i in range(DEDUPE_MAX_ENTRIES + 5):
            self.cache.put(f"k{i}", i)
        self.assertEqual(len(self.cache), DEDUPE_MAX_ENTRIES)
        for i in range(5):
            self.assertIsNone(self.cache.get(f"k{i}"))
        self.assertEqual(self.cache.get("k5"), 5)
        self.assertEqual(self.cache.get(f"k{DEDUPE_MAX_ENTRIES + 4}"), DEDUPE_MAX_ENTRIES + 4)

    def test_small_cache_reput_counts_as_newest(self):
        cache = IdempotencyCache(self.clock, ttl_s=10, max_entries=2)
        cache.put("a", 1)
        cache.put("b", 2)
        cache.put("a", 3)
        cache.put("c", 4)  # evicts b, the oldest now
        self.assertIsNone(cache.get("b"))
        self.assertEqual(cache.get("a"), 3)
        self.assertEqual(cache.get("c"), 4)

    def test_custom_ttl(self):
        cache = IdempotencyCache(self.clock, ttl_s=1)
        cache.put("a", 1)
        self.clock.advance(1)
        self.assertIsNone(cache.get("a"))

    def test_falsy_values_are_stored(self):
        self.cache.put("zero", 0)
        self.assertEqual(self.cache.get("zero"), 0)
