"""The per-session views the Control UI opens a chat with: ``sessions.describe``,
``sessions.create``, ``sessions.messages.subscribe``/``unsubscribe`` and
``sessions.observer.visibility`` (shapes captured from the reference with its UI).

A message subscription is a per-connection topic (``session.messages:<key>``); the gateway sends
``session.message`` to it when a turn's final assistant message lands in that transcript.
"""
from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import inlineCallbacks

from ..protocol.constants import MESSAGES_TOPIC_PREFIX, messages_topic
from ..protocol.errors import invalid_request
from ..security.scopes import READ, WRITE
from ..sessions.keys import agent_id_of
from .chat import chat_send
from .registry import MethodSpec, RequestContext
from .sessions import session_row

MAX_MESSAGE_SUBSCRIPTIONS = 64  # per connection: a UI watches the open chat and a few side panels


THINKING_OFF = {"thinkingLevels": [{"id": "off", "label": "off"}], "thinkingOptions": ["off"], "thinkingDefault": "off"}


def session_info(ctx: RequestContext, key: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    """``sessionInfo``/``session`` as the UI reads it: the list row plus run state and choices.

    Thinking levels are ``off`` only: runs here do not pass a reasoning effort upstream.
    """
    gateway = ctx.gateway
    row = session_row(ctx, key, entry or {})
    if entry is None:
        row.pop("sessionId", None)
    run = gateway.runs.active_run(key)
    active = [run.run_id] if run is not None else []
    row.update(
        {
            "classification": "main" if row.get("isMain") else row.get("kind", "direct"),
            "isBackground": False,
            "updatedAt": (entry or {}).get("updatedAt"),
            **THINKING_OFF,
            "contextTokens": gateway.model_defaults(row["agentId"]).get("contextTokens"),
            "snapshotAt": gateway.now_ms(),
            "hasActiveRun": bool(active) or row.get("hasActiveRun", False),
            "activeRunIds": active,
        }
    )
    return row


@inlineCallbacks
def sessions_describe(ctx: RequestContext) -> Any:
    """``{session: row}``, or ``{session: null}`` for a key with no stored session yet."""
    key = ctx.gateway.session_key(ctx.params["key"], ctx.params.get("agentId"))
    entry = yield ctx.gateway.sessions.get(key)
    if entry is None:
        return {"session": None}
    return {"session": session_info(ctx, key, entry)}


@inlineCallbacks
def sessions_create(ctx: RequestContext) -> Any:
    """A new session (or the one at ``key``), optionally labelled; with ``message``, its first turn."""
    params = ctx.params
    gateway = ctx.gateway
    agent_id = params.get("agentId") or gateway.catalog.default_agent_id
    if gateway.catalog.agent(agent_id) is None:
        raise invalid_request(f'unknown agent id "{agent_id}"')
    raw_key = params.get("key") or f"agent:{agent_id}:dashboard:{uuid.uuid4()}"
    key = gateway.session_key(raw_key, agent_id)
    existing = yield gateway.sessions.get(key)
    defaults: dict[str, Any] = {}
    for field in ("label", "displayName", "category"):
        if params.get(field):
            defaults[field] = params[field]
    if params.get("model"):
        defaults["model"] = params["model"]
    entry = yield gateway.sessions.ensure(key, gateway.now_ms(), defaults)
    if existing is None:
        gateway.sessions_changed(key, reason="create")
    result: dict[str, Any] = {"ok": True, "key": key, "sessionId": entry.get("sessionId"), "created": existing is None, "entry": entry}
    message = params.get("message")
    if isinstance(message, str) and message.strip():
        # The UI's "new chat" sends its first message here: start that turn as chat.send would.
        turn = {"sessionKey": key, "message": message, "idempotencyKey": params.get("idempotencyKey") or str(uuid.uuid4())}
        if params.get("timeoutMs"):
            turn["timeoutMs"] = params["timeoutMs"]
        started = yield chat_send(RequestContext(gateway, ctx.client, ctx.request_id, "chat.send", turn))
        defaults_now = gateway.model_defaults(agent_id_of(key))
        result.update(
            {
                "runStarted": True,
                "runId": started["runId"],
                "status": started["status"],
                "resolved": {"modelProvider": defaults_now.get("modelProvider"), "model": defaults_now.get("model")},
            }
        )
    return result


def sessions_messages_subscribe(ctx: RequestContext) -> dict[str, Any]:
    key = ctx.gateway.session_key(ctx.params["key"], ctx.params.get("agentId"))
    subscriptions = ctx.client.subscriptions
    topic = messages_topic(key)
    if topic not in subscriptions:
        if sum(1 for name in subscriptions if name.startswith(MESSAGES_TOPIC_PREFIX)) >= MAX_MESSAGE_SUBSCRIPTIONS:
            raise invalid_request(f"too many session message subscriptions (at most {MAX_MESSAGE_SUBSCRIPTIONS})")
        subscriptions.add(topic)
    result: dict[str, Any] = {"subscribed": True, "key": key}
    if ctx.params.get("includeApprovals"):
        # No approvals are ever pending in a session here (no tools ask for them).
        result["approvalReplay"] = {"sessionKey": key, "updatedAtMs": ctx.gateway.now_ms(), "approvals": [], "truncated": False}
    return result


def sessions_messages_unsubscribe(ctx: RequestContext) -> dict[str, Any]:
    key = ctx.gateway.session_key(ctx.params["key"], ctx.params.get("agentId"))
    ctx.client.subscriptions.discard(messages_topic(key))
    return {"subscribed": False, "key": key}


def sessions_observer_visibility(ctx: RequestContext) -> dict[str, Any]:
    """The UI says whether its tab is visible; nothing here changes with it (no observers)."""
    return {"ok": True}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("sessions.describe", sessions_describe, scope=READ),
        MethodSpec("sessions.create", sessions_create, scope=WRITE),
        MethodSpec("sessions.messages.subscribe", sessions_messages_subscribe, scope=READ),
        MethodSpec("sessions.messages.unsubscribe", sessions_messages_unsubscribe, scope=READ),
        MethodSpec("sessions.observer.visibility", sessions_observer_visibility, scope=READ),
    ]
