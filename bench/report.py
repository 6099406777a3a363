"""Turning one run's numbers into the comparison table, with ratios and the issue's targets.

A ratio is always ours ÷ theirs. Whether bigger is better depends on the figure (requests per
second up, milliseconds and megabytes down), so each target states its own direction.
"""
from __future__ import annotations

import os
import platform
from typing import Any

# (key, label) in the order the table shows them.
ROWS = [
    ("startup_s", "start-up to first connect.challenge (s)"),
    ("idle_rss_mb", "RSS idle (MB)"),
    ("idle_tree_rss_mb", "RSS idle, process tree (MB)"),
    ("rss_before_connections_mb", "RSS after the other scenarios, before the idle connections (MB)"),
    ("rss_1000_mb", "RSS with 1,000 idle connections (MB)"),
    ("rss_5000_mb", "RSS with 5,000 idle connections (MB)"),
    ("kb_per_idle_connection", "memory per idle authenticated connection (KB)"),
    ("paired_seq_per_s", "handshakes/s, paired device v3, sequential"),
    ("paired_seq_p50_ms", "  p50 (ms)"),
    ("paired_conc10_per_s", "handshakes/s, paired device v3, 10 concurrent"),
    ("paired_conc10_p99_ms", "  p99 (ms)"),
    ("new_device_seq_per_s", "handshakes/s, new device (silent pairing), sequential"),
]
for _method in ("health", "status"):
    for _clients in (1, 10, 50):
        for _in_flight in (1, 16):
            _key = f"{_method}_{_clients}x{_in_flight}"
            ROWS += [
                (f"{_key}_rps", f"{_method} {_clients} clients x {_in_flight} in flight (req/s)"),
                (f"{_key}_p50_ms", "  p50 (ms)"),
                (f"{_key}_p99_ms", "  p99 (ms)"),
                (f"{_key}_errors", "  error replies"),
            ]
for _listeners in (10, 100, 500, 1000):
    ROWS += [
        (f"fanout_{_listeners}_last_ms", f"fan-out to {_listeners} listeners, last arrival (ms)"),
        (f"fanout_{_listeners}_p50_ms", "  median arrival (ms)"),
        (f"fanout_{_listeners}_missing", "  events that never arrived"),
    ]
ROWS += [
    ("chat_direct_ms", "chat: reading the upstream's 200 deltas directly (ms)"),
    ("chat_total_ms", "chat: chat.send to final chat event (ms)"),
    ("chat_first_delta_ms", "chat: chat.send to first assistant delta (ms)"),
    ("chat_overhead_per_delta_us", "chat: gateway overhead per delta (µs)"),
]

# (key, against, factor, direction): ours must be <= or >= factor x theirs.
TARGETS = [
    ("startup_s", "reference", 0.1, "<="),
    ("idle_rss_mb", "reference", 0.1, "<="),
    ("kb_per_idle_connection", None, 40, "<="),
    ("paired_seq_per_s", "reference", 3, ">="),
    ("paired_conc10_per_s", "reference", 3, ">="),
    ("health_10x1_rps", "reference", 5, ">="),
    ("health_10x1_rps", "floor", 0.4, ">="),
    *[(f"health_{c}x{f}_p99_ms", "reference", 1, "<=") for c in (1, 10, 50) for f in (1, 16)],
    ("status_10x1_rps", "reference", 5, ">="),
    ("fanout_500_last_ms", "reference", 1, "<="),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(ours: Any, theirs: Any) -> str:
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and theirs:
        return f"{ours / theirs:.2f}"
    return "-"


def check_targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """Each target as (what, measured, met); met is None when a figure is missing."""
    ours = results.get("ours", {})
    checked = []
    for key, against, factor, direction in TARGETS:
        value = ours.get(key)
        if against is None:
            bound = factor
            what = f"{key} {direction} {factor}"
        else:
            theirs = results.get(against, {}).get(key)
            bound = None if theirs is None else theirs * factor
            what = f"{key} {direction} {factor} x {against}"
        if value is None or bound is None:
            checked.append((what, f"{_cell(value)} vs -", None))
            continue
        met = value <= bound if direction == "<=" else value >= bound
        checked.append((what, f"{_cell(value)} vs {_cell(round(bound, 2))}", met))
    return checked


def render_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one column per target, then ours ÷ floor and ours ÷ reference."""
    names = list(results)
    ratios = [other for other in ("floor", "reference") if "ours" in results and other in results]
    header = ["figure", *names, *[f"ours/{other}" for other in ratios]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    known = {key for key, _ in ROWS}
    extra = sorted({key for values in results.values() for key in values} - known)
    for key, label in ROWS + [(key, key) for key in extra]:
        values = [results[name].get(key) for name in names]
        if all(value is None for value in values):
            continue
        row = [label, *[_cell(value) for value in values]]
        row += [_ratio(results["ours"].get(key), results[other].get(key)) for other in ratios]
        lines.append("| " + " | ".join(row) + " |")
    if "ours" in results:
        lines += ["", "| target | ours vs bound | met |", "|---|---|---|"]
        for what, measured, met in check_targets(results):
            lines.append(f"| {what} | {measured} | {'-' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines)


def summarise_machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    memory_kb = 0
    try:
        with open("/proc/meminfo") as handle:
            memory_kb = int(handle.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
