"""The system.run gate: approval flags reach a node only behind a real, matching approval.

The issue's security hole: ``node.invoke system.run`` with ``approved: true`` and an approval id
nobody issued ran on the node. Each refusal here is checked on the wire, and that the node
received nothing.
"""
from __future__ import annotations

import json

from twisted.internet.defer import inlineCallbacks

from .test_exec_approvals import REVIEWER_CAPS, ApprovalTestBase
from .test_nodes import event_seen, is_event, response_to, send_request

PLAN = {"argv": ["echo", "ok"], "cwd": None, "commandText": "echo ok", "agentId": None, "sessionKey": None}
RUNNER_SCOPES = ["operator.write", "operator.approvals"]


class GateTests(ApprovalTestBase):
    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node_client = yield self.node(commands=["system.run", "system.run.prepare"])
        self.node_id = self.node_client.key.device_id

    def run_params(self, key, **params):
        return {"nodeId": self.node_id, "command": "system.run", "params": params, "idempotencyKey": key}

    @inlineCallbacks
    def refused(self, client, key, code, **params):
        response = yield client.request("node.invoke", self.run_params(key, **params))
        self.assertIs(response["ok"], False, response)
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(response["error"]["details"]["code"], code, response)
        self.assertFalse([f for f in self.node_client.skipped if f.get("event") == "node.invoke.request"])
        return response

    @inlineCallbacks
    def approved(self, requester, reviewer, decision="allow-once", plan=PLAN):
        request_id = send_request(
            requester,
            "exec.approval.request",
            {"command": plan["commandText"], "host": "node", "nodeId": self.node_id, "systemRunPlan": plan, "twoPhase": True},
        )
        seen = yield event_seen(reviewer, is_event("exec.approval.requested"))
        approval_id = seen["payload"]["id"]
        yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": decision})
        final = yield event_seen(requester, lambda f: response_to(request_id)(f) and "decision" in (f.get("payload") or {}))
        self.assertEqual(final["payload"]["decision"], decision)
        return approval_id

    @inlineCallbacks
    def ran(self, client, key, **params):
        request_id = send_request(client, "node.invoke", self.run_params(key, **params))
        invoke = yield event_seen(self.node_client, is_event("node.invoke.request"))
        forwarded = json.loads(invoke["payload"]["paramsJSON"])
        yield self.node_client.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": self.node_id, "ok": True, "payload": {}})
        response = yield event_seen(client, response_to(request_id))
        self.assertTrue(response["ok"], response)
        return forwarded

    @inlineCallbacks
    def test_forged_approval_id_is_refused(self):
        writer = yield self.client(scopes=["operator.write"])
        response = yield self.refused(
            writer, "f1", "UNKNOWN_APPROVAL_ID", command=["echo", "bypassed"], approved=True, approvalDecision="allow-once", runId="forged"
        )
        self.assertEqual(response["error"]["message"], "unknown or expired approval id")
        self.assertEqual(response["error"]["details"]["runId"], "forged")
        response = yield self.refused(writer, "f2", "MISSING_RUN_ID", command=["echo", "bypassed"], approved=True, approvalDecision="allow-once")
        self.assertEqual(response["error"]["message"], "approval override requires params.runId")
        yield self.refused(writer, "f3", "INVALID_APPROVAL_SOURCE", command=["echo"], approvalSource="operator")

    @inlineCallbacks
    def test_plain_run_gets_a_runid_and_no_approval_flags(self):
        writer = yield self.client(scopes=["operator.write"])
        forwarded = yield self.ran(writer, "p1", command=["echo", "plain"], approvalDecision="bogus", injected="x")
        self.assertEqual(forwarded["command"], ["echo", "plain"])
        self.assertTrue(forwarded["runId"])
        self.assertNotIn("approved", forwarded)
        self.assertNotIn("approvalDecision", forwarded)
        self.assertNotIn("injected", forwarded)

    @inlineCallbacks
    def test_allow_once_runs_once_for_its_requester_only(self):
        runner = yield self.client(scopes=RUNNER_SCOPES)
        reviewer = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        approval_id = yield self.approved(runner, reviewer)
        other = yield self.client(scopes=RUNNER_SCOPES)
        yield self.refused(other, "o1", "APPROVAL_CLIENT_MISMATCH", command=["echo", "ok"], approved=True, runId=approval_id)
        yield self.refused(runner, "m1", "APPROVAL_REQUEST_MISMATCH", command=["rm", "-rf", "/"], approved=True, runId=approval_id)
        forwarded = yield self.ran(runner, "r1", command=["echo", "ok"], approved=True, approvalDecision="allow-once", runId=approval_id)
        self.assertEqual(forwarded["approved"], True)
        self.assertEqual(forwarded["approvalDecision"], "allow-once")
        self.assertEqual(forwarded["command"], ["echo", "ok"])
        self.assertEqual(forwarded["runId"], approval_id)
        yield self.refused(runner, "r2", "APPROVAL_REQUIRED", command=["echo", "ok"], approved=True, runId=approval_id)

    @inlineCallbacks
    def test_denied_or_pending_approval_does_not_run(self):
        runner = yield self.client(scopes=RUNNER_SCOPES)
        reviewer = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        denied = yield self.approved(runner, reviewer, decision="deny")
        yield self.refused(runner, "d1", "APPROVAL_REQUIRED", command=["echo", "ok"], approved=True, runId=denied)
        request_id = send_request(
            runner,
            "exec.approval.request",
            {"command": "echo ok", "host": "node", "nodeId": self.node_id, "systemRunPlan": PLAN, "twoPhase": True},
        )
        accepted = yield event_seen(runner, response_to(request_id))
        pending = accepted["payload"]["id"]
        yield self.refused(runner, "d2", "APPROVAL_REQUIRED", command=["echo", "ok"], approved=True, runId=pending)

    @inlineCallbacks
    def test_approval_for_another_node_is_refused(self):
        runner = yield self.client(scopes=RUNNER_SCOPES)
        reviewer = yield self.client(scopes=["operator.admin"], caps=REVIEWER_CAPS)
        approval_id = yield self.approved(runner, reviewer, decision="allow-always")
        other = yield self.node(commands=["system.run"])
        response = yield runner.request(
            "node.invoke",
            {"nodeId": other.key.device_id, "command": "system.run", "params": {"command": ["echo", "ok"], "approved": True, "runId": approval_id}, "idempotencyKey": "n1"},
        )
        self.assertEqual(response["error"]["details"]["code"], "APPROVAL_NODE_MISMATCH", response)
        # allow-always may be used again.
        for key in ("a1", "a2"):
            forwarded = yield self.ran(runner, key, command=["echo", "ok"], approved=True, runId=approval_id)
            self.assertEqual(forwarded["approvalDecision"], "allow-always")

    @inlineCallbacks
    def test_a_request_nobody_could_see_is_refused_for_what_it_is(self):
        """Issue 19 row 5h: the id of a no-approval-route request is known (not "unknown or
        expired"): its requester is told approval is required, another connection that the id is not its own."""
        runner = yield self.client(scopes=RUNNER_SCOPES)
        other = yield self.client(scopes=RUNNER_SCOPES)
        response = yield runner.request(
            "exec.approval.request", {"command": "echo ok", "host": "node", "nodeId": self.node_id, "systemRunPlan": PLAN, "twoPhase": True}
        )
        self.assertIsNone(response["payload"]["decision"])
        no_route = response["payload"]["id"]
        yield self.refused(runner, "n1", "APPROVAL_REQUIRED", command=["echo", "ok"], approved=True, runId=no_route)
        yield self.refused(other, "n2", "APPROVAL_CLIENT_MISMATCH", command=["echo", "ok"], approved=True, runId=no_route)
