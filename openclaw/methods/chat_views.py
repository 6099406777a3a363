"""``chat.startup`` and ``chat.metadata``: what the Control UI loads to open a chat.

``chat.startup`` is one round trip for the chat page: the newest history (within ``maxBytes``),
the model defaults, the session's info and the composer's metadata (models to pick from and the
slash commands this gateway understands). Shapes follow the reference, captured with its UI.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from ..agents.catalog import Catalog
from ..protocol.errors import invalid_request
from ..security.scopes import READ, SESSIONS_READ
from ..sessions.keys import agent_id_of
from .chat import chat_history
from .registry import MethodSpec, RequestContext
from .session_views import THINKING_OFF, session_info

STARTUP_DEFAULT_LIMIT = 80
# chat.send handles no slash commands itself (text goes to the model as written), so the
# composer is offered none.
COMMANDS: tuple[dict[str, Any], ...] = ()


def chat_defaults(ctx: RequestContext, agent_id: str | None) -> dict[str, Any]:
    """The model a new turn uses, with the choices the composer offers."""
    return {**ctx.gateway.model_defaults(agent_id), **THINKING_OFF, "modelSelectionTarget": "session"}


def model_choices(catalog: Catalog, agent_id: str | None) -> list[dict[str, Any]]:
    """Declared models, the agent's primary tagged ``default``."""
    refs = catalog.candidates(agent_id)
    primary = refs[0] if refs else None
    models = []
    for provider in catalog.providers.values():
        for model in provider.models:
            entry: dict[str, Any] = {"id": model.id, "name": model.name or model.id, "provider": provider.id}
            if model.context_window:
                entry["contextWindow"] = model.context_window
            entry.update(
                {
                    "reasoning": False,
                    "tags": ["default"] if f"{provider.id}/{model.id}" == primary else [],
                    "thinkingLevels": THINKING_OFF["thinkingLevels"],
                    "thinkingDefault": "off",
                    "available": True,
                }
            )
            models.append(entry)
    return models


def metadata(ctx: RequestContext, agent_id: str | None) -> dict[str, Any]:
    return {
        "models": model_choices(ctx.gateway.catalog, agent_id),
        "commands": [dict(command) for command in COMMANDS],
        "swarmEnabled": False,
        "accountSelection": {"kind": "automatic", "label": "Automatic account selection"},
        "runtimeSelectionLocked": False,
    }


def chat_metadata(ctx: RequestContext) -> dict[str, Any]:
    params = ctx.params
    agent_id = params.get("agentId")
    if params.get("sessionKey"):
        agent_id = agent_id_of(ctx.gateway.session_key(params["sessionKey"], agent_id))
    if agent_id is not None and ctx.gateway.catalog.agent(agent_id) is None:
        raise invalid_request(f'unknown agent id "{agent_id}"')
    return metadata(ctx, agent_id)


@inlineCallbacks
def chat_startup(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    key = gateway.session_key(params["sessionKey"], params.get("agentId"))
    agent_id = agent_id_of(key)
    history_params = {"sessionKey": key, "limit": params.get("limit") or STARTUP_DEFAULT_LIMIT}
    if params.get("maxBytes"):
        history_params["maxBytes"] = params["maxBytes"]
    history = yield chat_history(RequestContext(gateway, ctx.client, ctx.request_id, "chat.history", history_params))
    entry = yield gateway.sessions.get(key)
    result: dict[str, Any] = {
        "sessionKey": key,
        "messages": history["messages"],
        "pendingInputs": {"items": [], "total": 0},
        "hasMore": bool(history.get("hasMore")),
        "totalMessages": len(history["messages"]),
        "defaults": chat_defaults(ctx, agent_id),
        "sessionInfo": session_info(ctx, key, entry),
        "thinkingLevel": (entry or {}).get("thinkingLevel") or "off",
        "metadata": metadata(ctx, agent_id),
    }
    if history.get("sessionId"):
        result["sessionId"] = history["sessionId"]
    if history.get("nextCursor"):
        result["nextCursor"] = history["nextCursor"]
    return result


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("chat.startup", chat_startup, scope=SESSIONS_READ),
        MethodSpec("chat.metadata", chat_metadata, scope=READ),
    ]
