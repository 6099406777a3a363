"""``node.*``: the registry, pairing, ``node.invoke`` and what nodes send back (protocol §9.4).

Command policy for ``node.invoke``: the connected node must declare the command, its approved
pairing surface must include it, ``gateway.nodes.commands.deny`` always wins, and the commands
the reference treats as dangerous (camera capture, SMS, …) also need an explicit
``gateway.nodes.commands.allow`` entry.
"""
from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from ..config.loader import lookup
from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, PAIRING, READ, WRITE
from ..approvals.system_run import forward_system_run
from ..services.node_pairing import normalize_list
from ..state.nodes import DEFAULT_INVOKE_TIMEOUT_MS
from .registry import ROLE_NODE, MethodSpec, RequestContext

NEEDS_EXPLICIT_ALLOW = frozenset(
    (
        "camera.snap",
        "camera.clip",
        "camera.ptz.control",
        "screen.record",
        "contacts.add",
        "calendar.add",
        "reminders.add",
        "health.summary",
        "sms.send",
        "sms.search",
    )
)


def node_row(ctx: RequestContext, node_id: str) -> dict[str, Any]:
    """Stored and live facts about one node; live values win."""
    gateway = ctx.gateway
    stored = gateway.node_pairing.store.paired(node_id) or {}
    live = gateway.nodes.get(node_id)
    row: dict[str, Any] = {key: value for key, value in stored.items() if key not in ("token", "renamed")}
    row.update({"nodeId": node_id, "paired": bool(stored), "connected": live is not None})
    if live is not None:
        info = live.client.client
        row.update(
            {
                key: value
                for key, value in {
                    "displayName": stored.get("displayName") if stored.get("renamed") else info.get("displayName") or stored.get("displayName"),
                    "platform": info.get("platform"),
                    "version": info.get("version"),
                    "deviceFamily": info.get("deviceFamily"),
                    "modelIdentifier": info.get("modelIdentifier"),
                    "remoteIp": live.client.remote_ip,
                }.items()
                if value is not None
            }
        )
        row["caps"] = normalize_list(live.client.caps)
        row["commands"] = normalize_list(live.client.commands)
        row["permissions"] = dict(live.client.permissions)
        row["connectedAtMs"] = live.connected_at_ms
        row["lastSeenAtMs"] = live.last_seen_at_ms
    row.setdefault("caps", [])
    row.setdefault("commands", [])
    return row


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    name = (row.get("displayName") or row["nodeId"]).lower()
    return (not row["connected"], name, row["nodeId"])


def node_list(ctx: RequestContext) -> dict[str, Any]:
    gateway = ctx.gateway
    ids = {record["nodeId"] for record in gateway.node_pairing.store.all_paired()} | {node.node_id for node in gateway.nodes.all()}
    return {"ts": gateway.now_ms(), "nodes": sorted((node_row(ctx, node_id) for node_id in ids), key=_sort_key)}


def node_describe(ctx: RequestContext) -> dict[str, Any]:
    node_id = ctx.params["nodeId"]
    gateway = ctx.gateway
    if gateway.node_pairing.store.paired(node_id) is None and gateway.nodes.get(node_id) is None:
        raise invalid_request("unknown nodeId")
    return {"ts": gateway.now_ms(), **node_row(ctx, node_id)}


def node_rename(ctx: RequestContext) -> Any:
    return ctx.gateway.node_pairing.rename(ctx.params["nodeId"], ctx.params["displayName"])


# Commands that cross an admin-only host boundary when invoked directly (as in the reference);
# ``system.run`` and ``system.which`` need only ``operator.write``: the node's own exec approvals
# (and the gateway's approval gate below) guard them.
ADMIN_INVOKE_COMMANDS = frozenset(("browser.proxy", "browser.proxy.upload.v1", "fs.listDir", "terminal.upload"))
EXEC_APPROVALS_COMMANDS = frozenset(("system.execApprovals.get", "system.execApprovals.set"))


def invoke_scope(params: Any) -> str:
    command = params.get("command") if isinstance(params, dict) else None
    return ADMIN if isinstance(command, str) and command.strip() in ADMIN_INVOKE_COMMANDS else WRITE


def command_refusal(ctx: RequestContext, node_id: str, command: str, declared: list[str]) -> str | None:
    """Why ``command`` may not run on this node, or None."""
    config = ctx.gateway.current_config()
    deny = set(lookup(config, "gateway.nodes.commands.deny", []) or [])
    allow = set(lookup(config, "gateway.nodes.commands.allow", []) or [])
    if command in deny:
        return "denied-by-config"
    if command not in declared:
        return "not-declared"
    approved = (ctx.gateway.node_pairing.store.paired(node_id) or {}).get("commands", [])
    if command not in approved and command not in allow:
        return "not-approved"
    if command in NEEDS_EXPLICIT_ALLOW and command not in allow:
        return "needs-explicit-allow"
    return None


@inlineCallbacks
def node_invoke(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    node_id, command = params["nodeId"].strip(), params["command"].strip()
    if not node_id or not command:
        raise invalid_request("nodeId and command required")
    if command in EXEC_APPROVALS_COMMANDS:
        raise invalid_request("node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*", {"command": command})
    deadline_ms = gateway.now_ms() + params["timeoutMs"] if params.get("timeoutMs") else None
    cache_key = f"node.invoke:{node_id}:{params['idempotencyKey']}"
    previous = gateway.dedupe.get(cache_key)
    if previous is not None:
        if previous[0] != (command, params.get("params")):
            raise invalid_request("idempotencyKey was already used for a different invoke")
        outcome = yield previous[1].when_done()
        return outcome.unwrap()
    node = gateway.nodes.get(node_id)
    if node is None:
        raise GatewayError(UNAVAILABLE, "node not connected", {"code": "NOT_CONNECTED"})
    refusal = command_refusal(ctx, node_id, command, normalize_list(node.client.commands))
    if refusal is not None:
        raise invalid_request("node command not allowed", {"reason": refusal, "command": command})
    forwarded = params.get("params")
    if command == "system.run":
        forwarded = forward_system_run(forwarded, node_id, ctx.client, gateway.exec_approvals.records)
    timeout_ms = DEFAULT_INVOKE_TIMEOUT_MS if deadline_ms is None else deadline_ms - gateway.now_ms()
    if timeout_ms <= 0:
        raise node_error({"error": {"code": "TIMEOUT", "message": "node invoke timed out"}}, dispatched=False)
    extra = {"sessionKey": params["sessionKey"]} if params.get("sessionKey") else {}
    shared = SharedOutcome(gateway.nodes.invoke(node, command, forwarded, timeout_ms, params["idempotencyKey"], extra))
    gateway.dedupe.put(cache_key, ((command, params.get("params")), shared))
    outcome = yield shared.when_done()
    return outcome.unwrap()


class SharedOutcome:
    """One invoke's outcome for every request that carries the same idempotency key."""

    def __init__(self, d: Any):
        self._value: Any = None
        self._error: GatewayError | None = None
        self._done = False
        self._waiters: list[Any] = []
        d.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, result: dict[str, Any]) -> None:
        self._settle(result, None)

    def _failed(self, failure: Any) -> None:
        error = failure.value if isinstance(failure.value, GatewayError) else GatewayError(UNAVAILABLE, str(failure.value))
        self._settle(None, error)

    def _settle(self, value: Any, error: GatewayError | None) -> None:
        self._value, self._error, self._done = value, error, True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)

    def when_done(self) -> Any:
        if self._done:
            return succeed(self)
        d: Deferred = Deferred()
        self._waiters.append(d)
        return d

    def unwrap(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


def node_error(result: dict[str, Any], *, dispatched: bool) -> GatewayError:
    """A failed node answer as the reference reports it: ``CODE: message``, the node's error,
    and whether the command reached the node (so a caller knows whether it may have run)."""
    error = result.get("error") if isinstance(result.get("error"), dict) else None
    code = str((error or {}).get("code") or "").strip()
    message = str((error or {}).get("message") or "").strip() or "node invoke failed"
    return GatewayError(
        UNAVAILABLE, f"{code}: {message}" if code else message, {"nodeError": error, "nodeCommandDispatched": dispatched}
    )


def invoke_response(node_id: str, command: str, result: dict[str, Any]) -> dict[str, Any]:
    if not result.get("ok"):
        raise node_error(result, dispatched=True)
    payload_json = result.get("payloadJSON")
    payload = result.get("payload")
    if payload is None and isinstance(payload_json, str):
        try:
            payload = orjson.loads(payload_json)
        except orjson.JSONDecodeError:
            payload = None
    return {"ok": True, "nodeId": node_id, "command": command, "payload": payload, "payloadJSON": payload_json}


def node_invoke_result(ctx: RequestContext) -> dict[str, Any]:
    """A node answers only its own invokes (as in the reference), and late answers are ignored."""
    params = ctx.params
    gateway = ctx.gateway
    if params["nodeId"] != gateway.node_id_for(ctx.client):
        raise invalid_request("nodeId mismatch")
    if not gateway.nodes.result(params["nodeId"], params["id"], dict(params)):
        return {"ok": True, "ignored": True}
    return {"ok": True}


def node_event(ctx: RequestContext) -> dict[str, Any]:
    """Events a node reports go to operators holding read, as ``node.event``."""
    params = ctx.params
    gateway = ctx.gateway
    node = gateway.nodes.get(gateway.node_id_for(ctx.client))
    if node is not None:
        node.last_seen_at_ms = gateway.now_ms()
    payload: dict[str, Any] = {"nodeId": gateway.node_id_for(ctx.client), "event": params["event"], "ts": gateway.now_ms()}
    for field in ("payload", "payloadJSON"):
        if field in params:
            payload[field] = params[field]
    gateway.clients.broadcast("node.event", payload)
    return {"ok": True, "event": params["event"], "handled": True}


def node_pair_list(ctx: RequestContext) -> dict[str, Any]:
    return ctx.gateway.node_pairing.list()


def node_pair_approve(ctx: RequestContext) -> Any:
    return ctx.gateway.node_pairing.approve(ctx.params["requestId"], ctx.client.scopes)


def node_pair_reject(ctx: RequestContext) -> Any:
    return ctx.gateway.node_pairing.reject(ctx.params["requestId"])


def node_pair_remove(ctx: RequestContext) -> Any:
    return ctx.gateway.node_pairing.remove(ctx.params["nodeId"])


@inlineCallbacks
def node_pair_request(ctx: RequestContext) -> Any:
    """The brief's explicit request (the reference removed it in 2026.7; kept for older nodes)."""
    request, created = yield ctx.gateway.node_pairing.request(ctx.params, silent=bool(ctx.params.get("silent")))
    return {"status": "pending", "request": request, "created": created}


def node_pair_verify(ctx: RequestContext) -> dict[str, Any]:
    return ctx.gateway.node_pairing.verify(ctx.params["nodeId"], ctx.params["token"])


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("node.list", node_list, scope=READ),
        MethodSpec("node.describe", node_describe, scope=READ),
        MethodSpec("node.rename", node_rename, scope=PAIRING),
        MethodSpec("node.invoke", node_invoke_with_response, scope=invoke_scope),
        MethodSpec("node.invoke.result", node_invoke_result, role=ROLE_NODE, scope=None),
        MethodSpec("node.event", node_event, role=ROLE_NODE, scope=None),
        MethodSpec("node.pair.list", node_pair_list, scope=PAIRING),
        MethodSpec("node.pair.approve", node_pair_approve, scope=PAIRING),
        MethodSpec("node.pair.reject", node_pair_reject, scope=PAIRING),
        MethodSpec("node.pair.remove", node_pair_remove, scope=PAIRING),
        MethodSpec("node.pair.request", node_pair_request, scope=PAIRING, advertised=False),
        MethodSpec("node.pair.verify", node_pair_verify, scope=PAIRING, advertised=False),
    ]


@inlineCallbacks
def node_invoke_with_response(ctx: RequestContext) -> Any:
    result = yield node_invoke(ctx)
    return invoke_response(ctx.params["nodeId"].strip(), ctx.params["command"].strip(), result)
