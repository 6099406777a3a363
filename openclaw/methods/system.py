"""``health``, ``status``, ``system-presence`` and ``system-event``."""
from __future__ import annotations

import os
from typing import Any

from ..security.scopes import ADMIN, READ
from .registry import ROLE_ANY, MethodSpec, RequestContext


def health(ctx: RequestContext) -> dict[str, Any]:
    params = ctx.params if isinstance(ctx.params, dict) else {}
    return ctx.gateway.health.current(probe=bool(params.get("probe")))


def status(ctx: RequestContext) -> dict[str, Any]:
    gateway = ctx.gateway
    # Fresh, not the ~2 s health cache: a status right after a chat must count its session.
    snapshot = gateway.health.current(probe=True)
    agents = snapshot.get("agents", [])
    sessions = snapshot.get("sessions", {"path": None, "count": 0, "recent": []})
    params = ctx.params if isinstance(ctx.params, dict) else {}
    result = {
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
            "recent": sessions.get("recent", []),
            "byAgent": [
                {"agentId": agent["agentId"], **agent.get("sessions", {"count": 0, "recent": []})} for agent in agents
            ],
        },
        "connections": gateway.clients.counts(),
        "configReload": snapshot.get("configReload"),
        "eventLoop": gateway.event_loop.summary(),
        "processMemory": gateway.process_memory.current(),
        "uptimeMs": gateway.uptime_ms(),
        "pid": os.getpid(),
        # Cluster mode: this instance's id, its live peers and the bus state (health's section).
        **({"cluster": snapshot["cluster"]} if "cluster" in snapshot else {}),
    }
    if params.get("includeCliProjection"):
        result["cliProjection"] = _cli_projection(gateway)
    return result


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
