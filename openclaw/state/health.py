"""The health snapshot: what ``health`` answers, ``hello-ok`` embeds and the 60 s refresh broadcasts.

Building it is cheap but not free, so the last snapshot is kept and served to plain ``health``
calls; ``health {probe: true}`` and the periodic refresh rebuild it. Later subsystems (sessions,
heartbeat, channels) contribute sections through :meth:`HealthMonitor.add_contributor`.
"""
from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable

import orjson
from twisted.internet.interfaces import IReactorTime

Contributor = Callable[[], dict[str, Any]]

CACHE_MAX_AGE_MS = 2_000


class HealthMonitor:
    def __init__(self, clock: IReactorTime, *, default_agent_id: str = "main"):
        self._clock = clock
        self._default_agent_id = default_agent_id
        self._contributors: list[Contributor] = []
        self._snapshot: dict[str, Any] | None = None
        # The cached snapshot as JSON, for hello-ok (one per snapshot: dropped when it is rebuilt).
        self._encoded: orjson.Fragment | None = None
        self._built_at_ms = 0
        self.version = 0

    def add_contributor(self, contributor: Contributor) -> None:
        """Register a callable whose dict is merged into every snapshot."""
        self._contributors.append(contributor)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def build(self) -> dict[str, Any]:
        started = time.perf_counter()
        snapshot: dict[str, Any] = {
            "ok": True,
            "ts": self._now_ms(),
            "durationMs": 0,
            "configReload": {"hotReloadStatus": "active"},
            "channels": {},
            "channelOrder": [],
            "channelLabels": {},
            "defaultAgentId": self._default_agent_id,
        }
        for contributor in self._contributors:
            snapshot.update(contributor())
        snapshot["durationMs"] = int((time.perf_counter() - started) * 1000)
        self._snapshot = snapshot
        self._encoded = None
        self._built_at_ms = self._now_ms()
        return snapshot

    def current(self, *, probe: bool = False) -> dict[str, Any]:
        """The cached snapshot while it is fresh, else a new one."""
        if probe or self._snapshot is None or self._now_ms() - self._built_at_ms > CACHE_MAX_AGE_MS:
            return self.build()
        return self._snapshot

    def current_json(self) -> orjson.Fragment:
        """:meth:`current` already encoded: every hello-ok within the cache's life embeds the same bytes."""
        snapshot = self.current()
        if self._encoded is None or self._snapshot is not snapshot:
            self._encoded = orjson.Fragment(orjson.dumps(snapshot))
        return self._encoded

    def refresh(self) -> tuple[dict[str, Any], int]:
        """Rebuild and advance the health ``stateVersion`` (the periodic broadcast)."""
        snapshot = self.build()
        self.version += 1
        return snapshot, self.version
