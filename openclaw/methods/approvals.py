"""``exec.approval.*`` (ask for, list, decide and wait on exec approvals) and ``exec.approvals.*``
(the exec policy files: the gateway's own, and a node's through its ``system.execApprovals.*``).

Scopes as in the reference: the approval records need ``operator.approvals``; the policy files
need ``operator.admin``. Standing grants (``exec.approval.grants.*``) come from cron jobs, which
this gateway does not run, so there are truthfully none.
"""
from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import inlineCallbacks

from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, APPROVALS
from ..state.nodes import DEFAULT_INVOKE_TIMEOUT_MS
from .registry import MethodSpec, RequestContext


def approval_request(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals.request(ctx.client, ctx.params, ctx.send_interim)


def approval_list(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals.visible_pending(ctx.client)


def approval_get(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals.get(ctx.params["id"], ctx.client)


def approval_resolve(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals.resolve(ctx.params["id"], ctx.params["decision"], ctx.client)


def approval_wait(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals.wait_decision(ctx.params.get("id") or "", ctx.client)


def any_get(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals.snapshot_of(ctx.params["id"], ctx.client)


def any_resolve(ctx: RequestContext) -> Any:
    params = ctx.params
    return ctx.gateway.exec_approvals.resolve_any(params["id"], params["kind"], params["decision"], ctx.client)


def any_history(ctx: RequestContext) -> Any:
    params = ctx.params
    return ctx.gateway.exec_approvals.history(ctx.client, params.get("cursor"), params.get("limit") or 50, params.get("kind"))


def approvals_get(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals_file.get()


def approvals_set(ctx: RequestContext) -> Any:
    return ctx.gateway.exec_approvals_file.set(ctx.params["file"], ctx.params.get("baseHash"))


@inlineCallbacks
def _node_call(ctx: RequestContext, command: str, params: dict[str, Any]) -> Any:
    """Relay to the node's own approvals command; the node's answer is the result."""
    from .nodes import invoke_response, node_error

    gateway = ctx.gateway
    node_id = ctx.params["nodeId"]
    node = gateway.nodes.get(node_id)
    if node is None:
        raise GatewayError(UNAVAILABLE, "node not connected", {"code": "NOT_CONNECTED"})
    if command not in node.client.commands:
        raise GatewayError(UNAVAILABLE, f"node does not support {command}", {"code": "UNSUPPORTED", "command": command})
    result = yield gateway.nodes.invoke(node, command, params, DEFAULT_INVOKE_TIMEOUT_MS, str(uuid.uuid4()), {})
    if not result.get("ok"):
        raise node_error(result, dispatched=True)
    return invoke_response(node_id, command, result)["payload"]


def node_approvals_get(ctx: RequestContext) -> Any:
    return _node_call(ctx, "system.execApprovals.get", {})


def node_approvals_set(ctx: RequestContext) -> Any:
    """Exactly one owner is written: the node's ``file``, or its ``native`` rules (with ``baseHash``)."""
    if ("file" in ctx.params) == ("native" in ctx.params):
        raise invalid_request("exec.approvals.node.set needs exactly one of file or native")
    if "native" in ctx.params and "baseHash" not in ctx.params:
        raise invalid_request("exec.approvals.node.set with native needs baseHash")
    params = {key: ctx.params[key] for key in ("file", "native", "baseHash") if key in ctx.params}
    return _node_call(ctx, "system.execApprovals.set", params)


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("exec.approval.request", approval_request, scope=APPROVALS),
        MethodSpec("exec.approval.list", approval_list, scope=APPROVALS),
        MethodSpec("exec.approval.get", approval_get, scope=APPROVALS),
        MethodSpec("exec.approval.resolve", approval_resolve, scope=APPROVALS),
        MethodSpec("exec.approval.waitDecision", approval_wait, scope=APPROVALS),
        MethodSpec("exec.approval.grants.list", lambda ctx: {"grants": []}, scope=APPROVALS),
        MethodSpec("exec.approval.grants.revoke", lambda ctx: {"outcome": "not-found"}, scope=APPROVALS),
        MethodSpec("approval.get", any_get, scope=APPROVALS),
        MethodSpec("approval.resolve", any_resolve, scope=APPROVALS),
        MethodSpec("approval.history", any_history, scope=APPROVALS),
        MethodSpec("exec.approvals.get", approvals_get, scope=ADMIN),
        MethodSpec("exec.approvals.set", approvals_set, scope=ADMIN),
        MethodSpec("exec.approvals.node.get", node_approvals_get, scope=ADMIN),
        MethodSpec("exec.approvals.node.set", node_approvals_set, scope=ADMIN),
    ]
