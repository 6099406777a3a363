"""An agent's display identity (name and avatar), as ``agent.identity.get`` and the UI's
bootstrap config report it: ``agents.list[].identity`` when configured, else the defaults the
reference shows ("Assistant", avatar the name's first letter)."""
from __future__ import annotations

from typing import Any

from .catalog import Catalog

DEFAULT_NAME = "Assistant"


def agent_identity(catalog: Catalog, agent_id: str | None = None) -> dict[str, Any]:
    agent_id = agent_id or catalog.default_agent_id
    entry = next((agent for agent in catalog.agents if agent.id == agent_id), None)
    identity = dict(entry.identity or {}) if entry is not None else {}
    name = identity.get("name") if isinstance(identity.get("name"), str) and identity.get("name") else None
    source = "identity" if name else "default"
    if name is None and entry is not None and entry.name:
        name, source = entry.name, "agent"
    name = name or DEFAULT_NAME
    avatar = identity.get("avatar") if isinstance(identity.get("avatar"), str) and identity.get("avatar") else None
    result: dict[str, Any] = {"agentId": agent_id, "name": name, "nameSource": source, "avatar": avatar or name[:1].upper()}
    emoji = identity.get("emoji")
    if isinstance(emoji, str) and emoji:
        result["emoji"] = emoji
    return result
