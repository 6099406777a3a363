"""Session key grammar (protocol §10): canonical keys, agent ids, kinds, hidden cron runs."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.sessions.keys import (
    AgentSessionKey,
    agent_id_of,
    canonical_session_key,
    is_cron_run_key,
    is_main_session_key,
    main_session_key,
    normalize_agent_id,
    parse_agent_session_key,
    session_kind,
)


class NormalizeAgentIdTests(SynchronousTestCase):
    def test_valid_ids_are_kept(self):
        for value in ("main", "ops", "a", "agent-7", "x_y", "0abc"):
            self.assertEqual(normalize_agent_id(value), value)

    def test_lower_cased_and_trimmed(self):
        self.assertEqual(normalize_agent_id("  Ops  "), "ops")
        self.assertEqual(normalize_agent_id("MAIN"), "main")

    def test_invalid_characters_become_dashes(self):
        self.assertEqual(normalize_agent_id("My Agent!"), "my-agent")
        self.assertEqual(normalize_agent_id("a/b.c"), "a-b-c")
        # A run of invalid characters collapses into one dash.
        self.assertEqual(normalize_agent_id("a  !!  b"), "a-b")

    def test_edges_are_trimmed_of_dashes_and_underscores(self):
        self.assertEqual(normalize_agent_id("--ops--"), "ops")
        self.assertEqual(normalize_agent_id("_ops"), "ops")
        self.assertEqual(normalize_agent_id("!ops?"), "ops")

    def test_at_most_64_characters(self):
        self.assertEqual(normalize_agent_id("a" * 64), "a" * 64)
        self.assertEqual(normalize_agent_id("a" * 65), "a" * 64)
        self.assertEqual(normalize_agent_id("B" * 200), "b" * 64)
        # Cutting at 64 must not leave a trailing dash behind.
        self.assertEqual(normalize_agent_id("a" * 63 + " b"), "a" * 63)

    def test_empty_means_main(self):
        for value in (None, "", "   ", "!!!", "---", "___"):
            self.assertEqual(normalize_agent_id(value), "main", value)


class ParseAgentSessionKeyTests(SynchronousTestCase):
    def test_splits_on_first_colon_after_prefix(self):
        self.assertEqual(parse_agent_session_key("agent:ops:discord:group:1"), AgentSessionKey("ops", "discord:group:1"))

    def test_prefix_is_case_insensitive_and_agent_normalised(self):
        parsed = parse_agent_session_key("AGENT:My Ops:work")
        self.assertEqual(parsed, AgentSessionKey("my-ops", "work"))
        self.assertEqual(str(parsed), "agent:my-ops:work")
        self.assertEqual(parse_agent_session_key("Agent:OPS:main").agent_id, "ops")

    def test_not_agent_form(self):
        for key in ("main", "agent", "agent:", "agent:ops", "agent:ops:", "agent::work", "agentx:ops:work", "global"):
            self.assertIsNone(parse_agent_session_key(key), key)

    def test_rest_must_not_start_with_colon(self):
        self.assertIsNone(parse_agent_session_key("agent:ops::work"))
        self.assertIsNone(parse_agent_session_key("agent:ops::"))

    def test_agent_id_of(self):
        self.assertEqual(agent_id_of("agent:Ops:work"), "ops")
        self.assertIsNone(agent_id_of("global"))
        self.assertIsNone(agent_id_of("unknown"))
        self.assertIsNone(agent_id_of("legacy-bare"))


class CanonicalSessionKeyTests(SynchronousTestCase):
    def test_longest_key_is_512_characters(self):
        self.assertEqual(canonical_session_key("agent:main:" + "x" * 501), "agent:main:" + "x" * 501)
        with self.assertRaises(ValueError):
            canonical_session_key("agent:main:" + "x" * 502)

    def test_agent_prefix_case_insensitive(self):
        self.assertEqual(canonical_session_key("AGENT:Ops:work"), "agent:ops:work")
        self.assertEqual(canonical_session_key("Agent:main:x"), "agent:main:x")

    def test_agent_key_rest_keeps_its_case_except_main(self):
        self.assertEqual(canonical_session_key("agent:ops:Work"), "agent:ops:Work")
        self.assertEqual(canonical_session_key("agent:ops:MAIN"), "agent:ops:main")

    def test_agent_key_id_normalised(self):
        self.assertEqual(canonical_session_key("agent: Sales Team :x"), "agent:sales-team:x")

    def test_bare_main_goes_to_default_agent(self):
        self.assertEqual(canonical_session_key("main"), "agent:main:main")
        self.assertEqual(canonical_session_key("  MAIN "), "agent:main:main")
        self.assertEqual(canonical_session_key("main", default_agent_id="ops"), "agent:ops:main")

    def test_bare_main_respects_agent_id(self):
        self.assertEqual(canonical_session_key("main", agent_id="Ops"), "agent:ops:main")
        # The explicit agent id wins over the default.
        self.assertEqual(canonical_session_key("main", agent_id="ops", default_agent_id="other"), "agent:ops:main")

    def test_custom_main_key(self):
        self.assertEqual(canonical_session_key("home", main_key="home"), "agent:main:home")
        self.assertEqual(canonical_session_key("agent:ops:HOME", main_key="home"), "agent:ops:home")
        self.assertEqual(main_session_key("Ops", "Home"), "agent:ops:home")
        self.assertEqual(main_session_key(), "agent:main:main")

    def test_global_and_unknown_stay_bare(self):
        for raw, expected in (("global", "global"), ("GLOBAL", "global"), (" Global ", "global"), ("unknown", "unknown"), ("UnKnown", "unknown")):
            self.assertEqual(canonical_session_key(raw), expected)
            self.assertEqual(canonical_session_key(raw, agent_id="ops"), expected)

    def test_bare_key_scoped_to_agent(self):
        self.assertEqual(canonical_session_key("work"), "agent:main:work")
        self.assertEqual(canonical_session_key(" work "), "agent:main:work")
        self.assertEqual(canonical_session_key("work", agent_id="ops"), "agent:ops:work")
        self.assertEqual(canonical_session_key("work", default_agent_id="ops"), "agent:ops:work")
        self.assertEqual(canonical_session_key("discord:group:42", agent_id="Ops"), "agent:ops:discord:group:42")

    def test_canonical_is_idempotent(self):
        for raw in ("main", "work", "AGENT:Ops:Work", "global", "agent:x:discord:group:1"):
            once = canonical_session_key(raw)
            self.assertEqual(canonical_session_key(once), once)

    def test_agent_key_ignores_agent_id_param(self):
        # An agent-scoped key already names its agent.
        self.assertEqual(canonical_session_key("agent:ops:work", agent_id="other"), "agent:ops:work")


class SessionKindTests(SynchronousTestCase):
    def test_kinds(self):
        self.assertEqual(session_kind("global"), "global")
        self.assertEqual(session_kind("unknown"), "unknown")
        self.assertEqual(session_kind("agent:main:main"), "direct")
        self.assertEqual(session_kind("agent:main:work"), "direct")
        self.assertEqual(session_kind("agent:main:discord:group:1"), "group")
        self.assertEqual(session_kind("agent:main:slack:channel:C1"), "group")
        self.assertEqual(session_kind("agent:main:matrix:room:r1"), "group")

    def test_group_markers_case_insensitive(self):
        self.assertEqual(session_kind("agent:main:discord:GROUP:1"), "group")

    def test_marker_must_be_a_whole_segment(self):
        self.assertEqual(session_kind("agent:main:groupchat"), "direct")
        self.assertEqual(session_kind("agent:main:my-channel:x"), "direct")


class CronAndMainTests(SynchronousTestCase):
    def test_cron_run_keys(self):
        self.assertTrue(is_cron_run_key("agent:main:cron:daily:run:abc"))
        self.assertTrue(is_cron_run_key("cron:daily:run:abc"))
        self.assertTrue(is_cron_run_key("agent:main:CRON:daily:RUN:abc"))

    def test_other_cron_keys_are_not_runs(self):
        self.assertFalse(is_cron_run_key("agent:main:cron:daily"))
        self.assertFalse(is_cron_run_key("agent:main:cron::run:abc"))
        self.assertFalse(is_cron_run_key("agent:main:mycron:daily:run:abc"))
        self.assertFalse(is_cron_run_key("agent:main:main"))

    def test_bare_cron_hook_acp_keys_stay_bare(self):
        self.assertEqual(canonical_session_key("cron:daily:run:1"), "cron:daily:run:1")
        self.assertEqual(canonical_session_key("hook:gmail:1"), "hook:gmail:1")
        self.assertEqual(canonical_session_key("acp:x"), "acp:x")

    def test_is_main_session_key(self):
        self.assertTrue(is_main_session_key("agent:main:main"))
        self.assertTrue(is_main_session_key("agent:ops:main"))
        self.assertFalse(is_main_session_key("agent:main:work"))
        self.assertFalse(is_main_session_key("main"))
        self.assertFalse(is_main_session_key("global"))
        self.assertTrue(is_main_session_key("agent:main:home", main_key="home"))
        self.assertFalse(is_main_session_key("agent:main:main", main_key="home"))
