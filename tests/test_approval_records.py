"""The approval record store: bounded, expiring, decided once, readable for a grace period."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.approvals.records import ApprovalRecord, ApprovalRecords
from openclaw.protocol.errors import GatewayError


def record(approval_id, now_ms=0, timeout_ms=10_000):
    return ApprovalRecord(id=approval_id, request={"command": "x", "allowedDecisions": []}, created_at_ms=now_ms, expires_at_ms=now_ms + timeout_ms)


class RecordsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.ended = []
        self.records = ApprovalRecords(self.clock, self.ended.append, max_records=3, grace_ms=15_000)

    def test_expiry_then_grace_then_gone(self):
        r = self.records.register(record("a"))
        waited = []
        self.records.wait(r).addCallback(waited.append)
        self.clock.advance(9.9)
        self.assertTrue(r.pending)
        self.clock.advance(0.2)
        self.assertEqual((r.pending, r.decision, r.terminal_reason), (False, None, "timeout"))
        self.assertEqual(waited, [r])
        self.assertEqual(self.ended, [r])
        self.assertIs(self.records.get("a"), r)
        self.clock.advance(15)
        self.assertIsNone(self.records.get("a"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_route_stays_readable_until_its_expiry(self):
        """A request nobody could see is kept until its own expiry, not only the grace period."""
        r = self.records.register(record("a", timeout_ms=60_000))
        self.records.expire(r, "no-approval-route")
        self.assertEqual((r.pending, r.decision), (False, None))
        self.clock.advance(59)
        self.assertIs(self.records.get("a"), r)
        self.clock.advance(1.5)
        self.assertIsNone(self.records.get("a"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_decided_once(self):
        r = self.records.register(record("a"))
        self.records.resolve(r, "allow-once", "ui")
        self.records.resolve(r, "deny", "other")
        self.assertEqual((r.decision, r.resolved_by), ("allow-once", "ui"))
        self.assertTrue(self.records.consume_allow_once(r))
        self.assertFalse(self.records.consume_allow_once(r))

    def test_bounded_evicts_decided_first_and_refuses_when_all_pending(self):
        a, b, c = (self.records.register(record(i)) for i in "abc")
        self.records.resolve(b, "deny", None)
        self.records.register(record("d"))
        self.assertIsNone(self.records.get("b"))
        with self.assertRaises(GatewayError) as caught:
            self.records.register(record("e"))
        self.assertEqual(caught.exception.details, {"code": "APPROVALS_FULL"})
        self.assertIs(caught.exception.retryable, True)
        self.assertEqual({r.id for r in self.records.pending()}, {"a", "c", "d"})

    def test_duplicate_id_refused(self):
        self.records.register(record("a"))
        with self.assertRaises(GatewayError):
            self.records.register(record("a"))

    def test_clear_stops_every_timer(self):
        self.records.register(record("a"))
        self.records.clear()
        self.assertEqual(self.clock.getDelayedCalls(), [])
