"""Operator scopes, their implication rules, and which events each scope may see (protocol §5, §6.2).

The rules are small but easy to get subtly wrong, so every gate in the gateway asks this module
rather than comparing scope strings itself.
"""
from __future__ import annotations

from collections.abc import Iterable

ADMIN = "operator.admin"
READ = "operator.read"
WRITE = "operator.write"
SESSIONS_READ = "operator.sessions.read"
SESSIONS_WRITE = "operator.sessions.write"
APPROVALS = "operator.approvals"
QUESTIONS = "operator.questions"
PAIRING = "operator.pairing"
TALK = "operator.talk"
TALK_SECRETS = "operator.talk.secrets"

KNOWN_SCOPES = frozenset(
    (ADMIN, READ, WRITE, SESSIONS_READ, SESSIONS_WRITE, APPROVALS, QUESTIONS, PAIRING, TALK, TALK_SECRETS)
)

# What a granted scope satisfies besides itself. Admin is handled separately (it satisfies all).
_IMPLIES: dict[str, frozenset[str]] = {
    WRITE: frozenset((READ, TALK, SESSIONS_READ, SESSIONS_WRITE)),
    READ: frozenset((SESSIONS_READ,)),
    SESSIONS_WRITE: frozenset((SESSIONS_READ,)),
}

# Scope needed to receive each broadcast event. ``()`` means every authenticated client,
# nodes included; an event missing from this table is never delivered (fail-closed).
EVENT_SCOPES: dict[str, tuple[str, ...]] = {
    "tick": (),
    "health": (),
    "heartbeat": (),
    "shutdown": (),
    "gateway.suspension": (),
    "update.available": (),
    "presence": (READ,),
    "agent": (READ,),
    "chat": (READ,),
    "chat.side_result": (READ,),
    "chat.send_timing": (READ,),
    "cron": (READ,),
    "task": (READ,),
    "task.suggestion": (READ,),
    "talk.event": (READ,),
    "config.changed": (READ,),
    "sessions.changed": (READ,),
    "session.message": (READ,),
    "session.observer": (READ,),
    "session.operation": (READ,),
    "session.sharing": (READ,),
    "session.suggestion": (READ,),
    "session.typing": (READ,),
    "session.tool": (READ,),
    "node.presence": (READ,),
    "node.hostStats": (READ,),
    "node.event": (READ,),
    "skills.changed": (READ,),
    "plugins.changed": (READ,),
    "voicewake.changed": (READ,),
    "ui.command": (READ,),
    "portal.changed": (READ,),
    "mentions.changed": (READ,),
    "users.prefs.changed": (READ,),
    "chat.metadata.changed": (READ, SESSIONS_READ),
    "exec.approval.requested": (APPROVALS,),
    "exec.approval.resolved": (APPROVALS,),
    "plugin.approval.requested": (APPROVALS,),
    "plugin.approval.resolved": (APPROVALS,),
    "session.approval": (APPROVALS,),
    "question.requested": (QUESTIONS,),
    "question.resolved": (QUESTIONS,),
    "device.pair.requested": (PAIRING,),
    "device.pair.resolved": (PAIRING,),
    "node.pair.requested": (PAIRING,),
    "node.pair.resolved": (PAIRING,),
    "talk.mode": (TALK,),
    "talk.voice.change": (TALK,),
    "terminal.data": (ADMIN,),
    "terminal.exit": (ADMIN,),
    "plugins.install.progress": (ADMIN,),
}


def scope_satisfied(required: str, granted: Iterable[str]) -> bool:
    """True when ``granted`` covers ``required`` under the operator implication rules."""
    if not required.startswith("operator."):
        return False
    granted_set = granted if isinstance(granted, (set, frozenset)) else frozenset(granted)
    if required in granted_set or ADMIN in granted_set:
        return True
    return any(required in _IMPLIES.get(scope, ()) for scope in granted_set)


def scopes_cover(requested: Iterable[str], approved: Iterable[str]) -> bool:
    """True when every requested scope is satisfied by the approved set (pairing upgrades)."""
    return first_missing_scope(requested, approved) is None


def first_missing_scope(required: Iterable[str], granted: Iterable[str]) -> str | None:
    """The first required scope ``granted`` does not satisfy, or None.

    Approvals (device and node pairing) use it so an approver can never hand out a scope it does
    not hold itself, and the refusal names that scope as the reference does.
    """
    granted_set = frozenset(granted)
    for scope in required:
        if not scope_satisfied(scope, granted_set):
            return scope
    return None


def may_receive_event(event: str, role: str, granted: frozenset[str]) -> bool:
    """Scope gate for broadcast events, fail-closed for anything not in the table."""
    required = EVENT_SCOPES.get(event)
    if required is None:
        if event.startswith("plugin."):
            required = (WRITE,)
        else:
            return False
    if not required:
        return True
    if role != "operator":
        return False
    return any(scope_satisfied(scope, granted) for scope in required)
