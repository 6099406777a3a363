"""``node.*``: the registry, pairing, ``node.invoke`` and what nodes send back (protocol §9.4).

Command policy for ``node.invoke`` lives in ``openclaw.nodes.policy`` (platform allowlists, the
approved surface, ``gateway.nodes.commands.allow/deny``); ``system.run`` passes the exec approval
gate (``openclaw.approvals.system_run``). What nodes publish about themselves is in
``node_side``.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Iterable, Mapping

import orjson
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed

from ..agents.dedupe import fingerprint as input_digest
from ..agents.dedupe import outcome_of
from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, PAIRING, READ, WRITE
from ..approvals.system_run import forward_system_run
from ..services.node_pairing import normalize_list
from ..nodes import policy as node_policy
from ..nodes import surface as node_surface
from ..state.nodes import DEFAULT_INVOKE_TIMEOUT_MS, node_metadata
from ..stores.devices import PairedDevice
from .registry import ROLE_NODE, MethodSpec, RequestContext

REPLAY_GRACE_S = 5.0  # beyond the invoke's own timeout, for its outcome to reach this instance

SHOWN_FIELDS = ("displayName", "platform", "version", "coreVersion", "uiVersion", "clientId", "clientMode", "deviceFamily", "modelIdentifier", "remoteIp")
LIVE_FIELDS = frozenset(SHOWN_FIELDS)


def approval_state(ctx: RequestContext, node_id: str, paired: Mapping[str, Any] | None) -> str:
    """The reference's four states of a node's command surface."""
    pending = ctx.gateway.node_pairing.store.pending_for(node_id) is not None
    if pending:
        return "pending-reapproval" if paired else "pending-approval"
    return "approved" if paired else "unapproved"


def _node_device(ctx: RequestContext, node_id: str) -> PairedDevice | None:
    """The node's paired *device* (role ``node``), which may exist before its surface is approved."""
    device = ctx.gateway.pairing.store.paired(node_id)
    return device if device is not None and "node" in device.roles else None


def _pending_fields(pending: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a waiting request declares, so an operator sees what ``nodes approve`` would grant."""
    if pending is None:
        return {}
    fields = {"pendingRequestId": pending["requestId"], "pendingDeclaredCaps": list(pending.get("caps", [])), "pendingDeclaredCommands": list(pending.get("commands", []))}
    if pending.get("permissions"):
        fields["pendingDeclaredPermissions"] = dict(pending["permissions"])
    return fields


def node_row(ctx: RequestContext, node_id: str) -> dict[str, Any]:
    """Stored and live facts about one node, in the reference's shape; live values win.

    ``commands`` are the node's *effective* commands: declared, approved and allowed. As in the
    reference, a node is ``paired`` once its device is (a loopback node host's is paired
    silently), even while its command surface waits for ``nodes approve``.
    """
    gateway = ctx.gateway
    stored = gateway.node_pairing.store.paired(node_id)
    device = _node_device(ctx, node_id)
    pending = gateway.node_pairing.store.pending_for(node_id)
    live = gateway.nodes.get(node_id)
    row: dict[str, Any] = {"nodeId": node_id}
    # Stored facts win over the device's, which win over what a waiting request said.
    sources = (pending or {}, device.to_wire() if device is not None else {}, stored or {})
    record = {key: value for source in sources for key, value in source.items() if key in SHOWN_FIELDS}
    approved_at = (stored or {}).get("approvedAtMs", device.approved_at_ms if device is not None else None)
    for key in SHOWN_FIELDS:
        if record.get(key) is not None:
            row[key] = record[key]
    row["caps"] = list((stored or {}).get("caps", []))
    row["commands"] = list((stored or {}).get("commands", []))
    # This gateway does not place agent sessions on nodes, whatever a node host offers.
    row["sessionHost"] = False
    if live is not None:
        _add_live(row, gateway, live, stored)
    row["approvalState"] = approval_state(ctx, node_id, stored)
    row.update(_pending_fields(pending))
    if live is not None:
        row["connectedAtMs"] = live.connected_at_ms
    last_connected = live.connected_at_ms if live is not None else (stored or {}).get("lastConnectedAtMs")
    if last_connected is not None:
        row["lastConnectedAtMs"] = last_connected
    if live is not None:
        row["lastSeenAtMs"] = live.last_seen_at_ms
        row["lastSeenReason"] = live.last_seen_reason
    elif device is not None and device.last_seen_at_ms is not None:
        row["lastSeenAtMs"] = device.last_seen_at_ms
        row["lastSeenReason"] = device.last_seen_reason or "connect"
    if approved_at is not None:
        row["approvedAtMs"] = approved_at
    row.update({"paired": stored is not None or device is not None, "connected": live is not None})
    return row


def _add_live(row: dict[str, Any], gateway: Any, live: Any, stored: Mapping[str, Any] | None) -> None:
    metadata = node_metadata(live.client)
    renamed = bool((stored or {}).get("renamed"))
    row.update({key: value for key, value in metadata.items() if key in LIVE_FIELDS and value is not None and not (renamed and key == "displayName")})
    # Like commands, the caps a node has are the declared ones its approved surface grants.
    approved_caps = set((stored or {}).get("caps", ()))
    row["caps"] = [cap for cap in normalize_list(live.client.caps) if cap in approved_caps]
    row["commands"] = node_policy.effective(gateway.current_config(), metadata, stored.get("commands") if stored else None)
    if live.client.permissions:
        row["permissions"] = dict(live.client.permissions)
    if "hostStats" in live.published:
        row["hostStats"] = live.published["hostStats"]
    row["nodePluginTools"] = list(live.published.get("pluginTools", []))
    if live.client.path_env is not None:
        row["pathEnv"] = live.client.path_env


def _sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    name = (row.get("displayName") or row["nodeId"]).lower()
    return (not row["connected"], name, row["nodeId"])


def known_node_ids(ctx: RequestContext) -> set[str]:
    """Every node the gateway knows of: approved surfaces, node devices, waiting requests, live nodes."""
    gateway = ctx.gateway
    ids = {record["nodeId"] for record in gateway.node_pairing.store.all_paired()}
    ids.update(device.device_id for device in gateway.pairing.store.all_paired() if "node" in device.roles)
    ids.update(request["nodeId"] for request in gateway.node_pairing.store.all_pending())
    ids.update(node.node_id for node in gateway.nodes.all())
    return ids


PENDING_FIELDS = ("pendingRequestId", "pendingDeclaredCaps", "pendingDeclaredCommands", "pendingDeclaredPermissions")


def _as_seen_by(ctx: RequestContext, row: dict[str, Any]) -> dict[str, Any] | None:
    """As in the reference, what waits for approval is shown only to those who may approve it
    (``operator.pairing`` or admin): others see neither the pending fields (a node sees its own
    request id) nor nodes that are only a request."""
    if ctx.client.scopes & {ADMIN, PAIRING}:
        return row
    if not row["paired"] and not row["connected"]:
        return None
    own = row["nodeId"] == ctx.client.device_id
    return {key: value for key, value in row.items() if key not in PENDING_FIELDS or (own and key == "pendingRequestId")}


def _visible_rows(ctx: RequestContext, node_ids: Iterable[str]) -> list[dict[str, Any]]:
    rows = (_as_seen_by(ctx, node_row(ctx, node_id)) for node_id in node_ids)
    return [row for row in rows if row is not None]


def node_list(ctx: RequestContext) -> dict[str, Any]:
    return {"ts": ctx.gateway.now_ms(), "nodes": sorted(_visible_rows(ctx, known_node_ids(ctx)), key=_sort_key)}


def _is_known(ctx: RequestContext, node_id: str) -> bool:
    gateway = ctx.gateway
    store = gateway.node_pairing.store
    return any((store.paired(node_id), _node_device(ctx, node_id), store.pending_for(node_id), gateway.nodes.get(node_id)))


def node_describe(ctx: RequestContext) -> dict[str, Any]:
    node_id = ctx.params["nodeId"]
    rows = _visible_rows(ctx, [node_id]) if _is_known(ctx, node_id) else []
    if not rows:
        raise invalid_request("unknown nodeId")
    return {"ts": ctx.gateway.now_ms(), **rows[0]}


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
    # A node connected to another cluster instance is checked there, against that instance's
    # view of its pairing (openclaw/cluster/bus.py).
    approved = gateway.node_pairing.store.paired(node_id)
    routed = getattr(node, "routed", False)
    if not routed:
        node_surface.refuse_unless_approved(gateway.node_pairing.store, node_id)
    refusal = None if routed else node_policy.refusal(gateway.current_config(), node_metadata(node.client), approved.get("commands") if approved else None, command)
    if refusal is not None:
        raise invalid_request(refusal[1], {"reason": refusal[0], "command": command})
    forwarded = params.get("params")
    if command == "system.run":
        forwarded = forward_system_run(forwarded, node_id, ctx.client, gateway.exec_approvals.records)
    timeout_ms = DEFAULT_INVOKE_TIMEOUT_MS if deadline_ms is None else deadline_ms - gateway.now_ms()
    if timeout_ms <= 0:
        raise node_error({"error": {"code": "TIMEOUT", "message": "node invoke timed out"}}, dispatched=False)
    extra = {"sessionKey": params["sessionKey"]} if params.get("sessionKey") else {}
    digest = input_digest([command, params.get("params")])
    elsewhere = yield gateway.dedupe.claim(cache_key, digest)
    if elsewhere is not None:
        result = yield _replay(gateway, cache_key, (command, params.get("params")), digest, elsewhere, timeout_ms)
        return result
    shared = SharedOutcome(maybeDeferred(gateway.nodes.invoke, node, command, forwarded, timeout_ms, params["idempotencyKey"], extra))
    gateway.dedupe.put(cache_key, ((command, params.get("params")), shared))
    shared.when_done().addCallback(lambda done: gateway.dedupe.complete(cache_key, digest, done.value, done.error))
    outcome = yield shared.when_done()
    return outcome.unwrap()


@inlineCallbacks
def _replay(gateway: Any, cache_key: str, request: tuple[Any, Any], digest: str, record: dict[str, Any], timeout_ms: int) -> Any:
    """The outcome of an invoke with this key taken first by another request: on this instance
    (its shared outcome), or on another instance (its record in the cluster)."""
    previous = gateway.dedupe.get(cache_key)
    if previous is not None:
        if previous[0] != request:
            raise invalid_request("idempotencyKey was already used for a different invoke")
        outcome = yield previous[1].when_done()
        return outcome.unwrap()
    if record.get("fp") != digest:
        raise invalid_request("idempotencyKey was already used for a different invoke")
    finished = yield gateway.dedupe.wait(cache_key, record, timeout_ms / 1000.0 + REPLAY_GRACE_S)
    return outcome_of(finished)


class SharedOutcome:
    """One invoke's outcome for every request that carries the same idempotency key."""

    def __init__(self, d: Any):
        self._value: Any = None
        self._error: GatewayError | None = None
        self._done = False
        self._waiters: list[Deferred[SharedOutcome]] = []
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

    def when_done(self) -> Deferred[SharedOutcome]:
        if self._done:
            return succeed(self)
        d: Deferred[SharedOutcome] = Deferred()
        self._waiters.append(d)
        return d

    @property
    def value(self) -> Any:
        return self._value

    @property
    def error(self) -> GatewayError | None:
        return self._error

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


def node_pair_list(ctx: RequestContext) -> dict[str, Any]:
    return ctx.gateway.node_pairing.list()


def node_pair_approve(ctx: RequestContext) -> Any:
    return ctx.gateway.node_pairing.approve(ctx.params["requestId"], ctx.client.scopes)


def node_pair_reject(ctx: RequestContext) -> Any:
    return ctx.gateway.node_pairing.reject(ctx.params["requestId"])


@inlineCallbacks
def node_pair_remove(ctx: RequestContext) -> Any:
    """Forget the node's approved surface and its device's ``node`` role, as the reference does:
    a node that stayed device-paired would still be listed as paired."""
    node_id = ctx.params["nodeId"]
    gateway = ctx.gateway
    result = yield gateway.node_pairing.remove(node_id, device_paired=_node_device(ctx, node_id) is not None)
    yield gateway.pairing.remove_role(node_id, "node")
    return result


@inlineCallbacks
def node_pair_request(ctx: RequestContext) -> Any:
    """The brief's explicit request (the reference removed it in 2026.7; kept for older nodes)."""
    request, created = yield ctx.gateway.node_pairing.request(ctx.params, silent=bool(ctx.params.get("silent")), lapses=True)
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
