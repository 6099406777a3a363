"""The methods the Control UI calls on load and in its chat page (issue 14, point 3), over a real
loopback WebSocket, with the shapes captured from the reference gateway driving the same UI."""
from __future__ import annotations

import os
from datetime import datetime, UTC

from twisted.internet.defer import inlineCallbacks

from .support.upstream import Behaviour
from .test_sessions_methods import SessionsTestCase, is_sessions_changed

# Every method the reference's UI called right after connecting (captured with headless Chromium).
UI_LOAD_METHODS = (
    ("sessions.subscribe", {}),
    (
        "sessions.list",
        {
            "includeGlobal": True,
            "includeUnknown": True,
            "configuredAgentsOnly": True,
            "limit": 200,
            "includeDerivedTitles": True,
            "includeLastMessage": True,
            "ownerFirst": True,
            "agentId": "main",
        },
    ),
    ("update.status", {}),
    ("agents.list", {}),
    ("plugin.approval.list", {}),
    ("openclaw.approval.list", {}),
    ("question.list", {}),
    ("agent.identity.get", {"agentId": "main"}),
    ("models.authStatus", {"agentId": "main"}),
    ("sessions.describe", {"key": "agent:main:main"}),
    ("chat.startup", {"sessionKey": "agent:main:main", "limit": 80, "maxBytes": 262144}),
    ("talk.catalog", {}),
    ("sessions.messages.subscribe", {"key": "agent:main:main", "includeApprovals": True}),
    ("sessions.observer.visibility", {"visible": True}),
    ("chat.metadata", {"agentId": "main", "sessionKey": "agent:main:main"}),
    ("progressCard.get", {"sessionKey": "agent:main:main"}),
    ("sessions.branches.list", {"sessionKey": "agent:main:main"}),
    ("sessions.companion.state", {"sessionKey": "agent:main:main", "agentId": "main"}),
    ("tasks.list", {"sessionKey": "agent:main:main", "agentId": "main", "status": ["queued", "running"], "limit": 200}),
    (
        "cron.list",
        {
            "agentId": "main",
            "includeDisabled": True,
            "includeDeliveryPreviews": False,
            "compact": True,
            "limit": 50,
            "offset": 0,
            "enabled": "all",
            "sortBy": "nextRunAtMs",
            "sortDir": "asc",
        },
    ),
    ("cron.status", {}),
    ("models.list", {"view": "configured", "sessionKey": "agent:main:main", "agentId": "main"}),
    ("chat.history", {"sessionKey": "agent:main:main", "limit": 80, "maxBytes": 262144, "inputRunIds": ["r1"]}),
)


class LoadTests(SessionsTestCase):
    @inlineCallbacks
    def test_every_load_call_succeeds(self):
        for method, params in UI_LOAD_METHODS:
            response = yield self.client.request(method, params)
            self.assertTrue(response["ok"], (method, response))

    @inlineCallbacks
    def test_advertised_reads_and_hidden_writes(self):
        methods = set(self.gateway.methods.advertised())
        for method, _ in UI_LOAD_METHODS:
            self.assertIn(method, methods)
        self.assertNotIn("cron.add", methods)
        self.assertIs(self.gateway.methods.get("cron.add").advertised, False)
        error = yield self.error("cron.add", {"name": "x"}, code="UNAVAILABLE")
        self.assertEqual(error["message"], "cron is not available on this gateway (cron.add)")
        self.assertIs(error["retryable"], False)

    @inlineCallbacks
    def test_empty_families_answer_the_reference_shapes(self):
        self.assertEqual((yield self.ok("question.list")), {"questions": []})
        self.assertEqual((yield self.ok("plugin.approval.list")), [])
        self.assertEqual((yield self.ok("progressCard.get", {"sessionKey": "main"})), {"card": None})
        self.assertEqual((yield self.ok("tasks.list", {})), {"tasks": []})
        self.assertEqual((yield self.ok("sessions.branches.list", {"sessionKey": "main"})), {"branches": []})
        page = yield self.ok("cron.list", {"limit": 20, "offset": 40})
        self.assertEqual(
            page,
            {
                "jobs": [], "total": 0, "offset": 40, "limit": 20, "hasMore": False, "nextOffset": None,
                # what the reference CLI's `cron list` requires of a canonical page
                "snapshotRevision": "empty:no-scheduler", "deliveryPreviews": {},
            },
        )
        status = yield self.ok("update.status")
        self.assertEqual(set(status), {"sentinel", "updateAvailable", "effectiveChannel", "schedule"})
        talk = yield self.ok("talk.catalog")
        self.assertEqual(talk["realtime"], {"ready": False, "providers": []})

    @inlineCallbacks
    def test_bad_params_still_get_clear_errors(self):
        error = yield self.error("tasks.list", {"status": "sleeping"})
        self.assertIn("tasks.list", error["message"])
        error = yield self.error("sessions.list", {"bogus": 1})
        self.assertIn("unexpected property 'bogus'", error["message"])
        error = yield self.error("sessions.observer.visibility", {})
        self.assertIn("visible", error["message"])


class ChatPageTests(SessionsTestCase):
    @inlineCallbacks
    def test_startup_on_a_fresh_gateway(self):
        startup = yield self.ok("chat.startup", {"sessionKey": "agent:main:main", "limit": 80, "maxBytes": 262144})
        self.assertEqual(startup["messages"], [])
        self.assertEqual(startup["pendingInputs"], {"items": [], "total": 0})
        self.assertEqual(startup["defaults"]["model"], "m1")
        self.assertEqual(startup["defaults"]["modelSelectionTarget"], "session")
        self.assertEqual(startup["sessionInfo"]["key"], "agent:main:main")
        self.assertIs(startup["sessionInfo"]["isMain"], True)
        (model,) = startup["metadata"]["models"]
        self.assertEqual((model["provider"], model["id"], model["tags"], model["available"]), ("fake", "m1", ["default"], True))
        self.assertEqual(startup["metadata"]["commands"], [])
        self.assertEqual((yield self.ok("sessions.describe", {"key": "main"})), {"session": None})

    @inlineCallbacks
    def test_startup_after_a_turn_and_within_max_bytes(self):
        yield self.chat("main", "hi")
        startup = yield self.ok("chat.startup", {"sessionKey": "main"})
        self.assertEqual([m["role"] for m in startup["messages"]], ["user", "assistant"])
        # Both name their run: the UI merges the streamed answer with the stored one by it.
        self.assertEqual(len({m["__openclaw"]["runId"] for m in startup["messages"]}), 1)
        self.assertTrue(startup["sessionId"])
        self.store_lines("agent:main:main", 40)
        small = yield self.ok("chat.startup", {"sessionKey": "main", "maxBytes": 1024})
        self.assertLess(len(small["messages"]), 42)
        self.assertGreaterEqual(len(small["messages"]), 1)
        self.assertIs(small["hasMore"], True)
        described = yield self.ok("sessions.describe", {"key": "agent:main:main"})
        self.assertEqual(described["session"]["key"], "agent:main:main")
        self.assertEqual(described["session"]["activeRunIds"], [])

    @inlineCallbacks
    def test_message_subscription_delivers_the_final_message(self):
        subscribed = yield self.ok("sessions.messages.subscribe", {"key": "main", "includeApprovals": True})
        self.assertEqual(subscribed["key"], "agent:main:main")
        self.assertEqual(subscribed["approvalReplay"]["approvals"], [])
        yield self.chat("main", "hi")
        event = yield self.client.next_matching(lambda f: f.get("event") == "session.message")
        self.assertEqual(event["payload"]["sessionKey"], "agent:main:main")
        self.assertEqual(event["payload"]["message"]["role"], "assistant")
        self.assertTrue(event["payload"]["message"]["__openclaw"]["runId"])
        yield self.ok("sessions.messages.unsubscribe", {"key": "main"})
        self.assertFalse(any("session.messages:agent:main:main" in client.subscriptions for client in self.gateway.clients))

    @inlineCallbacks
    def test_create_a_session(self):
        yield self.ok("sessions.subscribe")
        created = yield self.ok("sessions.create", {"agentId": "main", "label": "Research"})
        self.assertTrue(created["key"].startswith("agent:main:dashboard:"))
        self.assertIs(created["created"], True)
        # Announced before the answer, so it is among the frames request() passed over.
        changed = [frame for frame in self.client.skipped if is_sessions_changed(frame)]
        self.assertEqual([frame["payload"]["sessionKey"] for frame in changed], [created["key"]])
        listed = yield self.ok("sessions.list", {"search": "Research"})
        self.assertEqual([row["key"] for row in listed["sessions"]], [created["key"]])
        again = yield self.ok("sessions.create", {"key": created["key"]})
        self.assertIs(again["created"], False)
        yield self.error("sessions.create", {"agentId": "nobody"})
        # "New chat" in the UI: the session and its first turn in one call.
        first = yield self.ok("sessions.create", {"agentId": "main", "message": "Second chat"})
        self.assertIs(first["runStarted"], True)
        self.assertEqual(first["resolved"], {"modelProvider": "fake", "model": "m1"})
        final = yield self.client.next_matching(lambda f: f.get("event") == "chat" and f["payload"].get("state") == "final" and f["payload"]["runId"] == first["runId"])
        self.assertEqual(final["payload"]["sessionKey"], first["key"])
        yield self.error("sessions.create", {"worktree": True})

    @inlineCallbacks
    def test_identity_auth_status_and_agents(self):
        identity = yield self.ok("agent.identity.get", {"agentId": "main"})
        self.assertEqual(identity, {"agentId": "main", "name": "Assistant", "nameSource": "default", "avatar": "A"})
        yield self.error("agent.identity.get", {"agentId": "nobody"})
        status = yield self.ok("models.authStatus", {"agentId": "main"})
        self.assertEqual(status["providers"][0]["provider"], "fake")
        self.assertEqual(status["providers"][0]["apiKey"], {"source": "config"})
        agents = yield self.ok("agents.list")
        self.assertEqual(agents["agents"][0]["model"], {"primary": "fake/m1", "fallbacks": []})

    @inlineCallbacks
    def test_list_filters_the_ui_sends(self):
        yield self.chat("main", "hi")
        listed = yield self.ok("sessions.list", {"configuredAgentsOnly": True, "ownerFirst": True})
        self.assertEqual([row["key"] for row in listed["sessions"]], ["agent:main:main"])
        self.assertEqual(listed["owners"], [])
        nothing = yield self.ok("sessions.list", {"projectId": "p1"})
        self.assertEqual((nothing["sessions"], nothing["totalCount"]), ([], 0))
        pinned = yield self.ok("sessions.list", {"pinned": True})
        self.assertEqual(pinned["sessions"], [])



class OperatorPageTests(SessionsTestCase):
    """Systems, Usage, Debug, Automations, Plugins and Activity pages."""

    @inlineCallbacks
    def test_system_info_reports_this_host(self):
        info = yield self.ok("system.info")
        self.assertEqual(info["pid"], os.getpid())
        self.assertGreaterEqual(info["cpuCount"], 1)
        self.assertGreater(info["processMemory"]["rssBytes"], 0)
        self.assertEqual(info["diskPath"], self.gateway.settings.state_dir)
        self.assertEqual(info["processInstanceId"], self.gateway.instance_id)
        environments = yield self.ok("environments.list", {"includeDesktopSetup": True})
        self.assertEqual([env["id"] for env in environments["environments"]], ["gateway"])

    @inlineCallbacks
    def test_sessions_usage_comes_from_answered_runs(self):
        yield self.chat("main", "hi")
        today = datetime.fromtimestamp(self.gateway.now_ms() / 1000, UTC).date().isoformat()
        report = yield self.ok(
            "sessions.usage", {"startDate": today, "endDate": today, "agentId": "main", "mode": "specific", "groupBy": "family", "limit": 1000}
        )
        (session,) = report["sessions"]
        self.assertEqual(session["key"], "agent:main:main")
        self.assertEqual((session["usage"]["input"], session["usage"]["output"], session["usage"]["totalTokens"]), (11, 3, 14))
        self.assertEqual(session["usage"]["missingCostEntries"], 1)  # no price configured: not guessed
        self.assertEqual(report["totals"]["totalTokens"], 14)
        self.assertEqual(report["aggregates"]["byModel"][0]["model"], "m1")
        earlier = yield self.ok("sessions.usage", {"startDate": "2020-01-01", "endDate": "2020-01-31"})
        self.assertEqual((earlier["sessions"], earlier["totals"]["totalTokens"]), ([], 0))
        error = yield self.error("sessions.usage", {"startDate": "2026-13-45"})
        self.assertIn("YYYY-MM-DD", error["message"])
        yield self.error("sessions.usage", {"startDate": "2026-02-01", "endDate": "2026-01-01"})

    @inlineCallbacks
    def test_usage_status_lanes_and_empty_pages(self):
        self.assertEqual((yield self.ok("usage.status"))["providers"], [])
        lanes = yield self.ok("diagnostics.lanes")
        self.assertEqual([(lane["lane"], lane["activeCount"], lane["queuedCount"]) for lane in lanes["lanes"]], [("main", 0, 0)])
        runs = yield self.ok("cron.runs", {"agentId": "main", "scope": "all", "limit": 50, "offset": 0, "status": "all", "sortDir": "desc"})
        self.assertEqual(runs["entries"], [])
        self.assertEqual((yield self.ok("plugins.list")), {"plugins": []})
        self.assertEqual((yield self.ok("plugins.catalog.browse", {"intent": "all", "pageSize": 100}))["items"], [])
        self.assertEqual((yield self.ok("artifacts.list", {"sessionKey": "main", "type": "image", "limit": 4})), {"artifacts": []})
        yield self.error("plugins.install", {"id": "x"}, code="UNAVAILABLE")
        self.assertEqual((yield self.ok("channels.pairing.list"))["requests"], [])
        search = yield self.ok("webSearch.status", {"agentId": "main"})
        self.assertEqual((search["enabled"], search["providers"]), (False, []))


class DeleteFromUiTests(SessionsTestCase):
    @inlineCallbacks
    def test_delete_with_the_ui_guards(self):
        created = yield self.ok("sessions.create", {"label": "Scratch"})
        entry = created["entry"]
        error = yield self.error("sessions.delete", {"key": created["key"], "expectedSessionUpdatedAt": entry["updatedAt"] - 1})
        self.assertEqual(error["details"]["code"], "SESSION_CONFLICT")
        deleted = yield self.ok(
            "sessions.delete", {"key": created["key"], "expectedSessionUpdatedAt": entry["updatedAt"], "emitLifecycleHooks": True}
        )
        self.assertIs(deleted["deleted"], True)


class MorePagesTests(SessionsTestCase):
    """Skills, Settings > Appearance/General/Profile/Cloud workers, Worktrees, Meetings, Skill
    workshop, Memory and Memory import: the calls those pages make regardless of hello-ok, with
    the answers a reference gateway gives when it has none of these configured."""

    @inlineCallbacks
    def test_skills_page(self):
        library = yield self.ok("skills.library.list", {"scope": "all"})
        self.assertEqual(
            library,
            {"entries": [], "profileId": None, "multipleProfiles": False, "defaultTarget": "unavailable", "canManageWorkspace": False, "defaultSelectionLimit": 64},
        )
        for_session = yield self.ok("skills.library.list", {"sessionKey": "agent:main:main"})
        self.assertEqual(for_session["session"], {"sessionKey": "agent:main:main", "selections": [], "attachable": []})
        self.assertEqual((yield self.ok("skills.search", {"limit": 20})), {"results": []})
        proposals = yield self.ok("skills.proposals.list", {"agentId": "main"})
        self.assertEqual((proposals["schema"], proposals["proposals"], proposals["installedSkills"]), ("openclaw.skill-workshop.proposals-manifest.v1", [], []))
        error = yield self.error("skills.library.list", {"scope": "everyone"})
        self.assertIn("skills.library.list", error["message"])
        yield self.error("skills.search", {"limit": 0})
        yield self.error("skills.library.save", {"slug": "x"}, code="UNAVAILABLE")

    @inlineCallbacks
    def test_themes(self):
        listed = yield self.ok("themes.list", {})
        self.assertEqual(listed["current"], {"id": "claw", "mode": "system", "scope": "gateway", "overrides": {}})
        self.assertEqual(len(listed["themes"]), 11)
        self.assertEqual(listed["themes"][0], listed["theme"])
        self.assertEqual({theme["source"] for theme in listed["themes"]}, {"builtin"})
        knot = yield self.ok("themes.get", {"id": "knot"})
        self.assertEqual((knot["theme"]["name"], knot["current"]["id"]), ("Knot", "claw"))
        error = yield self.error("themes.get", {"id": "nope"})
        self.assertEqual(error["message"], "Theme nope is unavailable. List themes to choose an installed theme.")
        error = yield self.error("themes.set", {"id": "knot"}, code="UNAVAILABLE")
        self.assertIn("not available on this gateway", error["message"])
        yield self.error("themes.set", {"foo": 1})
        self.assertNotIn("themes.set", self.gateway.methods.advertised())

    @inlineCallbacks
    def test_github_identity_is_absent(self):
        status = yield self.ok("tools.github.status", {"agentId": "main", "selectedScope": "system"})
        self.assertEqual((status["agentId"], status["selectedScope"]), ("main", "system"))
        self.assertEqual((status["selected"]["scope"], status["selected"]["configured"]), ("system", False))
        self.assertEqual(status["selected"]["identity"], status["effective"])
        self.assertEqual((status["effective"]["credentialState"], status["effective"]["account"], status["effective"]["evidence"]), ("unavailable", None, "none"))
        error = yield self.error("tools.github.status", {"agentId": "main"})
        self.assertIn("selectedScope", error["message"])
        yield self.error("tools.github.configure", {"scope": "system"}, code="UNAVAILABLE")

    @inlineCallbacks
    def test_other_empty_pages(self):
        self.assertEqual((yield self.ok("worktrees.list", {})), {"worktrees": []})
        self.assertEqual((yield self.ok("transcripts.list", {"limit": 50})), {"sessions": [], "nextCursor": None})
        self.assertEqual((yield self.ok("taskSuggestions.list", {})), {"suggestions": []})
        self.assertEqual((yield self.ok("environments.list", {"projection": "profiles"})), {"environments": []})
        self.assertEqual(len((yield self.ok("environments.list", {}))["environments"]), 1)
        error = yield self.error("doctor.memory.status", {"agentId": "main"}, code="UNAVAILABLE")
        self.assertEqual(error["message"], "agent memory is not available on this gateway (doctor.memory.status)")
        yield self.error("migrations.memory.plan", {"agentId": "main", "overwrite": False}, code="UNAVAILABLE")

    @inlineCallbacks
    def test_usage_page_params(self):
        params = {
            "startDate": "2026-11-06", "endDate": "2026-12-05", "agentScope": "all", "mode": "specific", "timeZone": "UTC",
            "utcOffset": "UTC+0", "groupBy": "family", "limit": 1000, "includeContextWeight": False,
        }
        report = yield self.ok("sessions.usage", params)
        self.assertEqual(report["sessions"], [])
        yield self.ok("sessions.usage", {"range": "7d"})
        error = yield self.error("sessions.usage", {"agentScope": "some"})
        self.assertIn("agentScope", error["message"])


class RunStatusTests(SessionsTestCase):
    """The session status the UI shows (Sessions page, chat header): "Done" after a turn, as the
    reference keeps ``status``/``startedAt``/``endedAt``/``runtimeMs``/``lastRunId`` on the row."""

    @inlineCallbacks
    def row(self):
        listed = yield self.ok("sessions.list", {})
        (row,) = [row for row in listed["sessions"] if row["key"] == "agent:main:main"]
        return row

    @inlineCallbacks
    def test_done_after_a_turn(self):
        final = yield self.chat("main", "hi")
        row = yield self.row()
        self.assertEqual(row["status"], "done")
        self.assertEqual(row["lastRunId"], final["runId"])
        self.assertLessEqual(row["startedAt"], row["endedAt"])
        self.assertEqual(row["runtimeMs"], row["endedAt"] - row["startedAt"])
        described = yield self.ok("sessions.describe", {"key": "agent:main:main"})
        self.assertEqual(described["session"]["status"], "done")

    @inlineCallbacks
    def test_failed_after_an_upstream_error(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)
        response = yield self.client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": "k-fail"})
        self.assertTrue(response["ok"], response)
        yield self.client.next_matching(lambda frame: frame.get("event") == "chat" and frame["payload"].get("state") == "error")
        row = yield self.row()
        self.assertEqual(row["status"], "failed")
        self.assertIn("endedAt", row)

    @inlineCallbacks
    def test_a_stale_running_status_is_not_claimed(self):
        self.store_patch("agent:main:main", {"status": "running", "startedAt": 1, "lastRunId": "gone"})
        row = yield self.row()
        self.assertNotIn("status", row)
        self.assertEqual(row["lastRunId"], "gone")
