"""Presence: the gateway itself, each connected client, and entries posted by ``system-event``.

Entries are keyed like the reference (instance id, else device id, else connection id) so a client
that reconnects replaces its old entry instead of duplicating it. Every change bumps the presence
``stateVersion`` that ``presence`` events and ``hello-ok`` carry.
"""
from __future__ import annotations

import platform
import socket
from collections import OrderedDict
from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..seams import IPresence

MAX_SYSTEM_ENTRIES = 100
SYSTEM_ENTRY_TTL_MS = 10 * 60 * 1000
MAX_QUEUED_SYSTEM_EVENTS = 20
# The reference lists at most 200 entries (itself and the 199 freshest): every presence event
# carries the whole list to every reader, so an uncapped list makes each connect cost O(N) bytes
# per recipient and a connection storm O(N²).
MAX_LISTED_ENTRIES = 200


def _drop_empty(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if value not in (None, "")}


def _describe(label: str, host: str, ip: str | None, version: str | None, mode: str | None, reason: str | None) -> str:
    where = f"{host} ({ip})" if ip else host
    parts = [f"{label}: {where}"]
    if version:
        parts.append(f"app {version}")
    if mode:
        parts.append(f"mode {mode}")
    if reason:
        parts.append(f"reason {reason}")
    return " · ".join(parts)


@implementer(IPresence)
class PresenceTracker:
    def __init__(self, clock: IReactorTime, *, version: str, instance_id: str, ip: str | None = None):
        self._clock = clock
        self._gateway_version = version
        self._instance_id = instance_id
        self._host = socket.gethostname()
        self._ip = ip
        self._platform = f"{platform.system().lower()} {platform.release()}".strip()
        self._device_family = platform.system() or None
        self._clients: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (conn_id, entry)
        self._system: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._queued_texts: list[str] = []
        self.version = 0

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def bump(self) -> int:
        self.version += 1
        return self.version

    def self_entry(self) -> dict[str, Any]:
        return _drop_empty(
            {
                "host": self._host,
                "ip": self._ip,
                "version": self._gateway_version,
                "platform": self._platform,
                "deviceFamily": self._device_family,
                "mode": "gateway",
                "reason": "self",
                "instanceId": self._instance_id,
                "text": _describe("Gateway", self._host, self._ip, self._gateway_version, "gateway", "self"),
                "ts": self._now_ms(),
            }
        )

    def entries(self) -> list[dict[str, Any]]:
        now = self._now_ms()
        for key in [k for k, entry in self._system.items() if now - entry["ts"] > SYSTEM_ENTRY_TTL_MS]:
            del self._system[key]
        merged: dict[str, dict[str, Any]] = {}
        for key, (_, entry) in self._clients.items():
            merged[key] = entry
        for key, entry in self._system.items():
            merged[key] = {**merged.get(key, {}), **entry}
        listed = list(merged.values())
        if len(listed) >= MAX_LISTED_ENTRIES:
            freshest = sorted(listed, key=lambda entry: entry["ts"], reverse=True)[: MAX_LISTED_ENTRIES - 1]
            kept = {id(entry) for entry in freshest}
            listed = [entry for entry in listed if id(entry) in kept]
        return [self.self_entry(), *listed]

    def client_connected(self, key: str, conn_id: str, entry: dict[str, Any]) -> None:
        label = "Node" if entry.get("mode") == "node" else "Client"
        entry = {
            **entry,
            "text": _describe(label, entry.get("host") or "unknown", entry.get("ip"), entry.get("version"), entry.get("mode"), "connect"),
            "reason": "connect",
            "ts": self._now_ms(),
        }
        self._clients[key] = (conn_id, _drop_empty(entry))

    def client_disconnected(self, key: str, conn_id: str) -> bool:
        """Drop the entry unless a newer connection already took the same key."""
        current = self._clients.get(key)
        if current is None or current[0] != conn_id:
            return False
        del self._clients[key]
        return True

    def system_event(self, params: dict[str, Any]) -> None:
        text = params["text"]
        key = params.get("instanceId") or params.get("deviceId") or params.get("host") or f"text:{text}"
        entry = _drop_empty({"text": text, "ts": self._now_ms(), **{k: v for k, v in params.items() if k != "text"}})
        self._system.pop(key, None)
        self._system[key] = entry
        while len(self._system) > MAX_SYSTEM_ENTRIES:
            self._system.popitem(last=False)
        self._queued_texts.append(text)
        del self._queued_texts[:-MAX_QUEUED_SYSTEM_EVENTS]

    def queue_system_text(self, text: str) -> None:
        """Queue a text for the next heartbeat without a presence entry (``wake``)."""
        self._queued_texts.append(text)
        del self._queued_texts[:-MAX_QUEUED_SYSTEM_EVENTS]

    def take_queued_system_events(self) -> list[str]:
        """The queued texts, handed to a heartbeat run once (the queue is emptied)."""
        taken, self._queued_texts = self._queued_texts, []
        return taken

    def queued_system_events(self) -> list[str]:
        return list(self._queued_texts)
