"""What this gateway has to offer beyond chat: channels, skills and chat commands.

The reference CLI and TUI read these on start (``channels status``, ``skills list``, the TUI's
slash-command menu). This gateway runs no chat channels and no skills, so those answers are
truthfully empty, in the reference's shape, with the live event-loop numbers ``channels.status``
carries; ``commands.list`` names the slash commands the ``agent`` method really acts on.
"""
from __future__ import annotations

from typing import Any

from ..security.scopes import READ
from .registry import MethodSpec, RequestContext

# The commands ``agent`` handles itself (methods/agent.py); everything else goes to the model.
CHAT_COMMANDS = (
    ("new", "Start a new session."),
    ("reset", "Reset the current session."),
)


def _params(ctx: RequestContext) -> dict[str, Any]:
    return ctx.params if isinstance(ctx.params, dict) else {}


def channels_status(ctx: RequestContext) -> dict[str, Any]:
    return {
        "ts": ctx.gateway.now_ms(),
        "channelOrder": [],
        "channelLabels": {},
        "channelDetailLabels": {},
        "channelSystemImages": {},
        "channelMeta": [],
        "eventLoop": ctx.gateway.event_loop.summary(),
        "channels": {},
        "channelAccounts": {},
        "channelDefaultAccountId": {},
        "statusIssues": [],
    }


def skills_status(ctx: RequestContext) -> dict[str, Any]:
    agent_id = _params(ctx).get("agentId") or ctx.gateway.catalog.default_agent_id
    return {"agentId": agent_id, "skills": []}


def commands_list(ctx: RequestContext) -> dict[str, Any]:
    return {
        "commands": [
            {
                "name": name,
                "nativeName": name,
                "textAliases": [f"/{name}"],
                "description": description,
                "category": "session",
                "source": "native",
                "scope": "both",
                "acceptsArgs": True,
            }
            for name, description in CHAT_COMMANDS
        ]
    }


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("channels.status", channels_status, scope=READ),
        MethodSpec("skills.status", skills_status, scope=READ),
        MethodSpec("commands.list", commands_list, scope=READ),
    ]
