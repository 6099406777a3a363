"""LiveText: how a run's streamed text is released to operators (pacing and the byte budget)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.agents.live_text import LIVE_TEXT_COPIES, LIVE_TEXT_FREE_CHARS, LIVE_TEXT_PACING_S, LiveText


class _Recorder:
    """Publishes like RunManager: each batch with the text so far (here, the sum of lengths)."""

    def __init__(self, clock: Clock, **limits):
        self.clock = clock
        self.batches: list[tuple[float, str]] = []
        self.length = 0
        self.copied = 0  # characters of text-so-far a reader would have received
        self.live = LiveText(clock, self._publish, **limits)

    def _publish(self, batch: str) -> None:
        self.batches.append((self.clock.seconds(), batch))
        self.copied += self.length

    def add(self, delta: str) -> None:
        self.length += len(delta)  # the run appends before LiveText sees the delta
        self.live.add(delta)

    @property
    def text(self) -> str:
        return "".join(batch for _, batch in self.batches)


class PacingTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.recorder = _Recorder(self.clock)

    def test_first_piece_at_once_then_one_batch_per_window(self):
        half = LIVE_TEXT_PACING_S / 2
        self.recorder.add("Hel")
        self.assertEqual(self.recorder.batches, [(0, "Hel")])
        self.recorder.add("lo")
        self.clock.advance(half)
        self.recorder.add(" there")
        self.assertEqual(len(self.recorder.batches), 1)
        self.clock.advance(half)
        self.assertEqual(self.recorder.batches, [(0, "Hel"), (LIVE_TEXT_PACING_S, "lo there")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_piece_after_a_quiet_window_goes_out_at_once(self):
        self.recorder.add("a")
        self.clock.advance(1)
        self.recorder.add("b")
        self.assertEqual(self.recorder.batches, [(0, "a"), (1, "b")])

    def test_flush_releases_what_is_held_and_stops_the_timer(self):
        self.recorder.add("a")
        self.recorder.add("b")
        self.recorder.add("c")
        self.recorder.live.flush()
        self.assertEqual(self.recorder.batches, [(0, "a"), (0, "bc")])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.recorder.live.flush()  # nothing held: nothing sent
        self.assertEqual(len(self.recorder.batches), 2)

    def test_ten_thousand_chunks_in_one_burst_are_two_batches(self):
        for _ in range(10_000):
            self.recorder.add("x")
        self.recorder.live.flush()
        self.assertEqual([len(batch) for _, batch in self.recorder.batches], [1, 9_999])


class BudgetTests(SynchronousTestCase):
    def test_over_budget_text_waits_for_enough_new_text(self):
        clock = Clock()
        recorder = _Recorder(clock, copies=2, free_chars=0)  # copied + length <= 2 * length
        for delta in ("aaaa", "b", "c", "dd", "e", "f"):
            clock.advance(1)  # pacing never holds anything back here
            recorder.add(delta)
        # aaaa: 0+4 <= 8; b: 4+5 <= 10; c: 9+6 > 12 held; dd: 9+8 > 16 held; e: 9+9 <= 18;
        # f: 18+10 > 20 held until the run ends.
        self.assertEqual([batch for _, batch in recorder.batches], ["aaaa", "b", "cdde"])
        self.assertEqual(recorder.copied, 4 + 5 + 9)
        recorder.live.flush()
        self.assertEqual([batch for _, batch in recorder.batches], ["aaaa", "b", "cdde", "f"])

    def test_a_slow_model_long_answer_costs_a_linear_number_of_copies(self):
        """10,000 chunks of 5 characters, 10 ms apart: the pacing alone would send the text so far
        about 1,300 times (over 30 M characters); the budget holds it to copies x length."""
        clock = Clock()
        recorder = _Recorder(clock)
        for _ in range(10_000):
            clock.advance(0.01)
            recorder.add("abcde")
        recorder.live.flush()
        answer = 50_000
        self.assertEqual(recorder.text, "abcde" * 10_000)
        self.assertLessEqual(recorder.copied, (LIVE_TEXT_COPIES + 1) * answer + LIVE_TEXT_FREE_CHARS)
        # ... and it still updates: the last batches are a bounded fraction of the answer.
        self.assertGreater(len(recorder.batches), 100)
        self.assertLess(max(len(batch) for _, batch in recorder.batches[1:-1]), answer // LIVE_TEXT_COPIES + 100)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.tuples(st.text(min_size=1, max_size=50), st.integers(0, 200)), max_size=300),
        st.integers(1, 8),
        st.integers(0, 500),
    )
    def test_every_character_once_and_copies_within_the_bound(self, chunks, copies, free_chars):
        clock = Clock()
        recorder = _Recorder(clock, copies=copies, free_chars=free_chars)
        for delta, gap_ms in chunks:
            clock.advance(gap_ms / 1000)
            recorder.add(delta)
        recorder.live.flush()
        self.assertEqual(recorder.text, "".join(delta for delta, _ in chunks))
        self.assertLessEqual(recorder.copied, (copies + 1) * recorder.length + free_chars)
        self.assertEqual(clock.getDelayedCalls(), [])
