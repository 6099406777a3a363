"""Exec approvals as operators see them: ask, show, decide, wait (``exec.approval.*``).

A request becomes an :class:`ApprovalRecord` bound to the asking client (connection, device,
client id). ``exec.approval.requested`` goes to the approval clients that may see it (see
``delivery``); if there are none, the request ends at once with no decision
(``no-approval-route``), because nobody could ever answer it. The decision (or the timeout)
goes out as ``exec.approval.resolved`` and answers the requester: at once in one-phase mode,
after an ``accepted`` interim response in two-phase mode.

For ``host: "node"`` the request must name the node and carry the ``systemRunPlan`` (from
``system.run.prepare``); the record keeps a binding of exactly what was approved (argv, cwd,
agent, session, env), which the ``system.run`` gate compares against what is finally run.
"""
from __future__ import annotations

import hashlib
import shlex
import uuid
from collections import OrderedDict
from typing import Any
from collections.abc import Callable, Mapping

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from ..protocol.errors import invalid_request
from ..state.clients import ClientRegistry, ConnectedClient
from .delivery import may_see, shows_exec_approvals
from .records import DECISIONS, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, NO_ROUTE, ApprovalRecord, ApprovalRecords, not_found

REQUEST_FIELDS = (
    "host",
    "security",
    "ask",
    "warningText",
    "scope",
    "resolvedPath",
    "sessionId",
    "runId",
    "toolCallId",
    "turnSourceChannel",
    "turnSourceTo",
    "turnSourceAccountId",
    "turnSourceThreadId",
)


def env_hash(env: Mapping[str, str] | None) -> str | None:
    """Env values are bound by hash: events show that an env was approved, not its secrets."""
    if not env:
        return None
    return hashlib.sha256(orjson.dumps(dict(env), option=orjson.OPT_SORT_KEYS)).hexdigest()


def run_binding(argv: list[str], cwd: Any, agent_id: Any, session_key: Any, env: Mapping[str, str] | None) -> dict[str, Any]:
    return {"argv": list(argv), "cwd": cwd or None, "agentId": agent_id or None, "sessionKey": session_key or None, "envHash": env_hash(env)}


def _command_text(params: Mapping[str, Any]) -> str | None:
    plan = params.get("systemRunPlan")
    if plan:
        return str(plan.get("commandText") or shlex.join(plan.get("argv") or []))
    if params.get("command"):
        return str(params["command"])
    if params.get("commandArgv"):
        return shlex.join(params["commandArgv"])
    return None


def project_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """The request as reviewers see it (and as ``exec.approval.list`` returns it)."""
    command = _command_text(params)
    if not command:
        raise invalid_request("command is required")
    host = params.get("host")
    plan = params.get("systemRunPlan")
    if host == "node" and not params.get("nodeId"):
        raise invalid_request("nodeId is required for host=node")
    if host == "node" and not plan:
        raise invalid_request("systemRunPlan is required for host=node")
    request: dict[str, Any] = {"command": command, "systemRunBinding": None, "systemRunPlan": plan or None}
    request["cwd"] = plan.get("cwd") if plan else params.get("cwd")
    request["nodeId"] = params.get("nodeId")
    for field in REQUEST_FIELDS:
        request[field] = params.get(field)
    request["agentId"] = plan.get("agentId") if plan else params.get("agentId")
    request["sessionKey"] = plan.get("sessionKey") if plan else params.get("sessionKey")
    unavailable = set(params.get("unavailableDecisions") or ())
    request["allowedDecisions"] = [decision for decision in DECISIONS if decision not in unavailable]
    if plan:
        request["systemRunBinding"] = run_binding(plan["argv"], plan.get("cwd"), plan.get("agentId"), plan.get("sessionKey"), params.get("env"))
    return request


STATUS_OF_DECISION = {"allow-once": "allowed", "allow-always": "allowed", "deny": "denied"}
MAX_HISTORY = 256


def snapshot(record: ApprovalRecord) -> dict[str, Any]:
    """The kind-agnostic view (``approval.get``/``resolve``/``history``), in the reference's shape."""
    request = record.request
    plan = request.get("systemRunPlan") or {}
    view: dict[str, Any] = {
        "id": record.id,
        "status": "pending" if record.pending else STATUS_OF_DECISION.get(record.decision or "", "expired"),
        "presentation": {
            "kind": "exec",
            "commandText": request["command"],
            "commandPreview": plan.get("commandPreview"),
            "warningText": request.get("warningText"),
            "host": request.get("host"),
            "nodeId": request.get("nodeId"),
            "agentId": request.get("agentId"),
            "allowedDecisions": request["allowedDecisions"],
        },
        "urlPath": f"/approve/{record.id}",
        "createdAtMs": record.created_at_ms,
        "expiresAtMs": record.expires_at_ms,
    }
    if record.terminal_reason == NO_ROUTE:
        # Nobody could be asked: the system denied it (the reference's "deny by
        # system:no-approval-route"), though the requester was answered with no decision.
        view.update({"status": "denied", "resolvedAtMs": record.resolved_at_ms, "reason": "no-route", "decision": "deny"})
        view.update({"source": {}, "resolver": {"kind": "system", "id": NO_ROUTE}})
    elif not record.pending:
        view.update({"resolvedAtMs": record.resolved_at_ms, "reason": record.terminal_reason})
        if record.decision is not None:
            view["decision"] = record.decision
        view["source"] = {}
        view["resolver"] = {"kind": "runtime", "id": record.resolved_by} if record.resolved_by else {"kind": "system"}
    return view


class ExecApprovals:
    def __init__(self, clock: IReactorTime, clients: ClientRegistry):
        self._clients = clients
        self.records = ApprovalRecords(clock, on_terminal=self._ended)
        # Decided and expired approvals since this gateway started (newest last), for
        # ``approval.get``/``approval.history``; bounded, and like pending ones not kept on disk.
        self._history: OrderedDict[str, ApprovalRecord] = OrderedDict()

    def _ended(self, record: ApprovalRecord) -> None:
        self._remember(record)
        self._announce_resolved(record)

    def _remember(self, record: ApprovalRecord) -> None:
        self._history[record.id] = record
        while len(self._history) > MAX_HISTORY:
            self._history.popitem(last=False)

    # -- what a cluster shares (no-ops in a single process) -------------------------------------

    def client_joined(self, client: ConnectedClient) -> None:
        """A connection was admitted (cluster mode shares its approval clients)."""

    def client_gone(self, client: ConnectedClient) -> None:
        """A connection left."""

    def _lookup(self, approval_id: str) -> ApprovalRecord | None:
        """The record of ``approval_id``, pending or recently ended."""
        return self.records.get(approval_id)

    def _pending_records(self) -> list[ApprovalRecord]:
        return self.records.pending()

    def _announce_requested(self, record: ApprovalRecord, event: dict[str, Any], requester: ConnectedClient) -> int:
        """Show the request to the approval clients that may see it; returns how many."""
        return self._clients.broadcast("exec.approval.requested", event, drop_if_slow=True, only=self._reviewers(record, requester))

    def _decide(self, record: ApprovalRecord, decision: str, who: str | None) -> Any:
        """Apply a checked decision; the method's answer (or a Deferred of it)."""
        self.records.resolve(record, decision, who)
        return {"ok": True}

    # -- asking -------------------------------------------------------------------------------

    def request(self, client: ConnectedClient, params: Mapping[str, Any], send_interim: Callable[[Any], None]) -> Deferred[dict[str, Any]]:
        request = project_request(params)
        now = self.records.now_ms()
        timeout_ms = min(params.get("timeoutMs") or DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)
        record = self.records.register(
            ApprovalRecord(
                id=params.get("id") or str(uuid.uuid4()),
                request=request,
                created_at_ms=now,
                expires_at_ms=now + timeout_ms,
                requested_by_conn_id=client.conn_id,
                requested_by_device_id=client.device_id,
                requested_by_client_id=client.client_id or None,
            )
        )
        event = {"approvalKind": "exec", "id": record.id, "request": request, "createdAtMs": now, "expiresAtMs": record.expires_at_ms}
        reached = self._announce_requested(record, event, client)
        if not reached:
            self.records.expire(record, NO_ROUTE)
        elif params.get("twoPhase"):
            send_interim(
                {
                    "status": "accepted",
                    "id": record.id,
                    "deliveryRoute": "approval-client",
                    "createdAtMs": record.created_at_ms,
                    "expiresAtMs": record.expires_at_ms,
                }
            )
        return self.records.wait(record).addCallback(
            lambda done: {"id": done.id, "decision": done.decision, "createdAtMs": done.created_at_ms, "expiresAtMs": done.expires_at_ms}
        )

    def _reviewers(self, record: ApprovalRecord, requester: ConnectedClient | None) -> Callable[[ConnectedClient], bool]:
        def pick(client: ConnectedClient) -> bool:
            return client is not requester and shows_exec_approvals(client) and may_see(record, client)

        return pick

    def _announce_resolved(self, record: ApprovalRecord) -> None:
        if record.terminal_reason == NO_ROUTE:
            return
        payload = {
            "id": record.id,
            "decision": record.decision or "deny",
            "resolvedBy": record.resolved_by,
            "ts": record.resolved_at_ms,
            "request": record.request,
        }
        self._clients.broadcast("exec.approval.resolved", payload, drop_if_slow=True, only=self._reviewers(record, None))

    # -- reviewing ----------------------------------------------------------------------------

    def visible_pending(self, client: ConnectedClient) -> list[dict[str, Any]]:
        return [
            {"id": r.id, "request": r.request, "createdAtMs": r.created_at_ms, "expiresAtMs": r.expires_at_ms, "approvalKind": "exec"}
            for r in self._pending_records()
            if may_see(r, client)
        ]

    def _visible(self, approval_id: str, client: ConnectedClient) -> ApprovalRecord | None:
        record = self._lookup(approval_id)
        return record if record is not None and may_see(record, client) else None

    def get(self, approval_id: str, client: ConnectedClient) -> dict[str, Any]:
        record = self._visible(approval_id, client)
        if record is None or not record.pending:
            raise not_found()
        request = record.request
        plan = request.get("systemRunPlan") or {}
        return {
            "id": record.id,
            "commandText": request["command"],
            "commandPreview": plan.get("commandPreview"),
            "allowedDecisions": request["allowedDecisions"],
            "host": request.get("host"),
            "nodeId": request.get("nodeId"),
            "agentId": request.get("agentId"),
            "expiresAtMs": record.expires_at_ms,
        }

    def resolve(self, approval_id: str, decision: str, client: ConnectedClient) -> Any:
        if decision not in DECISIONS:
            raise invalid_request("invalid decision")
        record = self._visible(approval_id, client)
        if record is None:
            raise not_found()
        who = client.client.get("displayName") or client.client_id or client.conn_id
        return self.decide_checked(record, decision, who)

    def decide_checked(self, record: ApprovalRecord, decision: str, who: str | None) -> Any:
        """The checks every decision passes (already decided, allowed), then the decision."""
        if not record.pending:
            if record.decision == decision:
                return {"ok": True}
            raise invalid_request("approval already resolved", {"reason": "APPROVAL_ALREADY_RESOLVED"})
        if decision not in record.request["allowedDecisions"]:
            raise invalid_request("decision not allowed for this approval", {"reason": "DECISION_NOT_ALLOWED"})
        return self._decide(record, decision, who)

    # -- the kind-agnostic methods (approval.*) ----------------------------------------------------

    def _known(self, approval_id: str, client: ConnectedClient) -> ApprovalRecord:
        record = self._lookup(approval_id) or self._history.get(approval_id)
        if record is None or not may_see(record, client):
            raise invalid_request("approval not found", {"reason": "APPROVAL_NOT_FOUND"})
        return record

    def snapshot_of(self, approval_id: str, client: ConnectedClient) -> dict[str, Any]:
        return {"approval": snapshot(self._known(approval_id, client))}

    def resolve_any(self, approval_id: str, kind: str, decision: str, client: ConnectedClient) -> Any:
        """First answer wins; every later answer gets the recorded outcome (``applied: false``)."""
        if kind != "exec":
            raise invalid_request("approval not found", {"reason": "APPROVAL_NOT_FOUND"})
        record = self._known(approval_id, client)
        if not record.pending:
            return {"applied": False, "approval": snapshot(record), "alreadyResolved": True}
        decided = self.resolve(approval_id, decision, client)
        if isinstance(decided, Deferred):  # decided on the instance holding the record
            return decided.addCallback(lambda _: {"applied": True, "approval": snapshot(record), "alreadyResolved": False})
        return {"applied": True, "approval": snapshot(record), "alreadyResolved": False}

    def history(self, client: ConnectedClient, cursor: str | None, limit: int, kind: str | None) -> dict[str, Any]:
        """Newest first; the cursor is an opaque offset into this gateway's in-memory history."""
        if kind not in (None, "exec"):
            return {"items": []}
        items = [snapshot(r) for r in reversed(self._history.values()) if may_see(r, client)]
        try:
            start = int(cursor) if cursor else 0
        except ValueError:
            raise invalid_request("invalid cursor") from None
        page: dict[str, Any] = {"items": items[start : start + limit]}
        if start + limit < len(items):
            page["nextCursor"] = str(start + limit)
        return page

    def wait_decision(self, approval_id: str, client: ConnectedClient) -> Deferred[dict[str, Any]]:
        if not approval_id.strip():
            raise invalid_request("id is required")
        record = self._visible(approval_id, client)
        if record is None:
            raise invalid_request("approval expired or not found")
        if not record.pending:
            return succeed(record.wait_response())
        return self.records.wait(record).addCallback(lambda done: done.wait_response())
