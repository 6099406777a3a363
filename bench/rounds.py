"""Several rounds of one benchmark, reduced to medians and spreads that noise cannot fool.

One pass of the suite moved figures by up to 30% between runs: the load client shares the two
cores with the server, so any background work lands in one target's figures and not another's.
The suite therefore runs rounds in which every target runs back to back, computes each ratio
inside its round (where the targets met the same machine), and reports the median of those
ratios with their spread. A ratio whose spread is wider than ``max_spread`` of its median, or a
target met in some rounds and missed in others, is reported as inconclusive rather than as a
result.
"""
from __future__ import annotations

import statistics
from typing import Any
from collections.abc import Sequence

from report import ROWS, TARGETS, cell

Round = dict[str, dict[str, Any]]  # target name -> figure key -> value

DEFAULT_MAX_SPREAD = 0.15


def _numbers(values: Sequence[Any]) -> list[float]:
    return [float(value) for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]


class Spread:
    """The median of some measurements and how far apart they were."""

    def __init__(self, values: Sequence[float]):
        self.values = list(values)
        self.median = statistics.median(self.values)
        self.low = min(self.values)
        self.high = max(self.values)

    @property
    def relative(self) -> float:
        """(max - min) / median: 0 for identical rounds, 0.3 for the 30% seen in one-pass runs."""
        if not self.median:
            return 0.0 if self.high == self.low else float("inf")
        return (self.high - self.low) / abs(self.median)

    def wide(self, max_spread: float) -> bool:
        return len(self.values) > 1 and self.relative > max_spread

    def render(self) -> str:
        if len(self.values) == 1:
            return cell(self.median)
        return f"{cell(self.median)} ({cell(self.low)}–{cell(self.high)})"


def figure(rounds: Sequence[Round], target: str, key: str) -> Spread | None:
    values = _numbers([one.get(target, {}).get(key) for one in rounds])
    return Spread(values) if values else None


BASELINES = ("floor", "reference")


def candidates(names: Sequence[str]) -> list[str]:
    """The gateways under judgement: ours, and any other checkout (``before``) the run measured."""
    return [name for name in names if name not in BASELINES]


def ratio(rounds: Sequence[Round], key: str, against: str, mine: str = "ours") -> Spread | None:
    """mine ÷ against, computed inside each round, over the rounds where both were measured."""
    values = []
    for one in rounds:
        ours = _numbers([one.get(mine, {}).get(key)])
        theirs = _numbers([one.get(against, {}).get(key)])
        if ours and theirs and theirs[0]:
            values.append(ours[0] / theirs[0])
    return Spread(values) if values else None


def check_target(
    rounds: Sequence[Round], target: tuple[str, str | None, float, str], mine: str = "ours"
) -> tuple[str, str, str]:
    """(what, measured, verdict): verdict is met / NO / inconclusive (mixed rounds) / - (missing)."""
    key, against, factor, direction = target
    verdicts = []
    for one in rounds:
        ours = _numbers([one.get(mine, {}).get(key)])
        bound = factor if against is None else _numbers([one.get(against, {}).get(key)])
        if not ours or bound == []:
            continue
        limit = bound if against is None else bound[0] * factor
        verdicts.append(ours[0] <= limit if direction == "<=" else ours[0] >= limit)
    what = f"{key} {direction} {factor}" + ("" if against is None else f" x {against}")
    measured = ratio(rounds, key, against, mine) if against else figure(rounds, mine, key)
    shown = "-" if measured is None else measured.render()
    if not verdicts:
        return what, shown, "-"
    if all(verdicts):
        return what, shown, "met"
    if not any(verdicts):
        return what, shown, "NO"
    return what, shown, f"inconclusive ({sum(verdicts)} of {len(verdicts)} rounds)"


def render_rounds(rounds: Sequence[Round], max_spread: float = DEFAULT_MAX_SPREAD) -> str:
    """Markdown: medians (min–max) per target, then each ratio's median and spread, flagged when too wide."""
    names = list(dict.fromkeys(name for one in rounds for name in one))
    mine = candidates(names)
    pairs = [(one, other) for one in mine for other in BASELINES if other in names]
    header = ["figure", *names, *[f"{one}/{other}" for one, other in pairs]]
    lines = [
        f"{len(rounds)} round(s); cells are median (min–max); a ratio marked 'wide' spread more than "
        f"{max_spread:.0%} of its median between rounds and is not a result.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    known = {key for key, _ in ROWS}
    extra = sorted({key for one in rounds for values in one.values() for key in values} - known)
    for key, label in ROWS + [(key, key) for key in extra]:
        cells = [figure(rounds, name, key) for name in names]
        if all(cell is None for cell in cells):
            continue
        row = [label, *["-" if cell is None else cell.render() for cell in cells]]
        for one, other in pairs:
            spread = ratio(rounds, key, other, one)
            text = "-" if spread is None else spread.render()
            row.append(f"{text} wide" if spread is not None and spread.wide(max_spread) else text)
        lines.append("| " + " | ".join(row) + " |")
    for one in mine:
        lines += ["", f"| target | {one} (ratio or figure) | verdict |", "|---|---|---|"]
        lines += [f"| {what} | {shown} | {verdict} |" for what, shown, verdict in
                  (check_target(rounds, target, one) for target in TARGETS)]
    return "\n".join(lines)


def rotated(names: Sequence[str], round_index: int) -> list[str]:
    """Each round starts with a different target, so no target always runs on a cold or warm machine."""
    if not names:
        return []
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])
