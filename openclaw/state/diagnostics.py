"""The stability record: a bounded ring of notable gateway events (``diagnostics.stability``).

Operators ask "has this gateway been healthy?" with ``openclaw gateway stability``. The answer is
built from what this process saw: its start, every agent run's outcome and duration, event-loop
degradation and recovery, config reloads, refused auth and slow consumers. Each record is small,
numbered (``seq``) and time-stamped; the ring keeps the newest ``capacity`` records and counts the
ones it dropped, so memory stays bounded however long the gateway runs.
"""
from __future__ import annotations

import collections
from datetime import datetime, UTC
from typing import Any
from collections.abc import Callable, Mapping

from twisted.internet.interfaces import IReactorTime

DEFAULT_CAPACITY = 1000
DEFAULT_LIMIT = 25
MAX_LIMIT = DEFAULT_CAPACITY


class StabilityRecord:
    """Ring buffer of ``{seq, ts, type, ...}`` records with per-type totals."""

    def __init__(
        self, clock: IReactorTime, capacity: int = DEFAULT_CAPACITY, memory: Callable[[], Mapping[str, int]] | None = None
    ):
        self._clock = clock
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._capacity = capacity
        self._seq = 0
        self._dropped = 0
        self._memory = memory
        self._max_rss = 0

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def record(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Append one record (fields whose value is ``None`` are left out)."""
        self._seq += 1
        entry: dict[str, Any] = {"seq": self._seq, "ts": self._now_ms(), "type": event_type}
        entry.update({key: value for key, value in fields.items() if value is not None})
        if len(self._events) == self._capacity:
            self._dropped += 1
        self._events.append(entry)
        return entry

    def snapshot(self, limit: int | None = None, event_type: str | None = None, since_seq: int | None = None) -> dict[str, Any]:
        """The ``diagnostics.stability`` payload: totals over the ring, the newest ``limit`` records."""
        limit = DEFAULT_LIMIT if limit is None else max(1, min(MAX_LIMIT, int(limit)))
        selected = [
            event
            for event in self._events
            if (event_type is None or event["type"] == event_type) and (since_seq is None or event["seq"] > since_seq)
        ]
        by_type: dict[str, int] = {}
        for event in self._events:
            by_type[event["type"]] = by_type.get(event["type"], 0) + 1
        summary: dict[str, Any] = {"byType": by_type}
        if self._memory is not None:
            latest = dict(self._memory())
            self._max_rss = max(self._max_rss, latest.get("rssBytes", 0))
            summary["memory"] = {"latest": latest, "maxRssBytes": self._max_rss, "pressureCount": 0}
        generated = datetime.fromtimestamp(self._clock.seconds(), UTC)
        return {
            "generatedAt": generated.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "capacity": self._capacity,
            "count": len(self._events),
            "dropped": self._dropped,
            "firstSeq": self._events[0]["seq"] if self._events else None,
            "lastSeq": self._events[-1]["seq"] if self._events else None,
            "events": selected[-limit:],
            "summary": summary,
        }

    # -- what the gateway feeds in -----------------------------------------------------------

    def run_event(self, payload: Mapping[str, Any]) -> None:
        """Record the start and end of agent runs from their ``agent`` lifecycle events."""
        if payload.get("stream") != "lifecycle":
            return
        data = payload.get("data") or {}
        phase = data.get("phase")
        if phase == "start":
            self.record("run.started", runId=payload.get("runId"), sessionKey=payload.get("sessionKey"))
        elif phase == "model":
            self.record("run.model", runId=payload.get("runId"), provider=data.get("provider"), model=data.get("model"))
        elif phase in ("end", "error"):
            if phase == "error" and data.get("aborted"):
                return  # an aborted run also ends with an "end" event: record it once, there
            started, ended = data.get("startedAt"), data.get("endedAt")
            duration = ended - started if isinstance(started, int) and isinstance(ended, int) else None
            if data.get("aborted"):
                outcome = "aborted"
            else:
                outcome = "error" if phase == "error" else "ok"
            self.record(
                "run.completed",
                runId=payload.get("runId"),
                outcome=outcome,
                durationMs=duration,
                reason=data.get("error") if outcome == "error" else None,
            )
