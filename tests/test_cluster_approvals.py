"""Exec approvals across two real gateway processes sharing one PostgreSQL schema and Redis prefix.

A request asked on A is shown to approval clients on B (with the same visibility rules), listed
and decided there, and A's waiting requester gets B's decision; ``no-approval-route`` only when
no instance has an approval client; when the instance holding a request is killed its request
leaves the others' lists, and when the deciding instance is killed the request on A still ends.
Each test has its own schema and key prefix.
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from .test_cluster import UI_CLIENT, ClusterTestBase
from .test_exec_approvals import approval_params
from .test_nodes import event_seen, is_event, response_to, send_request

REQUESTER_SCOPES = ["operator.approvals"]


class TwoInstanceApprovals(ClusterTestBase):
    names = ("A", "B")

    @inlineCallbacks
    def approver(self, name, instance_id, scopes=None):
        """A Control UI on instance ``name``, once the other instance knows it is there (its
        approval-client notice is published before its presence entry, so presence proves it)."""
        ui = yield self.operator(name, client={**UI_CLIENT, "instanceId": instance_id}, scopes=scopes)
        other = next(n for n in self.names if n != name)
        yield self.seen_on(other, instance_id)
        return ui

    @inlineCallbacks
    def seen_on(self, name, instance_id):
        probe = yield self.operator(name)
        for _ in range(200):
            presence = yield probe.request("system-presence", {})
            if instance_id in {entry.get("instanceId") for entry in presence["payload"]}:
                return
            yield deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"{instance_id} never showed up in the presence of {name}")

    @inlineCallbacks
    def ask(self, requester, **extra):
        """A two-phase request; fires with (request id, approval id) once accepted."""
        request_id = send_request(requester, "exec.approval.request", approval_params(twoPhase=True, **extra))
        accepted = yield event_seen(requester, response_to(request_id))
        self.assertEqual(accepted["payload"]["status"], "accepted", accepted)
        return request_id, accepted["payload"]["id"]

    @inlineCallbacks
    def listed(self, client):
        listed = yield client.request("exec.approval.list", {})
        self.assertTrue(listed["ok"], listed)
        return [row["id"] for row in listed["payload"]]


class ApprovalAcrossInstancesTests(TwoInstanceApprovals):
    @inlineCallbacks
    def test_request_on_a_is_seen_and_decided_on_b(self):
        reviewer = yield self.approver("B", "ui-on-b")
        # An approval client on B without admin and on another device may not see A's request.
        outsider = yield self.operator("B", client={**UI_CLIENT, "instanceId": "outsider"}, scopes=REQUESTER_SCOPES)
        requester = yield self.operator("A", scopes=REQUESTER_SCOPES)
        request_id, approval_id = yield self.ask(requester)  # accepted: B's approval client is a route

        seen = yield event_seen(reviewer, is_event("exec.approval.requested", id=approval_id))
        self.assertEqual(seen["payload"]["request"]["command"], "echo hi")
        self.assertEqual((yield self.listed(reviewer)), [approval_id])
        got = yield reviewer.request("exec.approval.get", {"id": approval_id})
        self.assertEqual(got["payload"]["commandText"], "echo hi")
        self.assertEqual((yield self.listed(outsider)), [])
        hidden = yield outsider.request("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
        self.assertEqual(hidden["error"]["details"]["reason"], "APPROVAL_NOT_FOUND")
        not_allowed = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "maybe"})
        self.assertEqual(not_allowed["error"]["message"], "invalid decision")

        waiter_id = send_request(reviewer, "exec.approval.waitDecision", {"id": approval_id})
        resolved = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"})
        self.assertEqual(resolved["payload"], {"ok": True})
        final = yield event_seen(requester, response_to(request_id))  # A's waiter
        self.assertEqual(final["payload"]["decision"], "allow-once")
        waited = yield event_seen(reviewer, response_to(waiter_id))  # B's waiter
        self.assertEqual((waited["payload"]["decision"], waited["payload"]["terminalReason"]), ("allow-once", "user"))
        event = yield event_seen(reviewer, is_event("exec.approval.resolved", id=approval_id))
        self.assertEqual(event["payload"]["decision"], "allow-once")

        # Deciding again, on B or on A, answers as on one gateway.
        again = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
        self.assertEqual(again["error"]["details"], {"reason": "APPROVAL_ALREADY_RESOLVED"})
        same = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "allow-once"})
        self.assertTrue(same["ok"], same)
        history = yield reviewer.request("approval.get", {"id": approval_id})
        self.assertEqual(history["payload"]["approval"]["status"], "allowed")
        self.assertEqual((yield self.listed(reviewer)), [])
        admin_on_a = yield self.operator("A")
        self.assertEqual((yield self.listed(admin_on_a)), [])

    @inlineCallbacks
    def test_kind_agnostic_resolve_on_b_and_expiry(self):
        reviewer = yield self.approver("B", "ui-on-b")
        requester = yield self.operator("A", scopes=REQUESTER_SCOPES)
        request_id, approval_id = yield self.ask(requester)
        yield event_seen(reviewer, is_event("exec.approval.requested", id=approval_id))
        applied = yield reviewer.request("approval.resolve", {"id": approval_id, "kind": "exec", "decision": "deny"})
        self.assertTrue(applied["payload"]["applied"], applied)
        self.assertEqual(applied["payload"]["approval"]["status"], "denied")
        final = yield event_seen(requester, response_to(request_id))
        self.assertEqual(final["payload"]["decision"], "deny")
        later = yield reviewer.request("approval.resolve", {"id": approval_id, "kind": "exec", "decision": "allow-once"})
        self.assertEqual((later["payload"]["applied"], later["payload"]["alreadyResolved"]), (False, True))

        # A request that expires on A cannot be decided on B afterwards.
        short_id = send_request(requester, "exec.approval.request", approval_params(timeoutMs=300))
        expired = yield event_seen(requester, response_to(short_id))
        self.assertIsNone(expired["payload"]["decision"])
        yield event_seen(reviewer, is_event("exec.approval.resolved", id=expired["payload"]["id"]))
        late = yield reviewer.request("exec.approval.resolve", {"id": expired["payload"]["id"], "decision": "allow-once"})
        self.assertEqual(late["error"]["details"], {"reason": "APPROVAL_ALREADY_RESOLVED"})

    @inlineCallbacks
    def test_no_approval_route_only_without_approval_clients_anywhere(self):
        yield self.operator("B")  # an operator, but no app that shows approvals
        requester = yield self.operator("A", scopes=REQUESTER_SCOPES)
        response = yield requester.request("exec.approval.request", approval_params(twoPhase=True))
        self.assertIsNone(response["payload"]["decision"], response)
        waited = yield requester.request("exec.approval.waitDecision", {"id": response["payload"]["id"]})
        self.assertEqual(waited["payload"]["terminalReason"], "no-approval-route")


class ApprovalInstanceDeathTests(TwoInstanceApprovals):
    @inlineCallbacks
    def test_the_holders_death_clears_its_requests_and_the_deciders_leaves_nothing_hanging(self):
        reviewer = yield self.approver("B", "ui-on-b")
        requester = yield self.operator("A", scopes=REQUESTER_SCOPES)
        # B dies first: A's request (only B could decide it) still ends, by its own timeout.
        short_id = send_request(requester, "exec.approval.request", approval_params(timeoutMs=3000))
        yield event_seen(reviewer, is_event("exec.approval.requested"))
        self.instances["B"].process.signalProcess("KILL")
        ended = yield event_seen(requester, response_to(short_id))
        self.assertIsNone(ended["payload"]["decision"])
        # Once A has seen B die, B's approval client no longer counts: nobody is left to ask.
        for _ in range(400):
            health = yield requester.request("health", {})
            if health["payload"]["cluster"]["instances"] == ["A"]:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(health["payload"]["cluster"]["instances"], ["A"])
        alone = yield requester.request("exec.approval.request", approval_params(twoPhase=True))
        self.assertIsNone(alone["payload"]["decision"], alone)

    @inlineCallbacks
    def test_a_killed_holders_requests_leave_the_list(self):
        reviewer = yield self.approver("B", "ui-on-b")
        requester = yield self.operator("A", scopes=REQUESTER_SCOPES)
        _, approval_id = yield self.ask(requester)
        yield event_seen(reviewer, is_event("exec.approval.requested", id=approval_id))
        waiter_id = send_request(reviewer, "exec.approval.waitDecision", {"id": approval_id})
        started = reactor.seconds()
        self.instances["A"].process.signalProcess("KILL")
        failed = yield event_seen(reviewer, response_to(waiter_id))
        self.assertEqual(failed["error"]["code"], "UNAVAILABLE")
        self.assertLess(reactor.seconds() - started, 15)
        self.assertEqual((yield self.listed(reviewer)), [])
        gone = yield reviewer.request("exec.approval.resolve", {"id": approval_id, "decision": "deny"})
        self.assertEqual(gone["error"]["details"]["reason"], "APPROVAL_NOT_FOUND")
