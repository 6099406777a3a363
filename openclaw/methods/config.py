"""``config.get``, ``config.schema``, ``config.schema.lookup``, ``config.set``, ``config.patch``,
``config.apply`` (protocol §9.5, http spec §4).

Secrets never leave: ``config.get`` shows them as ``__OPENCLAW_REDACTED__`` in the object and
in the raw text, and a write that sends the sentinel back keeps the stored secret. A value taken
from ``${VAR}`` is shown as written, never expanded, in ``config`` as in ``raw`` and ``parsed``. Writes are
optimistic: once the file exists, ``baseHash`` (the ``hash`` from ``config.get``) is required and
must still match. A write is persisted atomically and then goes through the same reload path as
an edit of the file (hot apply or in-process restart, per ``gateway.reload.mode``).
"""
from __future__ import annotations

import json
from typing import Any
from collections.abc import Mapping

from twisted.internet.defer import inlineCallbacks

from ..config import snapshot as config_snapshot
from ..config.loader import ConfigError
from ..config.parsing import parse_config_text, too_large
from ..config.redaction import SentinelError, redact, redact_raw, restore, restore_raw
from ..config.reload_plan import classify, diff_paths
from ..config.accepted import cached_accepted_schema
from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..protocol.text_checks import UnusableText
from ..security.scopes import ADMIN, READ
from .registry import MethodSpec, RequestContext

SCHEMA_VERSION = 1


def _control(ctx: RequestContext) -> Any:
    control = ctx.gateway.config_control
    if control is None:
        raise GatewayError(UNAVAILABLE, "config management is not available: the gateway runs without a config file path")
    return control


def _redacted_view(snapshot: config_snapshot.ConfigSnapshot) -> dict[str, Any]:
    view: dict[str, Any] = {
        "path": snapshot.path,
        "exists": snapshot.exists,
        "valid": snapshot.valid,
        "hash": snapshot.hash,
        "issues": [issue.to_wire() for issue in snapshot.issues],
        "warnings": [],
    }
    if snapshot.valid and snapshot.raw is not None:
        view.update(
            raw=redact_raw(snapshot.raw, snapshot.parsed),
            parsed=redact(snapshot.parsed),
            config=redact(snapshot.shown),
        )
    else:
        view.update(raw=None, parsed=None, config={})
    return view


@inlineCallbacks
def config_get(ctx: RequestContext) -> Any:
    control = _control(ctx)
    snapshot = yield control.read_current()
    # Redacting scans the whole text: on the file thread, like the read (the file may be large).
    return (yield control.off_thread(_redacted_view, snapshot))


def config_schema(ctx: RequestContext) -> dict[str, Any]:
    # Everything a file may hold (the reference's keys with this gateway's merged in).
    return {"schema": cached_accepted_schema(), "uiHints": {}, "version": SCHEMA_VERSION, "generatedAt": None}


def config_schema_lookup(ctx: RequestContext) -> dict[str, Any]:
    path = ctx.params["path"]
    node: Any = cached_accepted_schema()
    for part in path.split("."):
        properties = node.get("properties", {}) if isinstance(node, dict) else {}
        if part in properties:
            node = properties[part]
        elif isinstance(node, dict) and isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            raise invalid_request("config schema path not found")
    children = [
        {"key": name, "path": f"{path}.{name}", "type": child.get("type"), "reload": classify(f"{path}.{name}")}
        for name, child in (node.get("properties") or {}).items()
    ]
    schema = {key: value for key, value in node.items() if key != "properties"}
    return {"path": path, "schema": schema, "reload": classify(path), "children": children}


def _check_base_hash(current: config_snapshot.ConfigSnapshot, base_hash: str | None) -> None:
    if not current.exists:
        return
    if not base_hash:
        raise invalid_request("config base hash required; re-run config.get and retry")
    if base_hash != current.hash:
        raise invalid_request("config changed since last load; re-run config.get and retry")


def _check_size(raw: str, method: str) -> None:
    reason = too_large(raw)
    if reason is not None:
        raise invalid_request(f"invalid {method} params: raw is too large: {reason}")


def _parsed(raw: str, method: str) -> dict[str, Any]:
    """``raw`` as an object (on the file thread: JSON5 text may take a while)."""
    try:
        document = parse_config_text(raw)
    except UnusableText as exc:
        raise invalid_request(f"invalid {method} params: raw {exc}") from None
    except ValueError as exc:
        raise invalid_request(f"invalid {method} params: raw is not valid JSON5: {exc}") from None
    if not isinstance(document, dict):
        raise invalid_request(f"{method} raw must be an object")
    return document


def _rejected(snapshot: config_snapshot.ConfigSnapshot) -> GatewayError:
    return invalid_request(
        f"invalid config: {snapshot.issue_summary()}", {"issues": [issue.to_wire() for issue in snapshot.issues]}
    )


@inlineCallbacks
def _write(ctx: RequestContext, text: str, document: Any, restart_delay_ms: int = 0) -> Any:
    """Validate, persist, and run the new file through the reloader; fires with (snapshot, plan)."""
    control = _control(ctx)
    try:
        written = yield control.write(text, document)
    except ConfigError as exc:
        raise invalid_request(str(exc)) from None
    if not written.valid:
        raise _rejected(written)
    plan = control.consider(written, restart_delay_ms)
    if getattr(control, "on_written", None) is not None:
        control.on_written(text)
    return written, plan


def _replacement(raw: str, method: str, current: config_snapshot.ConfigSnapshot) -> tuple[str, Any]:
    """For set and apply (file thread): the text to write, with the stored secrets put back, parsed."""
    parsed = _parsed(raw, method)
    stored = current.parsed or {}
    try:
        return restore_raw(raw, parsed, stored), restore(parsed, stored)
    except SentinelError as exc:
        raise invalid_request(str(exc)) from None


@inlineCallbacks
def _replacement_text(ctx: RequestContext, method: str) -> Any:
    """For set and apply: check the size and ``baseHash``, then parse and restore off the reactor."""
    params = ctx.params
    _check_size(params["raw"], method)
    control = _control(ctx)
    current = yield control.read_current()
    _check_base_hash(current, params.get("baseHash"))
    return (yield control.off_thread(_replacement, params["raw"], method, current))


@inlineCallbacks
def config_set(ctx: RequestContext) -> Any:
    text, document = yield _replacement_text(ctx, "config.set")
    written, _ = yield _write(ctx, text, document)
    return {"ok": True, "path": written.path, "hash": written.hash, "config": redact(written.shown)}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge, ``null`` deletes, anything else (arrays included) replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _patched(raw: str, current: config_snapshot.ConfigSnapshot) -> tuple[Any, list[str], str | None]:
    """On the file thread: the merged document, the changed paths, and the text to write (None: no change)."""
    base = current.parsed or {}
    try:
        patch = restore(_parsed(raw, "config.patch"), base)
    except SentinelError as exc:
        raise invalid_request(str(exc)) from None
    merged = merge_patch(base, patch)
    changed = diff_paths(base, merged)
    if not changed:
        return merged, [], None
    text = json.dumps(merged, indent=2, ensure_ascii=False) + "\n"
    reason = too_large(text)
    if reason is not None:
        raise invalid_request(f"invalid config.patch params: the patched config would be too large: {reason}")
    return merged, changed, text


@inlineCallbacks
def config_patch(ctx: RequestContext) -> Any:
    params = ctx.params
    _check_size(params["raw"], "config.patch")
    control = _control(ctx)
    current = yield control.read_current()
    _check_base_hash(current, params.get("baseHash"))
    if current.exists and not current.valid:
        raise invalid_request(f"{current.issue_summary()}; fix the config file before patching")
    merged, changed, text = yield control.off_thread(_patched, params["raw"], current)
    if text is None:
        return {"ok": True, "noop": True, "changedPaths": [], "path": current.path, "config": redact(current.shown)}
    written, plan = yield _write(ctx, text, merged, params.get("restartDelayMs") or 0)
    return {
        "ok": True,
        "path": written.path,
        "hash": written.hash,
        "config": redact(written.shown),
        "changedPaths": changed,
        "restart": bool(plan and plan.restart),
    }


@inlineCallbacks
def config_apply(ctx: RequestContext) -> Any:
    text, document = yield _replacement_text(ctx, "config.apply")
    written, plan = yield _write(ctx, text, document, ctx.params.get("restartDelayMs") or 0)
    return {
        "ok": True,
        "path": written.path,
        "hash": written.hash,
        "config": redact(written.shown),
        "restart": bool(plan and plan.restart),
    }


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("config.get", config_get, scope=READ),
        MethodSpec("config.schema", config_schema, scope=READ),
        MethodSpec("config.schema.lookup", config_schema_lookup, scope=READ),
        MethodSpec("config.set", config_set, scope=ADMIN),
        MethodSpec("config.patch", config_patch, scope=ADMIN),
        MethodSpec("config.apply", config_apply, scope=ADMIN),
    ]
