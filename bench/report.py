"""What the suite's table shows: its rows, the issues' targets, how a cell is written.

A ratio is always ours ÷ theirs. Whether bigger is better depends on the figure (requests per
second up, milliseconds and megabytes down), so each target states its own direction.
"""
from __future__ import annotations

import os
import platform
from typing import Any

# (key, label) in the order the table shows them.
ROWS = [
    ("load_1m_at_start", "machine load (1-minute average) as the target started"),
    ("startup_s", "start-up to first connect.challenge (s)"),
    ("idle_rss_mb", "RSS idle (MB)"),
    ("idle_tree_rss_mb", "RSS idle, process tree (MB)"),
    ("rss_before_connections_mb", "RSS after the other scenarios, before the idle connections (MB)"),
    ("rss_1000_mb", "RSS with 1,000 idle connections (MB)"),
    ("rss_5000_mb", "RSS with 5,000 idle connections (MB)"),
    ("kb_per_idle_connection", "memory per idle authenticated connection (KB)"),
    ("paired_seq_per_s", "handshakes/s, paired device v3, sequential"),
    ("paired_seq_p50_ms", "  p50 (ms)"),
    ("paired_seq_server_cpu_ms", "  server CPU per handshake (ms)"),
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
                (f"{_key}_server_cpu_us", "  server CPU per request (µs)"),
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

# (key, against, factor, direction): ours must be <= or >= factor x theirs (against None: a fixed bound).
# Issue 18's targets, plus the start-up one of issue 8 that still holds.
TARGETS = [
    ("startup_s", "reference", 0.1, "<="),
    ("idle_rss_mb", "reference", 0.1, "<="),
    ("kb_per_idle_connection", "floor", 1.2, "<="),
    ("paired_seq_per_s", "floor", 0.7, ">="),
    ("paired_seq_per_s", "reference", 5, ">="),
    *[(f"{method}_{load}_rps", "floor", 0.9, ">=") for method in ("health", "status") for load in ("10x1", "50x16")],
    ("fanout_500_last_ms", "reference", 1, "<="),
    ("fanout_1000_last_ms", "reference", 1, "<="),
    ("chat_overhead_per_delta_us", "reference", 0.02, "<="),
]


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


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
