"""Per-address limits: unauthenticated sockets (the reference refuses the 33rd) and refusal log lines."""
from __future__ import annotations

from collections import Counter
from typing import Any


class PreauthLimiter:
    def __init__(self, max_per_ip: int):
        self.max_per_ip = max_per_ip
        self._open: Counter[str] = Counter()

    def acquire(self, address: str | None) -> bool:
        key = address or ""
        if self._open[key] >= self.max_per_ip:
            return False
        self._open[key] += 1
        return True

    def release(self, address: str | None) -> None:
        key = address or ""
        if self._open[key] <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] -= 1

    def count(self, address: str | None) -> int:
        return self._open.get(address or "", 0)


REFUSAL_LINES_PER_IP = 5
REFUSAL_WINDOW_S = 60.0
REFUSAL_MAX_TRACKED = 1024
_OVERFLOW_KEY = "*"


class RefusalLogBudget:
    """How many refused-connect log lines one address may cause: a few per minute, then silence.

    Budgets are per address and kind (``refusal``, ``lockout``, ``upgrade``), so a burst of
    wrong secrets cannot hide the lockout it causes. ``allow(ip, kind)`` answers ``(log, note)``: whether to write this refusal's line, and a remark to
    append to it: on the last line of a window that further refusals go unlogged, on the first
    line of the next window how many were not logged. At most ``max_tracked`` addresses are
    remembered; beyond that (a scan from many addresses) they share one budget.
    """

    def __init__(
        self,
        clock: Any,
        per_ip: int = REFUSAL_LINES_PER_IP,
        window_s: float = REFUSAL_WINDOW_S,
        max_tracked: int = REFUSAL_MAX_TRACKED,
    ):
        self._clock = clock
        self.per_ip = per_ip
        self.window_s = window_s
        self.max_tracked = max_tracked
        self._entries: dict[str, list[float]] = {}  # key -> [window start, lines, suppressed]

    def allow(self, address: str | None, kind: str = "refusal") -> tuple[bool, str]:
        now = self._clock.seconds()
        key = self._key(f"{kind} {address or ''}", now)
        entry = self._entries.get(key)
        note = ""
        if entry is None or now - entry[0] >= self.window_s:
            if entry is not None and entry[2]:
                note = f"{int(entry[2])} earlier refusals from {'this address' if key != _OVERFLOW_KEY else 'other addresses'} were not logged"
            entry = self._entries[key] = [now, 0, 0]
        if entry[1] >= self.per_ip:
            entry[2] += 1
            return False, ""
        entry[1] += 1
        if entry[1] == self.per_ip:
            limit = f"further refusals from this address are not logged for {self.window_s:g} s"
            note = f"{note}; {limit}" if note else limit
        return True, note

    def _key(self, address: str, now: float) -> str:
        if address in self._entries or len(self._entries) < self.max_tracked:
            return address
        for key in [key for key, entry in self._entries.items() if now - entry[0] >= self.window_s and key != _OVERFLOW_KEY]:
            del self._entries[key]
        return address if len(self._entries) < self.max_tracked else _OVERFLOW_KEY
