"""exec.approval.* (ask, list, get, resolve, waitDecision, events) and exec.approvals.* (policy files).

Real sockets against a gateway on the real reactor; the shapes are the reference's, captured
with a logging relay between the reference CLI and the reference gateway.
"""
from __future__ import annotations

from twisted.internet.defer import inlineCallbacks

from .support.wsclient import connect
from .test_nodes import NodeTestBase, event_seen, is_event, response_to, send_request

REVIEWER_CAPS = ["approvals"]


def approval_params(**extra):
    return {"command": "echo hi", "host": "gateway", "cwd": "/tmp", "agentId": "main", "timeoutMs": 60_000, **extra}


class ApprovalTestBase(NodeTestBase):
    @inlineCallbacks
    def client(self, scopes=("operator.approvals",), caps=(), client_id="cli"):
        client, hello = yield connect(
            self,
            self.running.url,
            scopes=list(scopes),
            caps=list(caps),
            client={"id": client_id, "version": "1.0.0", "platform": "linux", "mode": "ui" if client_id != "cli" else "cli"},
        )
        self.assertTrue(hello["ok"], hello)
        return client

    @inlineCallbacks
    def ask(self, requester, reviewer, **extra):
        """Send a two-phase request; returns (request id, approval id) once the reviewer saw it."""
        request_id = send_request(requester, "exec.approval.request", approval_params(twoPhase=True, **extra))
        accepted = yield event_seen(requester, response_to(request_id))
        self.assertEqual(accepted["payload"]["status"], "accepted", accepted)
        self.assertEqual(accepted["payload"]["deliveryRoute"], "approval-client")
        seen = yield event_seen(reviewer, is_event("exec.approval.requested"))
        self.assertEqual(seen["payload"]["id"], accepted["payload"]["id"])
        return (request_id, accepted["payload"]["id"])


class RequestTests(ApprovalTestBase):
    @inlineCallbacks
    def test_nobody_to_ask_ends_at_once_without_decision(self):
        requester = yield self.client()
        response = yield requester.request("exec.approval.request", approval_params(twoPhase=True))
        self.assertTrue(response["ok"], response)
        self.assertIsNone(response["payload"]["decision"])
        self.assertEqual(set(response["payload"]), {"id", "decision", "createdAtMs", "expiresAtMs"})
        listed = yield requester.request("exec.approval.list", {})
        self.assertEqual(listed["payload"], [])
        waited = yield requester.request("exec.approval.waitDecision", {"id": response["payload"]["id"]})
        self.assertEqual(waited["payload"]["terminalReason"], "no-approval-route")

    @inlineCallbacks
    def test_nobody_to_ask_is_remembered_as_denied_by_the_system(self):
        """Issue 19 rows 5g/5h: as in the reference, a request with no approval route is a denial
        by ``system:no-approval-route``; a later answer is told so, not "expired"."""
        requester = yield self.client(scopes=["operator.approvals", "operator.admin"])
        response = yield requester.request("exec.approval.request", approval_params(twoPhase=True))
        approval_id = response["payload"]["id"]
        got = yield requester.request("approval.get", {"id": approval_id})
        approval = got["payload"]["approval"]
        self.assertEqual((approval["status"], approval["decision"], approval["reason"]), ("denied", "deny", "no-route"))
        self.assertEqual(approval["resolver"], {"kind": "system", "id": "no-approval-route"})
        late = yield requester.request("approval.resolve", {"id": approval_id, "kind": "exec", "decision": "allow-once"})
        self.assertEqual((late["payload"]["applied"], late["payload"]["alreadyResolved"]), (False, True))
        self.assertEqual(late["payload"]["approval"]["decision"], "deny")

    @inlineCallbacks
    def test_two_phase_request_resolved_by_a_reviewer(self):
        requester = yield self.client()
        reviewer = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        request_id, approval_id = yield self.ask(requester, reviewer)
        listed = yield reviewer.request("exec.approval.list", {})
        self.assertEqual([row["id"] for row in listed["payload"]], [approval_id])
        row = listed["payload"][0]
        self.assertEqual(row["approvalKind"], "exec")
        self.assertEqual(row["request"]["command"], "echo hi")
        self.assertEqual(row["request"]["allowedDecisions"], ["allow-once", "allow-always", "deny"])
        got = yield reviewer.request("exec.approval.get", {"id": approval_id})
        self.assertEqual(got["payload"]["commandText"], "echo hi")
        self.assertEqual(got["payload"]["host"], "gateway")
        bad = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "maybe"})
        self.assertEqual(bad["error"]["message"], "invalid decision")
        waiter_id = send_request(reviewer, "exec.approval.waitDecision", {"id": approval_id})
        resolved = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"})
        self.assertEqual(resolved["payload"], {"ok": True})
        final = yield event_seen(requester, response_to(request_id))
        self.assertEqual(final["payload"]["decision"], "allow-once")
        waited = yield event_seen(reviewer, response_to(waiter_id))
        self.assertEqual(waited["payload"]["decision"], "allow-once")
        self.assertEqual(waited["payload"]["terminalReason"], "user")
        event = yield event_seen(reviewer, is_event("exec.approval.resolved"))
        self.assertEqual((event["payload"]["id"], event["payload"]["decision"]), (approval_id, "allow-once"))
        # A decided approval cannot be decided again; the same decision is a harmless repeat.
        again = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
        self.assertEqual(again["error"]["message"], "approval already resolved")
        self.assertEqual(again["error"]["details"], {"reason": "APPROVAL_ALREADY_RESOLVED"})
        same = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"})
        self.assertTrue(same["ok"], same)
        gone = yield reviewer.request("exec.approval.get", {"id": approval_id})
        self.assertEqual(gone["error"]["message"], "unknown or expired approval id")
        self.assertEqual(gone["error"]["details"]["reason"], "APPROVAL_NOT_FOUND")

    @inlineCallbacks
    def test_kind_agnostic_get_resolve_history(self):
        """What ``openclaw approvals resolve <id> <decision>`` calls (approval.get, approval.resolve)."""
        requester = yield self.client()
        reviewer = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        request_id, approval_id = yield self.ask(requester, reviewer)
        got = yield reviewer.request("approval.get", {"id": approval_id})
        approval = got["payload"]["approval"]
        self.assertEqual((approval["status"], approval["urlPath"]), ("pending", f"/approve/{approval_id}"))
        self.assertEqual(approval["presentation"]["kind"], "exec")
        self.assertEqual(approval["presentation"]["commandText"], "echo hi")
        first = yield reviewer.request("approval.resolve", {"id": approval_id, "kind": "exec", "decision": "deny"})
        self.assertEqual((first["payload"]["applied"], first["payload"]["alreadyResolved"]), (True, False))
        self.assertEqual((first["payload"]["approval"]["status"], first["payload"]["approval"]["decision"]), ("denied", "deny"))
        self.assertEqual(first["payload"]["approval"]["reason"], "user")
        final = yield event_seen(requester, response_to(request_id))
        self.assertEqual(final["payload"]["decision"], "deny")
        second = yield reviewer.request("approval.resolve", {"id": approval_id, "kind": "exec", "decision": "allow-once"})
        self.assertEqual((second["payload"]["applied"], second["payload"]["approval"]["decision"]), (False, "deny"))
        history = yield reviewer.request("approval.history", {"limit": 10})
        self.assertEqual([item["id"] for item in history["payload"]["items"]], [approval_id])
        unknown = yield reviewer.request("approval.get", {"id": "nope"})
        self.assertEqual(unknown["error"]["message"], "approval not found")
        other_kind = yield reviewer.request("approval.history", {"kind": "plugin"})
        self.assertEqual(other_kind["payload"], {"items": []})

    @inlineCallbacks
    def test_one_phase_request_times_out(self):
        requester = yield self.client()
        reviewer = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        response = yield requester.request("exec.approval.request", approval_params(timeoutMs=50))
        self.assertIsNone(response["payload"]["decision"])
        event = yield event_seen(reviewer, is_event("exec.approval.resolved"))
        self.assertEqual(event["payload"]["decision"], "deny")
        self.assertIsNone(event["payload"]["resolvedBy"])

    @inlineCallbacks
    def test_bad_requests(self):
        requester = yield self.client()
        missing = yield requester.request("exec.approval.request", {"timeoutMs": 10})
        self.assertEqual(missing["error"]["message"], "command is required")
        no_node = yield requester.request("exec.approval.request", {"command": "ls", "host": "node"})
        self.assertEqual(no_node["error"]["message"], "nodeId is required for host=node")
        no_plan = yield requester.request("exec.approval.request", {"command": "ls", "host": "node", "nodeId": "n"})
        self.assertEqual(no_plan["error"]["message"], "systemRunPlan is required for host=node")
        unknown = yield requester.request("exec.approval.resolve", {"id": "nope", "decision": "deny"})
        self.assertEqual(unknown["error"]["message"], "unknown or expired approval id")
        waited = yield requester.request("exec.approval.waitDecision", {"id": "nope"})
        self.assertEqual(waited["error"]["message"], "approval expired or not found")

    @inlineCallbacks
    def test_scope_is_operator_approvals(self):
        reader = yield self.client(scopes=["operator.read", "operator.write"])
        response = yield reader.request("exec.approval.list", {})
        self.assertEqual(response["error"]["message"], "missing scope: operator.approvals")
        policy = yield reader.request("exec.approvals.get", {})
        self.assertEqual(policy["error"]["message"], "missing scope: operator.admin")


class VisibilityTests(ApprovalTestBase):
    @inlineCallbacks
    def test_another_clients_approval_is_unknown(self):
        """Without admin, a client sees and decides only what it (its device/connection) asked."""
        requester = yield self.client(scopes=["operator.approvals"], caps=REVIEWER_CAPS)
        admin = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        other = yield self.client(scopes=["operator.approvals"], caps=REVIEWER_CAPS)
        _, approval_id = yield self.ask(requester, admin)
        listed = yield other.request("exec.approval.list", {})
        self.assertEqual(listed["payload"], [])
        for method, params in (
            ("exec.approval.get", {"id": approval_id}),
            ("exec.approval.resolve", {"id": approval_id, "decision": "allow-always"}),
        ):
            response = yield other.request(method, params)
            self.assertEqual(response["error"]["message"], "unknown or expired approval id", method)
        self.assertFalse([f for f in other.skipped if f.get("event") == "exec.approval.requested"])
        own = yield requester.request("exec.approval.list", {})
        self.assertEqual([row["id"] for row in own["payload"]], [approval_id])


class PolicyFileTests(ApprovalTestBase):
    @inlineCallbacks
    def test_get_and_set_with_base_hash(self):
        admin = yield self.client(scopes=["operator.admin"])
        first = yield admin.request("exec.approvals.get", {})
        self.assertFalse(first["payload"]["exists"])
        self.assertEqual(first["payload"]["file"], {"version": 1, "defaults": {}, "agents": {}})
        self.assertEqual(
            first["payload"]["resolvedDefaults"], {"security": "full", "ask": "off", "askFallback": "deny", "autoAllowSkills": False}
        )
        written = yield admin.request("exec.approvals.set", {"file": {"version": 1, "defaults": {"ask": "always"}}})
        self.assertTrue(written["ok"], written)
        self.assertEqual(written["payload"]["resolvedDefaults"]["ask"], "always")
        stale = yield admin.request("exec.approvals.set", {"file": {"version": 1}, "baseHash": first["payload"]["hash"]})
        self.assertEqual(stale["error"]["message"], "exec approvals changed since last load; re-run exec.approvals.get and retry")
        missing = yield admin.request("exec.approvals.set", {"file": {"version": 1}})
        self.assertEqual(missing["error"]["message"], "exec approvals base hash required; re-run exec.approvals.get and retry")
        bad = yield admin.request("exec.approvals.set", {"file": {"version": 2}})
        self.assertEqual(bad["error"]["code"], "INVALID_REQUEST")
        again = yield admin.request("exec.approvals.set", {"file": {"version": 1}, "baseHash": written["payload"]["hash"]})
        self.assertTrue(again["ok"], again)
        now = yield admin.request("exec.approvals.get", {})
        self.assertTrue(now["payload"]["exists"])
        self.assertEqual(now["payload"]["hash"], again["payload"]["hash"])

    @inlineCallbacks
    def test_node_policy_goes_through_the_node(self):
        admin = yield self.client(scopes=["operator.admin", "operator.pairing"])
        node = yield self.node(commands=["system.execApprovals.get", "system.execApprovals.set"])
        node_id = node.key.device_id
        request_id = send_request(admin, "exec.approvals.node.get", {"nodeId": node_id})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        self.assertEqual(invoke["payload"]["command"], "system.execApprovals.get")
        snapshot = {"path": "/n", "exists": True, "hash": "h", "file": {"version": 1}}
        yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True, "payload": snapshot})
        response = yield event_seen(admin, response_to(request_id))
        self.assertEqual(response["payload"], snapshot)
        # Straight through node.invoke it is refused, as in the reference.
        direct = yield admin.request(
            "node.invoke", {"nodeId": node_id, "command": "system.execApprovals.set", "params": {}, "idempotencyKey": "x"}
        )
        self.assertEqual(direct["error"]["message"], "node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*")
        offline = yield admin.request("exec.approvals.node.get", {"nodeId": "nope"})
        self.assertEqual(offline["error"]["message"], "node not connected")
