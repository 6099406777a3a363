"""The ``system.run`` gate: approval flags reach a node only behind a real approval record.

A node host asks for approval itself when its policy says so, unless the invoke carries
``approved: true`` / ``approvalDecision``. Forwarding those flags as sent would let anyone with
``operator.write`` skip the node's approvals, so the gateway forwards only the fields
``system.run`` uses, and adds the approval flags back only when ``params.runId`` names an
approval that was decided ``allow-once`` (used once) or ``allow-always`` by an operator, for
this node, asked for by this same device (or connection), for exactly this command. Every other
case is refused with the reference's ``details.code``. A run without approval flags gets a
gateway-issued ``runId``.
"""
from __future__ import annotations

import uuid
from typing import Any
from collections.abc import Mapping

from ..protocol.errors import GatewayError, invalid_request
from ..state.clients import ConnectedClient
from .records import ApprovalRecords
from .service import env_hash

FORWARDED_FIELDS = (
    "command",
    "rawCommand",
    "systemRunPlan",
    "cwd",
    "env",
    "timeoutMs",
    "needsScreenRecording",
    "agentId",
    "sessionKey",
    "runId",
    "suppressNotifyOnExit",
)
OVERRIDE_DECISIONS = ("allow-once", "allow-always")


def refused(code: str, message: str, run_id: str | None = None) -> GatewayError:
    details: dict[str, Any] = {"code": code}
    if run_id is not None:
        details["runId"] = run_id
    return invalid_request(message, details)


def approval_required(run_id: str) -> GatewayError:
    return refused("APPROVAL_REQUIRED", "approval required", run_id)


def forward_system_run(params: Any, node_id: str, client: ConnectedClient, records: ApprovalRecords) -> Any:
    """The params to send the node, or raise the refusal."""
    if not isinstance(params, Mapping):
        return params
    forwarded = {key: params[key] for key in FORWARDED_FIELDS if key in params}
    source = params.get("approvalSource")
    if source is not None and source != "ask-fallback":
        raise refused("INVALID_APPROVAL_SOURCE", "approval source invalid")
    if source is not None and ("approved" in params or "approvalDecision" in params):
        raise refused("APPROVAL_SOURCE_MISMATCH", "approval source cannot be combined with explicit approval")
    wants_override = params.get("approved") is True or params.get("approvalDecision") in OVERRIDE_DECISIONS or source is not None
    if not wants_override:
        if not str(forwarded.get("runId") or "").strip():
            forwarded["runId"] = str(uuid.uuid4())
        return forwarded
    run_id = str(params.get("runId") or "").strip()
    if not run_id:
        raise refused("MISSING_RUN_ID", "approval override requires params.runId")
    record = records.get(run_id)
    if record is None:
        raise refused("UNKNOWN_APPROVAL_ID", "unknown or expired approval id", run_id)
    request = record.request
    if not request.get("nodeId"):
        raise refused("APPROVAL_NODE_BINDING_MISSING", "approval id missing node binding", run_id)
    if request["nodeId"] != node_id:
        raise refused("APPROVAL_NODE_MISMATCH", "approval id not valid for this node", run_id)
    if record.requested_by_device_id:
        if record.requested_by_device_id != client.device_id:
            raise refused("APPROVAL_DEVICE_MISMATCH", "approval id not valid for this device", run_id)
    elif record.requested_by_conn_id and record.requested_by_conn_id != client.conn_id:
        raise refused("APPROVAL_CLIENT_MISMATCH", "approval id not valid for this client", run_id)
    _check_match(params, request, run_id)
    plan = request["systemRunPlan"]
    forwarded.update({"command": list(plan["argv"]), "systemRunPlan": plan, "rawCommand": plan.get("commandText"), "runId": run_id})
    for field in ("cwd", "agentId", "sessionKey"):
        if plan.get(field):
            forwarded[field] = plan[field]
        else:
            forwarded.pop(field, None)
    if source is not None or record.decision not in OVERRIDE_DECISIONS:
        raise approval_required(run_id)
    if record.decision == "allow-once" and not records.consume_allow_once(record):
        raise approval_required(run_id)
    forwarded["approved"] = True
    forwarded["approvalDecision"] = record.decision
    return forwarded


def _check_match(params: Mapping[str, Any], request: Mapping[str, Any], run_id: str) -> None:
    """What runs must be what was approved: argv, cwd, agent, session and env."""
    binding = request.get("systemRunBinding")
    if request.get("host") != "node" or not binding:
        raise refused("APPROVAL_REQUEST_MISMATCH", "approval id does not match request", run_id)
    command = params.get("command")
    mismatched = (
        (isinstance(command, list) and command != binding["argv"])
        or (isinstance(command, str) and command != request.get("command"))
        or (params.get("cwd") and params["cwd"] != binding["cwd"])
        or (params.get("agentId") and params["agentId"] != binding["agentId"])
        or (params.get("sessionKey") and params["sessionKey"] != binding["sessionKey"])
        or env_hash(params.get("env")) != binding["envHash"]
    )
    if mismatched:
        raise refused("APPROVAL_REQUEST_MISMATCH", "approval id does not match request", run_id)
