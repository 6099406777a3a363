"""``sessions.*``: list, preview, resolve, patch, reset, delete, compact (protocol §9.1).

Every change is followed by a ``sessions.changed`` event so open session lists stay current.
Scopes follow the reference: patching presentation fields needs write, anything that changes
how the agent behaves (exec policy, send policy, lineage) needs admin; delete needs admin unless
it only removes an archived session.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from twisted.internet.defer import inlineCallbacks

from ..protocol.constants import SESSIONS_TOPIC  # the subscription ``Gateway.sessions_changed`` delivers to
from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, READ, WRITE
from ..sessions.keys import agent_id_of, is_main_session_key, normalize_agent_id, session_kind
from ..stores.sessions import LabelInUse, ListQuery, SessionConflict, SessionNotFound, model_override
from .registry import MethodSpec, RequestContext


LIST_DEFAULT_LIMIT = 100
PREVIEW_MAX_KEYS = 64
PREVIEW_DEFAULT_LIMIT = 12
PREVIEW_DEFAULT_CHARS = 240
COMPACT_DEFAULT_LINES = 400
DELETE_ACTIVE_WAIT_S = 15.0

# sessions.patch keys an operator with write may change; any other key needs admin.
PATCH_GUARDS = ("expectedSessionId", "expectedLifecycleRevision", "expectedPermissionMode", "expectedMarkedUnreadAt")
PATCH_WRITE_KEYS = frozenset(
    ("key", "agentId", *PATCH_GUARDS)
    + ("label", "autoLabel", "icon", "color", "category", "boardFace", "boardPresentation", "pinned", "archived", "unread")
    + ("model", "agentRuntime", "thinkingLevel", "fastMode", "permissionMode")
)
DELETE_WRITE_KEYS = frozenset(
    ("key", "agentId", "deleteTranscript", "expectedSessionId", "expectedSessionUpdatedAt", "emitLifecycleHooks", "archivedOnly")
)
_NOT_ENTRY_FIELDS = frozenset(("key", "agentId")) | frozenset(PATCH_GUARDS) | {"expectedSandboxMode", "expectedNativeRuntimeConsent", "expectedToolOverrides"}


def patch_scope(params: Any) -> str:
    if not isinstance(params, dict):
        return ADMIN
    if params.get("permissionMode") == "full" or "sandboxMode" in params:
        return ADMIN
    return WRITE if set(params) <= PATCH_WRITE_KEYS else ADMIN


def delete_scope(params: Any) -> str:
    if isinstance(params, dict) and params.get("archivedOnly") is True and set(params) <= DELETE_WRITE_KEYS:
        return WRITE
    return ADMIN


def session_row(ctx: RequestContext, key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One ``sessions.list`` row: the stored entry plus what clients derive from the key."""
    gateway = ctx.gateway
    kind = session_kind(key)
    row: dict[str, Any] = {
        "key": key,
        "kind": kind,
        "agentId": agent_id_of(key),
        "isMain": is_main_session_key(key, gateway.catalog.main_key),
        "chatType": "group" if kind == "group" else "direct",
        "archived": False,
        "pinned": False,
        "unread": False,
        "systemSent": False,
        "abortedLastRun": False,
    }
    row.update({field: value for field, value in entry.items() if field != "skillsSnapshot"})
    if "displayName" not in row and entry.get("label"):
        row["displayName"] = entry["label"]
    defaults = gateway.model_defaults(row["agentId"])
    row.setdefault("modelProvider", defaults.get("modelProvider"))
    row.setdefault("model", defaults.get("model"))
    row["hasActiveRun"] = gateway.runs.has_activity(key)
    if row.get("status") == "running" and not row["hasActiveRun"]:
        # A run recorded as running that no longer exists (the gateway stopped during it): its
        # outcome is unknown, so no status is claimed.
        for field in ("status", "endedAt", "runtimeMs"):
            row.pop(field, None)
    return {field: value for field, value in row.items() if value is not None}


# sessions.list filters on things no session here ever has (projects, boards, owners, people,
# custom groups): asking for them truthfully finds nothing.
_NEVER_MATCHING = ("projectId", "workspaceDir", "creatorId", "ownerId", "involvingProfileId", "profileRelation", "boardFace")


def _never_matches(params: Mapping[str, Any]) -> bool:
    if any(params.get(name) is not None for name in _NEVER_MATCHING):
        return True
    return params.get("hasBoard") is True or bool(params.get("group"))


def _row_filter(ctx: RequestContext, params: Mapping[str, Any]) -> Any:
    """Filters applied to each found row: configured agents only, pinned state."""
    configured = {agent.id for agent in ctx.gateway.catalog.agents} if params.get("configuredAgentsOnly") else None
    pinned = params.get("pinned")

    def keep(row: Mapping[str, Any]) -> bool:
        if configured is not None and row.get("agentId") and row["agentId"] not in configured:
            return False
        return pinned is None or bool(row.get("pinned")) == pinned

    return keep


def _agent_filter(params: Mapping[str, Any]) -> str | None:
    return normalize_agent_id(params["agentId"]) if params.get("agentId") else None


@inlineCallbacks
def sessions_list(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    limit = params.get("limit") or LIST_DEFAULT_LIMIT
    offset = params.get("offset") or 0
    active = params.get("activeMinutes")
    archived = params.get("archived", False)
    query = ListQuery(
        limit=limit,
        offset=offset,
        # A window reaching before 1970 is every session (and would overflow SQLite's integers).
        active_since_ms=max(0, gateway.now_ms() - active * 60_000) if active else None,
        include_global=bool(params.get("includeGlobal")),
        include_unknown=bool(params.get("includeUnknown")),
        label=params.get("label"),
        spawned_by=params.get("spawnedBy"),
        agent_id=_agent_filter(params),
        search=(params.get("search") or "").strip() or None,
        archived=None if archived == "all" else bool(archived),
    )
    wants_previews = bool(params.get("includeDerivedTitles") or params.get("includeLastMessage"))
    page = yield gateway.sessions.list(query, include_previews=wants_previews)
    keep = _row_filter(ctx, params)
    rows = []
    for found in [] if _never_matches(params) else page.rows:
        row = session_row(ctx, found["key"], found["entry"])
        if not keep(row):
            continue
        if params.get("includeDerivedTitles"):
            title = found["entry"].get("label") or found["entry"].get("displayName") or found.get("firstUserText")
            if title:
                row["derivedTitle"] = title
        if params.get("includeLastMessage") and found.get("lastMessagePreview"):
            row["lastMessagePreview"] = found["lastMessagePreview"]
        rows.append(row)
    total = 0 if _never_matches(params) else page.total - (len(page.rows) - len(rows))
    has_more = offset + len(rows) < total
    return {
        "ts": gateway.now_ms(),
        "path": gateway.sessions.path,
        "count": len(rows),
        "totalCount": total,
        "limitApplied": limit,
        "nextOffset": offset + len(rows) if has_more else None,
        "hasMore": has_more,
        "owners": [],  # sessions here have no owners (one operator identity: the gateway auth)
        "defaults": gateway.model_defaults(_agent_filter(params)),
        "sessions": rows,
    }


@inlineCallbacks
def sessions_preview(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    keys = [gateway.session_key(key) for key in (k.strip() for k in params["keys"]) if key][:PREVIEW_MAX_KEYS]
    if not keys:
        return {"ts": gateway.now_ms(), "previews": []}
    previews = yield gateway.sessions.preview(
        keys, params.get("limit") or PREVIEW_DEFAULT_LIMIT, max(20, params.get("maxChars") or PREVIEW_DEFAULT_CHARS)
    )
    return {"ts": gateway.now_ms(), "previews": previews}


@inlineCallbacks
def sessions_resolve(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    agent = _agent_filter(params)
    criteria: dict[str, Any] = {
        "agent_id": agent,
        "spawned_by": params.get("spawnedBy"),
        "include_global": bool(params.get("includeGlobal")),
        "include_unknown": bool(params.get("includeUnknown")),
    }
    if params.get("key"):
        criteria["key"] = gateway.session_key(params["key"], params.get("agentId"))
        missing = f"No session found: {criteria['key']}"
    elif params.get("sessionId"):
        criteria["session_id"] = params["sessionId"]
        missing = f"No session found with sessionId: {params['sessionId']}"
    elif params.get("label"):
        criteria["label"] = params["label"]
        missing = f"No session found with label: {params['label']}"
    else:
        raise invalid_request("invalid sessions.resolve params: one of key, sessionId or label is required")
    found = yield gateway.sessions.find(**criteria)
    if not found:
        if params.get("allowMissing") and "key" in criteria:
            return {"ok": True, "key": criteria["key"], "agentId": agent_id_of(criteria["key"]), "missing": True}
        raise invalid_request(missing)
    if len(found) > 1:
        return {"ok": False, "candidates": [{"key": key, "agentId": agent_id_of(key)} for key, _ in found[:10]]}
    key, entry = found[0]
    result = {"ok": True, "key": key, "agentId": agent_id_of(key)}
    if entry.get("label") or entry.get("displayName"):
        result["displayName"] = entry.get("displayName") or entry.get("label")
    return result


def _expectations(params: Mapping[str, Any]) -> dict[str, Any]:
    expect = {}
    if params.get("expectedSessionId") is not None:
        expect["sessionId"] = params["expectedSessionId"]
    if params.get("expectedLifecycleRevision") is not None:
        expect["lifecycleRevision"] = params["expectedLifecycleRevision"]
    if params.get("expectedSessionUpdatedAt") is not None:
        expect["updatedAt"] = params["expectedSessionUpdatedAt"]
    return expect


def _conflict(exc: SessionConflict) -> GatewayError:
    return invalid_request(f"session changed since it was read: {exc}", {"code": "SESSION_CONFLICT"})


@inlineCallbacks
def sessions_patch(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    key = gateway.session_key(params["key"], params.get("agentId"))
    changes = {field: value for field, value in params.items() if field not in _NOT_ENTRY_FIELDS}
    if isinstance(changes.get("label"), str):
        changes["label"] = changes["label"].strip() or None
    if "model" in changes:
        # The session's choice is an override; ``model``/``modelProvider`` record what last ran.
        ref = changes.pop("model")
        target = gateway.catalog.resolve(ref) if ref is not None else None
        if ref is not None and target is None:
            raise invalid_request(f"unknown model {ref!r}: declare it under models.providers")
        changes["modelOverride"] = target.model.id if target else None
        changes["providerOverride"] = target.provider.id if target else None
    if "archived" in changes:
        changes["archivedAt"] = gateway.now_ms() if changes["archived"] else None
    if "pinned" in changes:
        changes["pinnedAt"] = gateway.now_ms() if changes["pinned"] else None
    try:
        entry = yield gateway.sessions.patch(key, changes, gateway.now_ms(), expect=_expectations(params))
    except LabelInUse as exc:
        raise invalid_request(f"label already in use: {exc}") from None
    except SessionConflict as exc:
        raise _conflict(exc) from None
    row = session_row(ctx, key, entry)
    gateway.sessions_changed(key, reason="patch", session=row)
    defaults = gateway.model_defaults(agent_id_of(key))
    resolved = {"modelProvider": defaults.get("modelProvider"), "model": defaults.get("model")}
    override = model_override(entry)
    target = gateway.catalog.resolve(override) if override else None
    if target is not None:
        resolved = {"modelProvider": target.provider.id, "model": target.model.id}
    return {"ok": True, "path": gateway.sessions.path, "key": key, "entry": entry, "resolved": resolved}


@inlineCallbacks
def sessions_reset(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    key = gateway.session_key(params["key"], params.get("agentId"))
    try:
        entry = yield gateway.reset_session(key, params.get("reason") or "reset", expect=_expectations(params))
    except SessionConflict as exc:
        raise _conflict(exc) from None
    return {"ok": True, "key": key, "entry": entry}


@inlineCallbacks
def sessions_delete(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    key = gateway.session_key(params["key"], params.get("agentId"))
    if is_main_session_key(key, gateway.catalog.main_key):
        raise invalid_request(f"Cannot delete the main session ({key}).")
    if params.get("archivedOnly"):
        entry = yield gateway.sessions.get(key)
        if entry is not None and not entry.get("archived"):
            raise invalid_request(f"Session {key} is not archived.")
    if gateway.runs.has_activity(key):
        gateway.runs.abort(key, reason="session-deleted")
        active = gateway.runs.active_run(key)
        if active is not None:
            yield _finished_within(gateway, active, DELETE_ACTIVE_WAIT_S, key)
    try:
        deleted, archived = yield gateway.sessions.delete(
            key, gateway.now_ms(), params.get("deleteTranscript", True) is not False, expect=_expectations(params)
        )
    except SessionConflict as exc:
        raise _conflict(exc) from None
    if deleted:
        gateway.sessions_changed(key, reason="delete")
    return {"ok": True, "key": key, "deleted": deleted, "archived": archived}


def _finished_within(gateway: Any, run: Any, seconds: float, key: str) -> Any:
    """Wait for an aborted run to wind down, failing with UNAVAILABLE if it does not."""
    def still_active(failure: Any) -> None:
        raise GatewayError(UNAVAILABLE, f"Session {key} is still active; try again in a moment.", retryable=True)

    return run.when_finished().addTimeout(seconds, gateway.clock).addErrback(still_active)


@inlineCallbacks
def sessions_compact(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    key = gateway.session_key(params["key"], params.get("agentId"))
    max_lines = params.get("maxLines") or COMPACT_DEFAULT_LINES
    try:
        outcome = yield gateway.sessions.compact(key, max_lines, gateway.now_ms())
    except SessionNotFound:
        return {"ok": True, "key": key, "compacted": False, "reason": "no sessionId"}
    if outcome.get("compacted"):
        gateway.sessions_changed(key, reason="compact")
    return {"ok": True, "key": key, **outcome}


def sessions_subscribe(ctx: RequestContext) -> dict[str, Any]:
    """Opt in to ``sessions.changed`` events on this connection."""
    ctx.client.subscriptions.add(SESSIONS_TOPIC)
    return {"subscribed": True}


def sessions_unsubscribe(ctx: RequestContext) -> dict[str, Any]:
    ctx.client.subscriptions.discard(SESSIONS_TOPIC)
    return {"subscribed": False}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("sessions.subscribe", sessions_subscribe, scope=READ),
        MethodSpec("sessions.unsubscribe", sessions_unsubscribe, scope=READ),
        MethodSpec("sessions.list", sessions_list, scope=READ),
        MethodSpec("sessions.preview", sessions_preview, scope=READ),
        MethodSpec("sessions.resolve", sessions_resolve, scope=READ, advertised=False),
        MethodSpec("sessions.patch", sessions_patch, scope=patch_scope),
        MethodSpec("sessions.reset", sessions_reset, scope=ADMIN),
        MethodSpec("sessions.delete", sessions_delete, scope=delete_scope),
        MethodSpec("sessions.compact", sessions_compact, scope=ADMIN),
    ]
