"""How many not-yet-authenticated sockets one address may hold (the reference refuses the 33rd)."""
from __future__ import annotations

from collections import Counter


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
