"""The bench suite's reduction of rounds: ratios inside a round, medians and spreads across rounds.

These are the numbers the project decides performance work on, so the arithmetic that turns noisy
rounds into "met", "NO" or "inconclusive" is tested like any other code.
"""
from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import rounds  # noqa: E402


def _round(ours: float, floor: float) -> rounds.Round:
    return {"ours": {"health_10x1_rps": ours}, "floor": {"health_10x1_rps": floor}}


class RatioTests(SynchronousTestCase):
    def test_ratio_is_taken_inside_each_round(self) -> None:
        """A slow round slows both targets; the in-round ratio stays put where a ratio of medians would not."""
        done = [_round(900, 1000), _round(450, 500), _round(1800, 2000)]
        spread = rounds.ratio(done, "health_10x1_rps", "floor")
        self.assertAlmostEqual(spread.median, 0.9)
        self.assertAlmostEqual(spread.relative, 0.0)

    def test_wide_spread_is_flagged(self) -> None:
        done = [_round(600, 1000), _round(900, 1000), _round(950, 1000)]
        spread = rounds.ratio(done, "health_10x1_rps", "floor")
        self.assertEqual(spread.median, 0.9)
        self.assertTrue(spread.wide(0.15))
        self.assertFalse(spread.wide(0.5))
        self.assertIn("wide", rounds.render_rounds(done, 0.15))

    def test_rounds_missing_a_target_are_left_out_of_its_ratio(self) -> None:
        done = [_round(900, 1000), {"ours": {"health_10x1_rps": 5}}]
        self.assertEqual(rounds.ratio(done, "health_10x1_rps", "floor").values, [0.9])


class VerdictTests(SynchronousTestCase):
    target = ("health_10x1_rps", "floor", 0.9, ">=")

    def test_met_in_every_round(self) -> None:
        done = [_round(950, 1000), _round(920, 1000), _round(990, 1000)]
        self.assertEqual(rounds.check_target(done, self.target)[2], "met")

    def test_missed_in_every_round(self) -> None:
        done = [_round(500, 1000), _round(600, 1000)]
        self.assertEqual(rounds.check_target(done, self.target)[2], "NO")

    def test_mixed_rounds_are_inconclusive_not_met(self) -> None:
        done = [_round(950, 1000), _round(600, 1000), _round(990, 1000)]
        self.assertEqual(rounds.check_target(done, self.target)[2], "inconclusive (2 of 3 rounds)")

    def test_fixed_bound_without_a_second_target(self) -> None:
        done = [{"ours": {"x": 3.0}}]
        self.assertEqual(rounds.check_target(done, ("x", None, 4, "<="))[2], "met")


class BeforeAndAfterTests(SynchronousTestCase):
    """A second checkout (``before@PATH``) in the same rounds is judged like ours, against the same baselines."""

    def test_each_candidate_gets_its_own_ratios_and_verdicts(self) -> None:
        done = [
            {"before": {"health_10x1_rps": 600}, "ours": {"health_10x1_rps": 950}, "floor": {"health_10x1_rps": 1000}}
            for _ in range(3)
        ]
        self.assertEqual(rounds.ratio(done, "health_10x1_rps", "floor", "before").median, 0.6)
        target = ("health_10x1_rps", "floor", 0.9, ">=")
        self.assertEqual(rounds.check_target(done, target, "before")[2], "NO")
        self.assertEqual(rounds.check_target(done, target)[2], "met")
        table = rounds.render_rounds(done)
        self.assertIn("| before/floor | ours/floor |", table)
        self.assertIn("| target | before (ratio or figure) | verdict |", table)


class RotationTests(SynchronousTestCase):
    def test_each_round_starts_with_another_target(self) -> None:
        names = ["ours", "reference", "floor"]
        firsts = [rounds.rotated(names, index)[0] for index in range(3)]
        self.assertEqual(firsts, names)
        self.assertEqual(sorted(rounds.rotated(names, 4)), sorted(names))
