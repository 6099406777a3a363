"""Method families this gateway does not have (cron, tasks, skills, talk, questions, …).

The reference's clients call these on load and on many pages. Answering ``unknown method`` (or a
misleading ``missing scope``) breaks them; inventing data would lie. So each read answers the
truthful empty state in the reference's shape, and each write answers one clear error in the
protocol's shape that names the feature as not available here. ``hello-ok`` advertises the reads
(they are implemented, and what they say is true) but not the writes: the reference's clients
offer an action only when its method is advertised, so a user is not shown buttons that can only
fail.

Add a family by appending ``empty_read``/``not_available`` specs to :func:`methods` and the params
schemas to ``protocol/schema/absent.py``.
"""
from __future__ import annotations

import copy
from typing import Any

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..security.scopes import ADMIN, APPROVALS, READ, WRITE
from .registry import MethodSpec, RequestContext

FEATURE_NOT_AVAILABLE = "FEATURE_NOT_AVAILABLE"


def feature_not_available(feature: str, method: str) -> GatewayError:
    """The error every write of an absent family answers: clear, final, in the protocol's shape."""
    return GatewayError(
        UNAVAILABLE,
        f"{feature} is not available on this gateway ({method})",
        {"code": FEATURE_NOT_AVAILABLE, "feature": feature, "method": method},
        retryable=False,
    )


def empty_read(name: str, result: Any, scope: str | None = READ) -> MethodSpec:
    """A read whose truthful answer here is always ``result`` (copied per call: callers may mutate)."""

    def handler(ctx: RequestContext) -> Any:
        return copy.deepcopy(result)

    handler.__name__ = f"empty_{name.replace('.', '_')}"
    return MethodSpec(name, handler, scope=scope)


def not_available(name: str, feature: str, scope: str | None = ADMIN) -> MethodSpec:
    """A write (or action) of a family this gateway does not have (not advertised in hello-ok)."""

    def handler(ctx: RequestContext) -> Any:
        raise feature_not_available(feature, name)

    handler.__name__ = f"unavailable_{name.replace('.', '_')}"
    return MethodSpec(name, handler, scope=scope, advertised=False)


# The inventory never changes here (no scheduler), so neither does its revision.
EMPTY_CRON_REVISION = "empty:no-scheduler"


def _cron_list(ctx: RequestContext) -> dict[str, Any]:
    """No scheduler here, so no jobs; the page echoes the window the caller asked for."""
    params = ctx.params or {}
    offset = params.get("offset", 0)
    # The reference CLI (`openclaw cron list`) accepts a page only with all of the canonical
    # metadata, snapshotRevision included (a non-empty string naming this inventory version).
    return {
        "jobs": [],
        "total": 0,
        "offset": offset,
        "limit": params.get("limit", 50),
        "hasMore": False,
        "nextOffset": None,
        "snapshotRevision": EMPTY_CRON_REVISION,
        "deliveryPreviews": {},
    }


def _cron_runs(ctx: RequestContext) -> dict[str, Any]:
    params = ctx.params or {}
    return {"entries": [], "total": 0, "offset": params.get("offset", 0), "limit": params.get("limit", 50), "hasMore": False, "nextOffset": None}


def _web_search_status(ctx: RequestContext) -> dict[str, Any]:
    """Agents here have no tools, so no web search provider is configured or available."""
    params = ctx.params or {}
    return {"enabled": False, "provider": None, "agentId": params.get("agentId") or ctx.gateway.catalog.default_agent_id, "providers": []}


# The reads' truthful answers, in the reference's shapes (captured from it with the Control UI).
EMPTY_TALK_CATALOG = {
    "modes": [],
    "transports": [],
    "brains": [],
    "speech": {"providers": []},
    "transcription": {"ready": False, "providers": []},
    "realtime": {"ready": False, "providers": []},
}
UPDATE_STATUS = {
    "sentinel": None,
    "updateAvailable": None,
    "effectiveChannel": "stable",
    "schedule": {"channel": "stable", "autoEnabled": False},
}
CHANNEL_PAIRING = {"accounts": [], "requests": [], "commandOwnerConfigured": False}
CRON_STATUS = {"enabled": False, "triggersEnabled": False, "jobs": 0, "nextWakeAtMs": None}


def methods() -> list[MethodSpec]:
    return [
        # cron: no scheduler in this gateway
        MethodSpec("cron.list", _cron_list, scope=READ),
        empty_read("cron.status", CRON_STATUS),
        MethodSpec("cron.runs", _cron_runs, scope=READ),
        *(not_available(name, "cron") for name in ("cron.add", "cron.update", "cron.remove", "cron.run")),
        # background tasks
        empty_read("tasks.list", {"tasks": []}),
        not_available("tasks.cancel", "tasks"),
        # self-update
        empty_read("update.status", UPDATE_STATUS),
        not_available("update.run", "update"),
        # plugin and OpenClaw-tool approvals (no plugins or tools ask for approval here)
        empty_read("plugin.approval.list", [], scope=APPROVALS),
        empty_read("openclaw.approval.list", [], scope=APPROVALS),
        not_available("plugin.approval.resolve", "plugin approvals", scope=APPROVALS),
        not_available("openclaw.approval.resolve", "tool approvals", scope=APPROVALS),
        # agent questions to the operator
        empty_read("question.list", {"questions": []}),
        not_available("question.resolve", "questions", scope=WRITE),
        # talk / voice
        empty_read("talk.catalog", EMPTY_TALK_CATALOG),
        not_available("talk.mode", "talk", scope=WRITE),
        # progress cards
        empty_read("progressCard.get", {"card": None}),
        not_available("progressCard.put", "progress cards", scope=WRITE),
        not_available("progressCard.refresh", "progress cards", scope=WRITE),
        # plugins and the artifacts they would produce
        empty_read("plugins.list", {"plugins": []}),
        empty_read("plugins.catalog.browse", {"items": [], "categories": []}),
        *(not_available(name, "plugins") for name in ("plugins.install", "plugins.uninstall", "plugins.setEnabled")),
        empty_read("artifacts.list", {"artifacts": []}),
        # chat channels (no channel connections here, so nothing to pair) and web search tools
        empty_read("channels.pairing.list", CHANNEL_PAIRING),
        MethodSpec("webSearch.status", _web_search_status, scope=READ),
        # transcript branches and the session companion
        empty_read("sessions.branches.list", {"branches": []}),
        not_available("sessions.branches.switch", "session branches", scope=WRITE),
        empty_read("sessions.companion.state", {"exchanges": []}),
        not_available("sessions.companion.ask", "the session companion", scope=WRITE),
        not_available("sessions.companion.reset", "the session companion", scope=WRITE),
    ]
