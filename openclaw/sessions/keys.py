"""Session key grammar (protocol §10).

Keys are what every client sends and what the store is indexed by, so they are canonicalised in
exactly one place: agent ids are lower-cased and sanitised, the ``agent:`` prefix is matched
case-insensitively, and bare aliases (``main``) become the agent-scoped form.
"""
from __future__ import annotations

import re

import attrs

DEFAULT_AGENT_ID = "main"
DEFAULT_MAIN_KEY = "main"
GLOBAL_KEY = "global"
UNKNOWN_KEY = "unknown"
MAX_SESSION_KEY_LENGTH = 512

_AGENT_ID_VALID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_AGENT_ID_INVALID_CHARS = re.compile(r"[^a-z0-9_-]+")
_CRON_RUN = re.compile(r"(^|:)cron:[^:]+:run:", re.IGNORECASE)
_GROUP_MARKERS = (":group:", ":channel:", ":room:")


def normalize_agent_id(raw: str | None) -> str:
    """Lower-case, invalid characters to ``-``, edges trimmed, at most 64; empty means ``main``."""
    value = (raw or "").strip().lower()
    if _AGENT_ID_VALID.match(value):
        return value
    value = _AGENT_ID_INVALID_CHARS.sub("-", value).strip("-_")[:64].strip("-")
    return value or DEFAULT_AGENT_ID


@attrs.frozen
class AgentSessionKey:
    agent_id: str
    rest: str

    def __str__(self) -> str:
        return f"agent:{self.agent_id}:{self.rest}"


def parse_agent_session_key(key: str) -> AgentSessionKey | None:
    """Split ``agent:<agentId>:<rest>`` on the first ``:`` after the prefix; None if not that form."""
    if len(key) < 6 or key[:6].lower() != "agent:":
        return None
    agent_part, sep, rest = key[6:].partition(":")
    if not sep or not agent_part or not rest or rest.startswith(":"):
        return None
    return AgentSessionKey(normalize_agent_id(agent_part), rest)


def main_session_key(agent_id: str = DEFAULT_AGENT_ID, main_key: str = DEFAULT_MAIN_KEY) -> str:
    return f"agent:{normalize_agent_id(agent_id)}:{(main_key or DEFAULT_MAIN_KEY).strip().lower()}"


def canonical_session_key(
    raw: str, *, agent_id: str | None = None, default_agent_id: str = DEFAULT_AGENT_ID, main_key: str = DEFAULT_MAIN_KEY
) -> str:
    """The store key for what a client sent.

    ``global`` and ``unknown`` stay bare; ``agent:`` keys get a normalised agent id; a bare main
    key becomes the agent's main session; any other bare key is scoped to the requested (or
    default) agent, which is how ``chat.send {sessionKey: "work"}`` lands in ``agent:main:work``.
    A key that starts with ``agent:`` but does not parse raises ValueError.
    """
    key = raw.strip()
    if len(key) > MAX_SESSION_KEY_LENGTH:
        raise ValueError(f"session key is longer than {MAX_SESSION_KEY_LENGTH} characters")
    lowered = key.lower()
    if lowered in (GLOBAL_KEY, UNKNOWN_KEY):
        return lowered
    parsed = parse_agent_session_key(key)
    if parsed is None and lowered.startswith("agent:"):
        raise ValueError(f"malformed session key {key!r}: expected agent:<agentId>:<rest>")
    if parsed is not None:
        rest = parsed.rest
        if rest.lower() == (main_key or DEFAULT_MAIN_KEY).lower():
            rest = rest.lower()
        return str(AgentSessionKey(parsed.agent_id, rest))
    agent = normalize_agent_id(agent_id or default_agent_id)
    if lowered == (main_key or DEFAULT_MAIN_KEY).lower():
        return main_session_key(agent, main_key)
    if lowered.startswith(("cron:", "hook:", "acp:")):
        return key
    return str(AgentSessionKey(agent, key))


def agent_id_of(key: str) -> str | None:
    """The agent a stored key belongs to; None for ``global``/``unknown`` and legacy bare keys."""
    parsed = parse_agent_session_key(key)
    if parsed is not None:
        return parsed.agent_id
    return None


def session_kind(key: str) -> str:
    """``global``, ``unknown``, ``group`` (groups, channels, rooms) or ``direct``."""
    if key == GLOBAL_KEY:
        return "global"
    if key == UNKNOWN_KEY:
        return "unknown"
    lowered = key.lower()
    if any(marker in lowered for marker in _GROUP_MARKERS):
        return "group"
    return "direct"


def is_cron_run_key(key: str) -> bool:
    """Cron *run* keys are per-execution scratch sessions; lists never show them."""
    return _CRON_RUN.search(key) is not None


def is_main_session_key(key: str, main_key: str = DEFAULT_MAIN_KEY) -> bool:
    parsed = parse_agent_session_key(key)
    return parsed is not None and parsed.rest == (main_key or DEFAULT_MAIN_KEY).lower()
