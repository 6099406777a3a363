"""Operator scope implication and the broadcast event gate (protocol §5.2, §6.2, §13 facts 10 and 14).

These rules are pure functions, so they are checked directly; the dispatch tests exercise the same
rules over real sockets.
"""
from twisted.trial.unittest import SynchronousTestCase

from openclaw.security.scopes import (
    ADMIN,
    APPROVALS,
    EVENT_SCOPES,
    KNOWN_SCOPES,
    PAIRING,
    QUESTIONS,
    READ,
    SESSIONS_READ,
    SESSIONS_WRITE,
    TALK,
    TALK_SECRETS,
    WRITE,
    may_receive_event,
    scope_satisfied,
    scopes_cover,
)


class ScopeImplicationTests(SynchronousTestCase):
    """``operatorScopeSatisfied``: what each granted scope covers, and what it must not."""

    def test_admin_satisfies_every_known_scope(self):
        """Admin is the superuser scope: every operator scope is satisfied by it alone."""
        for scope in KNOWN_SCOPES:
            self.assertTrue(scope_satisfied(scope, [ADMIN]), scope)

    def test_admin_satisfies_unknown_operator_scopes_too(self):
        """Admin covers any ``operator.*`` string, even ones this gateway does not know."""
        self.assertTrue(scope_satisfied("operator.something.new", [ADMIN]))

    def test_exact_grant_satisfies(self):
        """Every scope satisfies itself."""
        for scope in KNOWN_SCOPES:
            self.assertTrue(scope_satisfied(scope, [scope]), scope)

    def test_write_implies_read_talk_and_session_scopes(self):
        """``operator.write`` also satisfies read, talk, sessions.read and sessions.write."""
        for scope in (READ, TALK, SESSIONS_READ, SESSIONS_WRITE):
            self.assertTrue(scope_satisfied(scope, [WRITE]), scope)

    def test_write_does_not_imply_privileged_scopes(self):
        """Write is not a back door to admin, pairing, approvals, questions or talk secrets."""
        for scope in (ADMIN, PAIRING, APPROVALS, QUESTIONS, TALK_SECRETS):
            self.assertFalse(scope_satisfied(scope, [WRITE]), scope)

    def test_read_implies_only_sessions_read(self):
        """``operator.read`` satisfies sessions.read and nothing else above it."""
        self.assertTrue(scope_satisfied(SESSIONS_READ, [READ]))
        for scope in (WRITE, ADMIN, TALK, SESSIONS_WRITE, PAIRING, APPROVALS):
            self.assertFalse(scope_satisfied(scope, [READ]), scope)

    def test_sessions_write_implies_sessions_read(self):
        """The session-scoped write grant still lets its holder read sessions."""
        self.assertTrue(scope_satisfied(SESSIONS_READ, [SESSIONS_WRITE]))
        self.assertFalse(scope_satisfied(READ, [SESSIONS_WRITE]))

    def test_pairing_and_approvals_do_not_imply_read(self):
        """A pairing-only or approvals-only client must not read (fact 10: a common mistake)."""
        for granted in ([PAIRING], [APPROVALS], [PAIRING, APPROVALS], [QUESTIONS], [TALK]):
            self.assertFalse(scope_satisfied(READ, granted), granted)
            self.assertFalse(scope_satisfied(SESSIONS_READ, granted), granted)

    def test_empty_grant_satisfies_nothing(self):
        """A client admitted with ``scopes: []`` passes no scope gate."""
        for scope in KNOWN_SCOPES:
            self.assertFalse(scope_satisfied(scope, []), scope)

    def test_non_operator_scope_never_satisfied(self):
        """Only ``operator.*`` scopes exist; anything else fails even if granted verbatim or with admin."""
        for required in ("node.admin", "admin", "", "operatorread", "read"):
            self.assertFalse(scope_satisfied(required, [required, ADMIN, WRITE]), required)

    def test_accepts_any_iterable(self):
        """Callers pass lists, tuples, sets and frozensets; all behave the same."""
        for granted in ([WRITE], (WRITE,), {WRITE}, frozenset((WRITE,)), iter([WRITE])):
            self.assertTrue(scope_satisfied(READ, granted))

    def test_scopes_cover(self):
        """Pairing upgrades: a request is covered when every requested scope is satisfied."""
        self.assertTrue(scopes_cover([READ, TALK], [WRITE]))
        self.assertTrue(scopes_cover([], []))
        self.assertFalse(scopes_cover([READ, PAIRING], [WRITE]))
        self.assertTrue(scopes_cover([READ, PAIRING, ADMIN], [ADMIN]))


class EventGateTests(SynchronousTestCase):
    """``may_receive_event``: fail-closed table of who may see each broadcast event."""

    def test_unknown_event_is_not_delivered(self):
        """An event with no table entry reaches nobody, not even admins (fail-closed)."""
        for role, granted in (("operator", {ADMIN}), ("operator", set(KNOWN_SCOPES)), ("node", set())):
            self.assertFalse(may_receive_event("no.such.event", role, frozenset(granted)))
            self.assertFalse(may_receive_event("", role, frozenset(granted)))

    def test_unrestricted_events_reach_everyone_including_nodes(self):
        """tick/health/heartbeat/shutdown go to every authenticated client, scopes or not."""
        for event in ("tick", "health", "heartbeat", "shutdown"):
            self.assertEqual(EVENT_SCOPES[event], ())
            self.assertTrue(may_receive_event(event, "operator", frozenset()), event)
            self.assertTrue(may_receive_event(event, "node", frozenset()), event)
            self.assertTrue(may_receive_event(event, "operator", frozenset({PAIRING})), event)

    def test_presence_needs_read(self):
        """Despite the docs, presence is gated on operator.read (or anything implying it)."""
        self.assertTrue(may_receive_event("presence", "operator", frozenset({READ})))
        self.assertTrue(may_receive_event("presence", "operator", frozenset({WRITE})))
        self.assertTrue(may_receive_event("presence", "operator", frozenset({ADMIN})))
        self.assertFalse(may_receive_event("presence", "operator", frozenset()))
        self.assertFalse(may_receive_event("presence", "operator", frozenset({PAIRING})))
        self.assertFalse(may_receive_event("presence", "operator", frozenset({APPROVALS})))

    def test_scoped_events_never_reach_nodes(self):
        """A scoped event is for operators only; a node's scopes do not count."""
        self.assertFalse(may_receive_event("presence", "node", frozenset({ADMIN, READ})))
        self.assertFalse(may_receive_event("device.pair.requested", "node", frozenset({PAIRING})))

    def test_device_pairing_events_need_pairing(self):
        """device.pair.* need operator.pairing; read or write are not enough."""
        for event in ("device.pair.requested", "device.pair.resolved"):
            self.assertTrue(may_receive_event(event, "operator", frozenset({PAIRING})), event)
            self.assertTrue(may_receive_event(event, "operator", frozenset({ADMIN})), event)
            self.assertFalse(may_receive_event(event, "operator", frozenset({READ, WRITE})), event)

    def test_approval_events_need_approvals(self):
        self.assertTrue(may_receive_event("exec.approval.requested", "operator", frozenset({APPROVALS})))
        self.assertFalse(may_receive_event("exec.approval.requested", "operator", frozenset({WRITE})))

    def test_chat_metadata_changed_accepts_either_scope(self):
        """An entry listing several scopes needs any one of them."""
        self.assertTrue(may_receive_event("chat.metadata.changed", "operator", frozenset({SESSIONS_READ})))
        self.assertTrue(may_receive_event("chat.metadata.changed", "operator", frozenset({READ})))
        self.assertFalse(may_receive_event("chat.metadata.changed", "operator", frozenset({PAIRING})))

    def test_admin_only_events(self):
        self.assertTrue(may_receive_event("terminal.data", "operator", frozenset({ADMIN})))
        self.assertFalse(may_receive_event("terminal.data", "operator", frozenset({WRITE})))

    def test_plugin_events_default_to_write(self):
        """Unlisted ``plugin.*`` events are the one exception to fail-closed: they need write."""
        self.assertNotIn("plugin.custom.thing", EVENT_SCOPES)
        self.assertTrue(may_receive_event("plugin.custom.thing", "operator", frozenset({WRITE})))
        self.assertTrue(may_receive_event("plugin.custom.thing", "operator", frozenset({ADMIN})))
        self.assertFalse(may_receive_event("plugin.custom.thing", "operator", frozenset({READ})))
        self.assertFalse(may_receive_event("plugin.custom.thing", "node", frozenset()))

    def test_listed_plugin_events_keep_their_own_rule(self):
        """plugin.approval.* have an explicit entry (approvals), which wins over the write default."""
        self.assertTrue(may_receive_event("plugin.approval.requested", "operator", frozenset({APPROVALS})))
        self.assertFalse(may_receive_event("plugin.approval.requested", "operator", frozenset({WRITE})))

    def test_every_table_entry_uses_known_scopes(self):
        """A typo in the table would make an event silently undeliverable."""
        for event, required in EVENT_SCOPES.items():
            for scope in required:
                self.assertIn(scope, KNOWN_SCOPES, event)
