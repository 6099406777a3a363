"""``health``, ``status``, ``system-presence`` and ``system-event``."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from ..security.scopes import ADMIN, READ
from ..state.status_cache import Marks
from .registry import ROLE_ANY, MethodSpec, RequestContext

if TYPE_CHECKING:
    from ..hub import GatewayHub


def health(ctx: RequestContext) -> dict[str, Any]:
    params = ctx.params if isinstance(ctx.params, dict) else {}
    return ctx.gateway.health.current(probe=bool(params.get("probe")))


def status(ctx: RequestContext) -> Any:
    gateway = ctx.gateway
    params = ctx.params if isinstance(ctx.params, dict) else {}
    if params.get("includeCliProjection"):
        result = _status(gateway, None)
        result["cliProjection"] = _cli_projection(gateway)
        return result
    # Encoded once per change of what it shows (state.status_cache); only the clock's parts are
    # filled in per request.
    now_ms = gateway.now_ms()
    return gateway.status_cache.answer(_status_key(gateway), lambda marks: _status(gateway, marks), now_ms, gateway.uptime_ms())


def _status_key(gateway: GatewayHub) -> tuple[Any, ...]:
    """Everything ``status`` shows but the clock's parts: when it differs, the answer is rebuilt."""
    heartbeat = gateway.heartbeat
    extra = gateway.extra_health
    return (
        gateway.catalog,
        heartbeat.summary() if heartbeat is not None else None,
        gateway.presence.queued_system_events(),
        gateway.sessions.summary_version,
        gateway.clients.counts(),
        gateway.config_reload_state(),
        gateway.event_loop.summary(),
        gateway.process_memory.current(),
        extra() if extra is not None else None,
    )


def _status(gateway: GatewayHub, marks: Marks | None) -> dict[str, Any]:
    """``status`` as plain data; with ``marks``, the clock's parts are placeholders."""
    # Fresh, not the ~2 s health cache: a status right after a chat must count its session.
    snapshot = gateway.health.current(probe=True)
    agents = snapshot.get("agents", [])
    sessions = snapshot.get("sessions", {"path": None, "count": 0, "recent": []})

    def recent(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if marks is None:
            return entries
        return [{**entry, "age": marks.age(entry["updatedAt"])} if "age" in entry else entry for entry in entries]

    return {
        "runtimeVersion": gateway.version,
        "heartbeat": {
            "defaultAgentId": snapshot.get("defaultAgentId"),
            "agents": [
                {
                    "agentId": agent["agentId"],
                    "enabled": agent.get("heartbeat", {}).get("enabled", False),
                    "every": agent.get("heartbeat", {}).get("every"),
                    "everyMs": agent.get("heartbeat", {}).get("everyMs"),
                }
                for agent in agents
            ],
        },
        "channelSummary": [],
        "queuedSystemEvents": gateway.presence.queued_system_events(),
        "sessions": {
            "paths": [sessions["path"]] if sessions.get("path") else [],
            "count": sessions.get("count", 0),
            "defaults": {"model": None, "contextTokens": None},
            "recent": recent(sessions.get("recent", [])),
            "byAgent": [_by_agent(agent, recent) for agent in agents],
        },
        "connections": gateway.clients.counts(),
        "configReload": snapshot.get("configReload"),
        "eventLoop": gateway.event_loop.summary(),
        "processMemory": gateway.process_memory.current(),
        "uptimeMs": gateway.uptime_ms() if marks is None else marks.uptime(),
        "pid": os.getpid(),
        # Cluster mode: this instance's id, its live peers and the bus state (health's section).
        **({"cluster": snapshot["cluster"]} if "cluster" in snapshot else {}),
    }


def _by_agent(agent: dict[str, Any], recent: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> dict[str, Any]:
    section = {"agentId": agent["agentId"], **agent.get("sessions", {"count": 0, "recent": []})}
    if "recent" in section:
        section["recent"] = recent(section["recent"])
    return section


def _cli_projection(gateway: Any) -> dict[str, Any]:
    """What the reference CLI's ``status`` shows about agents without reading our config itself."""
    catalog = gateway.catalog
    return {
        "agents": {
            "defaultId": catalog.default_agent_id,
            "ownership": "sole",
            "selectionRequired": False,
            "rows": [{"id": entry.id} for entry in catalog.agents],
        },
        "updateChannel": None,
        "memoryPlugin": {"enabled": False},
    }


def system_presence(ctx: RequestContext) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = ctx.gateway.presence.entries()
    return entries


def system_event(ctx: RequestContext) -> dict[str, Any]:
    ctx.gateway.presence.system_event(ctx.params)
    ctx.gateway.broadcast_presence()
    return {"ok": True}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("health", health, scope=None, role=ROLE_ANY),
        MethodSpec("status", status, scope=READ),
        MethodSpec("system-presence", system_presence, scope=READ),
        MethodSpec("system-event", system_event, scope=ADMIN),
    ]
