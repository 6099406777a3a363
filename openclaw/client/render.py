"""How ``openclaw-gateway`` shows values to people (``--json`` shows them to programs instead).

The gateway speaks epoch milliseconds and JSON booleans; a person reading a table wants "3 min
ago" and "yes". Times are shown in local time unless ``utc`` is asked for; ``now_ms`` is passed in
so tests need no real clock.
"""
from __future__ import annotations

import json
from datetime import datetime, UTC
from typing import Any
from collections.abc import Sequence


def yes_no(value: Any) -> str:
    """``yes``/``no`` for booleans, ``-`` for a missing value, anything else as text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def duration(ms: Any) -> str:
    """``1d 2h``, ``5m 3s``, ``850ms``: the two largest units of a millisecond span."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "-"
    if ms < 1000:
        return f"{int(ms)}ms"
    seconds = int(ms // 1000)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)


def ago(ms: Any, now_ms: int) -> str:
    """``just now``, ``4m ago``, ``in 2h`` relative to ``now_ms``."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "-"
    delta = now_ms - ms
    if abs(delta) < 5000:
        return "just now"
    return f"{duration(delta)} ago" if delta > 0 else f"in {duration(-delta)}"


def timestamp(ms: Any, now_ms: int, utc: bool = False) -> str:
    """``2026-12-05 07:29:22 (4m ago)`` in local time (or UTC)."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "-"
    when = datetime.fromtimestamp(ms / 1000, UTC)
    if not utc:
        when = when.astimezone()
    return f"{when.strftime('%Y-%m-%d %H:%M:%S')} ({ago(ms, now_ms)})"


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes_no(value)
    return str(value)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(header) for header in headers]] + [[cell(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    """``label: value`` lines, labels aligned."""
    width = max((len(label) for label, _ in items), default=0)
    return "".join(f"{label.ljust(width)}  {cell(value)}\n" for label, value in items)


def log_line(raw: str, utc: bool = False) -> str:
    """A ``gateway.log`` JSON line as ``time level subsystem message`` (other text unchanged)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(record, dict):
        return raw
    when = record.get("time")
    if isinstance(when, str) and not utc:
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            pass
    message = record.get("message", record.get("text", ""))
    parts = [when, record.get("level"), record.get("subsystem", record.get("namespace")), message]
    text = " ".join(str(part) for part in parts if part)
    failure = record.get("failure")
    return f"{text}\n{failure.rstrip()}" if isinstance(failure, str) and failure else text
