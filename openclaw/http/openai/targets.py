"""Which agent and which session an OpenAI-style request runs in (http spec §1).

``model`` names an agent, not a provider model: ``openclaw``/``openclaw/default`` is the default
agent, ``openclaw/<id>``, ``openclaw:<id>`` or ``agent:<id>`` a configured one. Headers can
override both the agent and the session; without them each call gets a fresh session unless the
body's ``user`` asks for a stable one.
"""
from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from ...protocol.errors import GatewayError
from ...sessions.keys import MAX_SESSION_KEY_LENGTH, normalize_agent_id
from .common import HttpError, header

if TYPE_CHECKING:
    from ...hub import GatewayHub

_AGENT_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_AGENT_MODEL = re.compile(rf"^(?:openclaw/|openclaw:|agent:)({_AGENT_ID})$", re.IGNORECASE)
_VALID_AGENT_ID = re.compile(rf"^{_AGENT_ID}$")
_RESERVED_PREFIXES = ("subagent:", "cron:", "acp:")
_RESERVED_AGENT_SCOPED = re.compile(r"^agent:[^:]+:(subagent|cron|acp):", re.IGNORECASE)
INVALID_MODEL = "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`."


def agent_from_model(model: Any) -> str | None:
    """The agent id ``model`` names; None for the default agent. Raises HttpError when invalid."""
    if model is None:
        return None
    if not isinstance(model, str):
        raise HttpError(400, INVALID_MODEL)
    text = model.strip()
    if text.lower() in ("openclaw", "openclaw/default"):
        return None
    match = _AGENT_MODEL.match(text)
    if match is None:
        raise HttpError(400, INVALID_MODEL)
    return match.group(1).lower()


def resolve_agent(gateway: GatewayHub, request: Any, model: Any) -> str:
    """Header ``x-openclaw-agent-id`` (or ``x-openclaw-agent``) over ``model`` over the default."""
    named = agent_from_model(model)  # validated even when a header overrides it
    override = header(request, "x-openclaw-agent-id") or header(request, "x-openclaw-agent")
    wanted = override if override is not None else named
    if wanted is None:
        return gateway.catalog.default_agent_id
    if not _VALID_AGENT_ID.match(wanted) or gateway.catalog.agent(wanted) is None:
        raise HttpError(400, f"Unknown agent '{wanted}'.")
    return normalize_agent_id(wanted)


def requested_session_key(request: Any) -> str | None:
    """``x-openclaw-session-key`` as sent (trimmed), refusing the reserved internal namespaces."""
    key = header(request, "x-openclaw-session-key")
    if key is None:
        return None
    lowered = key.lower()
    if lowered.startswith(_RESERVED_PREFIXES) or _RESERVED_AGENT_SCOPED.match(lowered):
        raise HttpError(400, "`x-openclaw-session-key` cannot use reserved internal session namespaces.")
    return key


def canonical_explicit_key(gateway: GatewayHub, explicit: str | None, agent_id: str) -> str | None:
    """The store key for the header's session key; a malformed one (``agent:x``) is a 400."""
    if explicit is None:
        return None
    try:
        return gateway.session_key(explicit, agent_id)
    except GatewayError as exc:
        raise HttpError(400, f"Invalid `x-openclaw-session-key`: {exc.message}") from None


def session_key(agent_id: str, explicit: str | None, user: Any, prefix: str) -> str:
    """``prefix`` is ``openai`` (chat completions) or ``openresponses``."""
    if explicit is not None:
        return explicit
    if isinstance(user, str) and user.strip():
        if len(user.strip()) > MAX_SESSION_KEY_LENGTH:
            raise HttpError(400, f"`user` is longer than {MAX_SESSION_KEY_LENGTH} characters.")
        rest = f"{prefix}-user:{user.strip()}"
    else:
        rest = f"{prefix}:{uuid.uuid4()}"
    return f"agent:{normalize_agent_id(agent_id)}:{rest.lower()}"
