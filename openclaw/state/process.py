"""The gateway process's own resident memory, as ``status`` reports it.

Reading procfs costs an open/read/close per call, which was a third of a ``status`` round trip;
memory does not move meaningfully within a second, so one reading serves every request for a
second of the gateway clock.
"""
from __future__ import annotations

import os
import resource
from typing import Any

from twisted.internet.interfaces import IReactorTime

REFRESH_S = 1.0


def read_process_memory() -> dict[str, int]:
    """Resident and virtual size from procfs (no disk I/O), with a portable fallback."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        with open("/proc/self/statm", "rb") as handle:
            fields = handle.read().split()
        return {"rssBytes": int(fields[1]) * page, "vmsBytes": int(fields[0]) * page}
    except (OSError, IndexError, ValueError):
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"rssBytes": peak_kib * 1024}


class ProcessMemory:
    def __init__(self, clock: IReactorTime, read: Any = read_process_memory):
        self._clock = clock
        self._read = read
        self._reading: dict[str, int] | None = None
        self._read_at = 0.0

    def current(self) -> dict[str, int]:
        now = self._clock.seconds()
        if self._reading is None or now - self._read_at >= REFRESH_S or now < self._read_at:
            self._reading = self._read()
            self._read_at = now
        return dict(self._reading)
