"""``sessions.*`` over a real loopback WebSocket (protocol §9.1).

Transcripts come from real ``chat.send`` runs against ``FakeUpstream`` where the content matters,
and from direct store calls (the test gateway's store runs inline) where only the line count does.
"""
from __future__ import annotations

import os
import uuid

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.security.scopes import ADMIN, READ, WRITE

from .support.gateway import start_gateway
from .support.upstream import FakeUpstream
from .support.wsclient import connect

ALL = [ADMIN, READ, WRITE]
LIST_KEYS = {"ts", "path", "count", "totalCount", "limitApplied", "nextOffset", "hasMore", "defaults", "owners", "sessions"}


def chat_event(state, run_id):
    def matches(frame):
        payload = frame.get("payload") or {}
        return frame.get("type") == "event" and frame.get("event") == "chat" and payload.get("state") == state and payload.get("runId") == run_id

    return matches


def is_sessions_changed(frame):
    return frame.get("type") == "event" and frame.get("event") == "sessions.changed"


def line(role, text):
    return {"type": "message", "id": str(uuid.uuid4()), "timestamp": 1, "message": {"role": role, "content": text}}


class SessionsTestCase(TestCase):
    config_extra: dict = {"contextWindow": 8192}

    @inlineCallbacks
    def setUp(self):
        self.upstream = FakeUpstream().start(self)
        self.running = yield self.start()
        self.gateway = self.running.gateway
        self.client = yield self.operator(ALL)

    def start(self, **overrides):
        return start_gateway(self, config=self.upstream.config(**self.config_extra), **overrides)

    @inlineCallbacks
    def operator(self, scopes, running=None):
        client, hello = yield connect(self, (running or self.running).url, scopes=scopes)
        self.assertTrue(hello["ok"], hello)
        return client

    @inlineCallbacks
    def ok(self, method, params=None, client=None):
        response = yield (client or self.client).request(method, params)
        self.assertTrue(response["ok"], response)
        return response["payload"]

    @inlineCallbacks
    def error(self, method, params=None, client=None, code="INVALID_REQUEST"):
        response = yield (client or self.client).request(method, params)
        self.assertIs(response["ok"], False, response)
        self.assertEqual(response["error"]["code"], code, response)
        return response["error"]

    @inlineCallbacks
    def chat(self, key, message, client=None):
        client = client or self.client
        run_id = uuid.uuid4().hex
        response = yield client.request("chat.send", {"sessionKey": key, "message": message, "idempotencyKey": run_id})
        self.assertTrue(response["ok"], response)
        final = yield client.next_matching(chat_event("final", run_id))
        return final["payload"]

    def store_patch(self, key, changes=None, age_ms=0):
        """Create or change a session directly in the (inline) store."""
        return self.successResultOf(self.gateway.sessions.patch(key, changes or {}, self.gateway.now_ms() - age_ms))

    def store_lines(self, key, count):
        entry = self.successResultOf(self.gateway.sessions.ensure(key, self.gateway.now_ms()))
        lines = [line("user" if n % 2 == 0 else "assistant", f"line {n}") for n in range(count)]
        self.successResultOf(self.gateway.sessions.append(key, entry["sessionId"], lines, {}))
        return entry, lines


class ListTests(SessionsTestCase):
    @inlineCallbacks
    def test_result_shape_and_row_fields(self):
        yield self.chat("main", "hi")
        yield self.ok("sessions.patch", {"key": "main", "label": "Home"})
        result = yield self.ok("sessions.list", {})
        self.assertEqual(set(result), LIST_KEYS)
        self.assertEqual(result["path"], self.gateway.sessions.path)
        self.assertTrue(os.path.exists(result["path"]))
        self.assertEqual((result["count"], result["totalCount"], result["limitApplied"]), (1, 1, 100))
        self.assertIsNone(result["nextOffset"])
        self.assertIs(result["hasMore"], False)
        self.assertEqual(result["defaults"], {"modelProvider": "fake", "model": "m1", "contextTokens": 8192})
        self.assertLessEqual(abs(result["ts"] - self.gateway.now_ms()), 60_000)
        (row,) = result["sessions"]
        entry = self.successResultOf(self.gateway.sessions.get("agent:main:main"))
        self.assertEqual(row["key"], "agent:main:main")
        self.assertEqual(row["kind"], "direct")
        self.assertEqual(row["chatType"], "direct")
        self.assertEqual(row["agentId"], "main")
        self.assertIs(row["isMain"], True)
        self.assertEqual(row["sessionId"], entry["sessionId"])
        self.assertEqual(row["updatedAt"], entry["updatedAt"])
        self.assertEqual(row["label"], "Home")
        self.assertEqual(row["displayName"], "Home")
        self.assertEqual((row["modelProvider"], row["model"]), ("fake", "m1"))
        self.assertEqual(row["totalTokens"], 14)
        self.assertIs(row["hasActiveRun"], False)
        for flag in ("archived", "pinned", "unread", "systemSent", "abortedLastRun"):
            self.assertIs(row[flag], False, flag)
        self.assertNotIn("lastMessagePreview", row)
        self.assertNotIn("derivedTitle", row)

    @inlineCallbacks
    def test_empty(self):
        result = yield self.ok("sessions.list")
        self.assertEqual((result["sessions"], result["count"], result["totalCount"], result["hasMore"]), ([], 0, 0, False))

    @inlineCallbacks
    def test_group_row(self):
        self.store_patch("agent:main:discord:group:42")
        (row,) = (yield self.ok("sessions.list", {}))["sessions"]
        self.assertEqual((row["kind"], row["chatType"], row["isMain"]), ("group", "group", False))

    @inlineCallbacks
    def test_limit_offset_paging(self):
        for n in range(5):
            self.store_patch(f"agent:main:s{n}", age_ms=1000 * (5 - n))  # s4 newest
        first = yield self.ok("sessions.list", {"limit": 2})
        self.assertEqual([row["key"] for row in first["sessions"]], ["agent:main:s4", "agent:main:s3"])
        self.assertEqual((first["count"], first["totalCount"], first["limitApplied"]), (2, 5, 2))
        self.assertEqual((first["nextOffset"], first["hasMore"]), (2, True))
        second = yield self.ok("sessions.list", {"limit": 2, "offset": first["nextOffset"]})
        self.assertEqual([row["key"] for row in second["sessions"]], ["agent:main:s2", "agent:main:s1"])
        self.assertEqual((second["nextOffset"], second["hasMore"]), (4, True))
        last = yield self.ok("sessions.list", {"limit": 2, "offset": second["nextOffset"]})
        self.assertEqual([row["key"] for row in last["sessions"]], ["agent:main:s0"])
        self.assertEqual((last["count"], last["totalCount"], last["nextOffset"], last["hasMore"]), (1, 5, None, False))
        exact = yield self.ok("sessions.list", {"limit": 5})
        self.assertEqual((exact["count"], exact["nextOffset"], exact["hasMore"]), (5, None, False))
        tail = yield self.ok("sessions.list", {"limit": 3, "offset": 2})
        self.assertEqual((tail["count"], tail["nextOffset"], tail["hasMore"]), (3, None, False))
        beyond = yield self.ok("sessions.list", {"limit": 2, "offset": 9})
        self.assertEqual((beyond["sessions"], beyond["hasMore"], beyond["nextOffset"]), ([], False, None))

    @inlineCallbacks
    def test_label_spawned_by_agent_and_search_filters(self):
        yield self.ok("sessions.patch", {"key": "work", "label": "Work Things"})
        yield self.ok("sessions.patch", {"key": "agent:ops:deploy", "label": "Deploy", "spawnedBy": "agent:main:work"})
        yield self.ok("sessions.patch", {"key": "agent:ops:child", "spawnedBy": "agent:main:work", "displayName": "Kiddo"})

        def keys(result):
            return sorted(row["key"] for row in result["sessions"])

        self.assertEqual(keys((yield self.ok("sessions.list", {"label": "Deploy"}))), ["agent:ops:deploy"])
        self.assertEqual(keys((yield self.ok("sessions.list", {"label": "nope"}))), [])
        self.assertEqual(
            keys((yield self.ok("sessions.list", {"spawnedBy": "agent:main:work"}))), ["agent:ops:child", "agent:ops:deploy"]
        )
        by_agent = yield self.ok("sessions.list", {"agentId": "OPS"})
        self.assertEqual(keys(by_agent), ["agent:ops:child", "agent:ops:deploy"])
        self.assertEqual(by_agent["totalCount"], 2)
        self.assertEqual(keys((yield self.ok("sessions.list", {"agentId": "main"}))), ["agent:main:work"])
        self.assertEqual(keys((yield self.ok("sessions.list", {"search": "work THINGS"}))), ["agent:main:work"])
        self.assertEqual(keys((yield self.ok("sessions.list", {"search": "kiddo"}))), ["agent:ops:child"])
        self.assertEqual(keys((yield self.ok("sessions.list", {"search": "AGENT:OPS"}))), ["agent:ops:child", "agent:ops:deploy"])
        self.assertEqual(len((yield self.ok("sessions.list", {"search": "   "}))["sessions"]), 3)  # blank search: no filter

    @inlineCallbacks
    def test_active_minutes(self):
        self.store_patch("agent:main:old", age_ms=3_600_000)
        self.store_patch("agent:main:recent", age_ms=60_000)
        result = yield self.ok("sessions.list", {"activeMinutes": 30})
        self.assertEqual([row["key"] for row in result["sessions"]], ["agent:main:recent"])
        result = yield self.ok("sessions.list", {"activeMinutes": 120})
        self.assertEqual([row["key"] for row in result["sessions"]], ["agent:main:recent", "agent:main:old"])
        # a window reaching before 1970 (found by the fuzz suite: SQLite's integers overflowed)
        result = yield self.ok("sessions.list", {"activeMinutes": 153_722_896_429_056})
        self.assertEqual(len(result["sessions"]), 2)

    @inlineCallbacks
    def test_global_unknown_and_cron_runs(self):
        yield self.ok("sessions.patch", {"key": "global"})
        yield self.ok("sessions.patch", {"key": "unknown"})
        yield self.ok("sessions.patch", {"key": "main"})
        self.store_patch("agent:main:cron:nightly:run:r1")

        def keys(result):
            return sorted(row["key"] for row in result["sessions"])

        self.assertEqual(keys((yield self.ok("sessions.list", {}))), ["agent:main:main"])
        self.assertEqual(keys((yield self.ok("sessions.list", {"includeGlobal": True}))), ["agent:main:main", "global"])
        self.assertEqual(keys((yield self.ok("sessions.list", {"includeUnknown": True}))), ["agent:main:main", "unknown"])
        both = yield self.ok("sessions.list", {"includeGlobal": True, "includeUnknown": True})
        self.assertEqual(keys(both), ["agent:main:main", "global", "unknown"])
        global_row = next(row for row in both["sessions"] if row["key"] == "global")
        self.assertEqual(global_row["kind"], "global")
        self.assertNotIn("agentId", global_row)
        self.assertIs(global_row["isMain"], False)

    @inlineCallbacks
    def test_archived_filter(self):
        yield self.ok("sessions.patch", {"key": "old", "archived": True})
        yield self.ok("sessions.patch", {"key": "live"})
        self.assertEqual([r["key"] for r in (yield self.ok("sessions.list", {}))["sessions"]], ["agent:main:live"])
        archived = (yield self.ok("sessions.list", {"archived": True}))["sessions"]
        self.assertEqual([r["key"] for r in archived], ["agent:main:old"])
        self.assertIs(archived[0]["archived"], True)
        self.assertEqual(len((yield self.ok("sessions.list", {"archived": "all"}))["sessions"]), 2)

    @inlineCallbacks
    def test_last_message_and_derived_titles(self):
        yield self.chat("work", "what is up with the build")
        yield self.ok("sessions.patch", {"key": "labelled", "label": "Named"})
        plain = yield self.ok("sessions.list", {})
        for row in plain["sessions"]:
            self.assertNotIn("lastMessagePreview", row)
            self.assertNotIn("derivedTitle", row)
        result = yield self.ok("sessions.list", {"includeLastMessage": True, "includeDerivedTitles": True})
        rows = {row["key"]: row for row in result["sessions"]}
        self.assertEqual(rows["agent:main:work"]["lastMessagePreview"], "Hello there!")
        self.assertEqual(rows["agent:main:work"]["derivedTitle"], "what is up with the build")
        self.assertEqual(rows["agent:main:labelled"]["derivedTitle"], "Named")
        self.assertNotIn("lastMessagePreview", rows["agent:main:labelled"])
        only_preview = yield self.ok("sessions.list", {"includeLastMessage": True, "search": "agent:main:work"})
        self.assertEqual(only_preview["sessions"][0]["lastMessagePreview"], "Hello there!")
        self.assertNotIn("derivedTitle", only_preview["sessions"][0])
        only_titles = yield self.ok("sessions.list", {"includeDerivedTitles": True, "search": "agent:main:work"})
        self.assertEqual(only_titles["sessions"][0]["derivedTitle"], "what is up with the build")
        self.assertNotIn("lastMessagePreview", only_titles["sessions"][0])

    @inlineCallbacks
    def test_bad_params_name_the_field(self):
        for params, field in (
            ({"limit": 0}, "limit"),
            ({"offset": -1}, "offset"),
            ({"activeMinutes": 0}, "activeMinutes"),
            ({"limit": "5"}, "limit"),
            ({"archived": "some"}, "archived"),
            ({"bogus": 1}, "bogus"),
        ):
            error = yield self.error("sessions.list", params)
            self.assertTrue(error["message"].startswith("invalid sessions.list params"), error)
            self.assertIn(field, error["message"])


class PreviewTests(SessionsTestCase):
    @inlineCallbacks
    def test_ok_empty_missing(self):
        yield self.chat("main", "hello gateway")
        yield self.ok("sessions.patch", {"key": "blank"})
        result = yield self.ok("sessions.preview", {"keys": ["main", "blank", "agent:main:nothing", " "]})
        self.assertEqual(
            result["previews"],
            [
                {
                    "key": "agent:main:main",
                    "status": "ok",
                    "items": [{"role": "user", "text": "hello gateway"}, {"role": "assistant", "text": "Hello there!"}],
                },
                {"key": "agent:main:blank", "status": "empty", "items": []},
                {"key": "agent:main:nothing", "status": "missing", "items": []},
            ],
        )
        self.assertIn("ts", result)

    @inlineCallbacks
    def test_limit_and_max_chars(self):
        self.store_lines("agent:main:x", 6)
        result = yield self.ok("sessions.preview", {"keys": ["x"], "limit": 2})
        self.assertEqual([item["text"] for item in result["previews"][0]["items"]], ["line 4", "line 5"])
        self.store_patch("agent:main:long")
        entry = self.successResultOf(self.gateway.sessions.get("agent:main:long"))
        self.successResultOf(self.gateway.sessions.append("agent:main:long", entry["sessionId"], [line("user", "abcdefghij" * 10)], {}))
        result = yield self.ok("sessions.preview", {"keys": ["long"], "maxChars": 20})
        text = result["previews"][0]["items"][0]["text"]
        self.assertEqual(len(text), 20)
        self.assertTrue(text.endswith("…"))

    @inlineCallbacks
    def test_only_blank_keys(self):
        result = yield self.ok("sessions.preview", {"keys": ["", "  "]})
        self.assertEqual(result["previews"], [])

    @inlineCallbacks
    def test_bad_params(self):
        error = yield self.error("sessions.preview", {"keys": ["main"], "maxChars": 19})
        self.assertIn("maxChars", error["message"])
        error = yield self.error("sessions.preview", {"keys": []})
        self.assertIn("keys", error["message"])
        error = yield self.error("sessions.preview", {})
        self.assertIn("keys", error["message"])
        error = yield self.error("sessions.preview", {"keys": ["main"], "limit": 0})
        self.assertIn("limit", error["message"])


class ResolveTests(SessionsTestCase):
    @inlineCallbacks
    def test_key(self):
        error = yield self.error("sessions.resolve", {"key": "main"})
        self.assertEqual(error["message"], "No session found: agent:main:main")
        yield self.ok("sessions.patch", {"key": "main"})
        result = yield self.ok("sessions.resolve", {"key": "main"})
        self.assertEqual(result, {"ok": True, "key": "agent:main:main", "agentId": "main"})
        result = yield self.ok("sessions.resolve", {"key": "AGENT:Main:MAIN"})
        self.assertEqual(result["key"], "agent:main:main")

    @inlineCallbacks
    def test_missing_key(self):
        error = yield self.error("sessions.resolve", {"key": "nope"})
        self.assertEqual(error["message"], "No session found: agent:main:nope")
        allowed = yield self.ok("sessions.resolve", {"key": "nope", "allowMissing": True})
        self.assertEqual(allowed, {"ok": True, "key": "agent:main:nope", "agentId": "main", "missing": True})

    @inlineCallbacks
    def test_label_and_session_id(self):
        patched = yield self.ok("sessions.patch", {"key": "work", "label": "Workbench"})
        result = yield self.ok("sessions.resolve", {"label": "Workbench"})
        self.assertEqual(result, {"ok": True, "key": "agent:main:work", "agentId": "main", "displayName": "Workbench"})
        result = yield self.ok("sessions.resolve", {"sessionId": patched["entry"]["sessionId"]})
        self.assertEqual(result["key"], "agent:main:work")
        error = yield self.error("sessions.resolve", {"label": "x"})
        self.assertEqual(error["message"], "No session found with label: x")
        error = yield self.error("sessions.resolve", {"sessionId": "sid-x"})
        self.assertEqual(error["message"], "No session found with sessionId: sid-x")

    @inlineCallbacks
    def test_several_matches_give_candidates(self):
        yield self.ok("sessions.patch", {"key": "a", "spawnedBy": "agent:main:main"})
        yield self.ok("sessions.patch", {"key": "b", "spawnedBy": "agent:main:main"})
        result = yield self.ok("sessions.resolve", {"key": "a", "spawnedBy": "agent:main:main"})
        self.assertEqual(result["key"], "agent:main:a")
        # Two sessions match: the caller must choose.
        self.store_patch("agent:main:c")
        self.successResultOf(self.gateway.sessions.patch("agent:main:c", {"sessionId": "shared"}, self.gateway.now_ms()))
        self.successResultOf(self.gateway.sessions.patch("agent:main:b", {"sessionId": "shared"}, self.gateway.now_ms()))
        result = yield self.ok("sessions.resolve", {"sessionId": "shared"})
        self.assertIs(result["ok"], False)
        self.assertEqual(sorted(c["key"] for c in result["candidates"]), ["agent:main:b", "agent:main:c"])

    @inlineCallbacks
    def test_needs_a_criterion(self):
        error = yield self.error("sessions.resolve", {})
        self.assertIn("key", error["message"])
        error = yield self.error("sessions.resolve", {"key": "main", "bogus": True})
        self.assertIn("bogus", error["message"])


class PatchTests(SessionsTestCase):
    SETTABLE = {
        "label": "Lab",
        "displayName": "Shown",
        "icon": "rocket",
        "color": "#f00",
        "category": "ops",
        "thinkingLevel": "high",
        "verboseLevel": "full",
        "reasoningLevel": "stream",
        "elevatedLevel": "ask",
        "responseUsage": "tokens",
        "sendPolicy": "deny",
        "groupActivation": "always",
        "model": "fake/m1",
        "agentRuntime": "pi",
        "fastMode": "auto",
        "permissionMode": "ask",
        "autoLabel": "auto",
        "spawnedBy": "agent:main:main",
        "execHost": "gateway",
        "execSecurity": "allowlist",
        "execAsk": "on-miss",
        "execNode": "node-1",
        "unread": True,
    }

    @inlineCallbacks
    def test_creates_missing_session(self):
        self.assertIsNone(self.successResultOf(self.gateway.sessions.get("agent:main:fresh")))
        result = yield self.ok("sessions.patch", {"key": "fresh", "label": "Fresh"})
        self.assertEqual(set(result), {"ok", "path", "key", "entry", "resolved"})
        self.assertIs(result["ok"], True)
        self.assertEqual(result["path"], self.gateway.sessions.path)
        self.assertEqual(result["key"], "agent:main:fresh")
        self.assertEqual(result["resolved"], {"modelProvider": "fake", "model": "m1"})
        entry = result["entry"]
        self.assertEqual(entry["label"], "Fresh")
        self.assertEqual(entry, self.successResultOf(self.gateway.sessions.get("agent:main:fresh")))
        uuid.UUID(entry["sessionId"])

    @inlineCallbacks
    def test_each_field_settable_and_clearable(self):
        for field, value in self.SETTABLE.items():
            if field == "model":
                continue  # stored as an override; see test_model_is_an_override
            result = yield self.ok("sessions.patch", {"key": "x", field: value})
            self.assertEqual(result["entry"][field], value, field)
            stored = self.successResultOf(self.gateway.sessions.get("agent:main:x"))
            self.assertEqual(stored[field], value, field)
            result = yield self.ok("sessions.patch", {"key": "x", field: None})
            self.assertNotIn(field, result["entry"])
            self.assertNotIn(field, self.successResultOf(self.gateway.sessions.get("agent:main:x")), field)

    @inlineCallbacks
    def test_pinned_and_archived_carry_timestamps(self):
        result = yield self.ok("sessions.patch", {"key": "x", "pinned": True, "archived": True})
        self.assertIs(result["entry"]["pinned"], True)
        self.assertIsInstance(result["entry"]["pinnedAt"], int)
        self.assertIsInstance(result["entry"]["archivedAt"], int)
        result = yield self.ok("sessions.patch", {"key": "x", "pinned": None, "archived": False})
        self.assertNotIn("pinned", result["entry"])
        self.assertNotIn("pinnedAt", result["entry"])
        self.assertIs(result["entry"]["archived"], False)
        self.assertNotIn("archivedAt", result["entry"])

    @inlineCallbacks
    def test_blank_label_clears_and_label_is_trimmed(self):
        result = yield self.ok("sessions.patch", {"key": "x", "label": "  Spaced  "})
        self.assertEqual(result["entry"]["label"], "Spaced")
        result = yield self.ok("sessions.patch", {"key": "x", "label": "   "})
        self.assertNotIn("label", result["entry"])

    @inlineCallbacks
    def test_model_resolution(self):
        result = yield self.ok("sessions.patch", {"key": "x", "model": "m1"})
        self.assertEqual(result["resolved"], {"modelProvider": "fake", "model": "m1"})
        for model in ("nope/m1", "fake/m9", "unheard-of"):
            error = yield self.error("sessions.patch", {"key": "x", "model": model})
            self.assertIn(model, error["message"])
        stored = self.successResultOf(self.gateway.sessions.get("agent:main:x"))
        self.assertEqual((stored["providerOverride"], stored["modelOverride"]), ("fake", "m1"))

    @inlineCallbacks
    def test_model_is_an_override(self):
        """The user's choice is kept apart from ``model``, which records what last ran."""
        result = yield self.ok("sessions.patch", {"key": "x", "model": "fake/m1"})
        self.assertEqual(result["entry"]["modelOverride"], "m1")
        self.assertEqual(result["entry"]["providerOverride"], "fake")
        self.assertNotIn("model", result["entry"])
        result = yield self.ok("sessions.patch", {"key": "x", "model": None})
        self.assertNotIn("modelOverride", result["entry"])
        self.assertNotIn("providerOverride", result["entry"])

    @inlineCallbacks
    def test_duplicate_label(self):
        yield self.ok("sessions.patch", {"key": "a", "label": "Taken"})
        yield self.ok("sessions.patch", {"key": "b"})
        error = yield self.error("sessions.patch", {"key": "b", "label": "Taken"})
        self.assertEqual(error["message"], "label already in use: Taken")
        self.assertNotIn("label", self.successResultOf(self.gateway.sessions.get("agent:main:b")))
        # Re-sending a session's own label is fine.
        yield self.ok("sessions.patch", {"key": "a", "label": "Taken"})

    @inlineCallbacks
    def test_expected_session_id(self):
        created = yield self.ok("sessions.patch", {"key": "x", "label": "One"})
        error = yield self.error("sessions.patch", {"key": "x", "label": "Two", "expectedSessionId": "not-it"})
        self.assertEqual(error["details"], {"code": "SESSION_CONFLICT"})
        self.assertIn("sessionId", error["message"])
        self.assertEqual(self.successResultOf(self.gateway.sessions.get("agent:main:x"))["label"], "One")
        result = yield self.ok(
            "sessions.patch", {"key": "x", "label": "Two", "expectedSessionId": created["entry"]["sessionId"]}
        )
        self.assertEqual(result["entry"]["label"], "Two")
        self.assertNotIn("expectedSessionId", result["entry"])

    @inlineCallbacks
    def test_scope_rule(self):
        writer = yield self.operator([WRITE])
        result = yield self.ok("sessions.patch", {"key": "x", "label": "By writer", "thinkingLevel": "low"}, client=writer)
        self.assertEqual(result["entry"]["label"], "By writer")
        for field, value in (("sendPolicy", "deny"), ("spawnedBy", "agent:main:main"), ("execHost", "node"), ("sandboxMode", "off")):
            error = yield self.error("sessions.patch", {"key": "x", field: value}, client=writer, code="FORBIDDEN")
            self.assertEqual(error["message"], "missing scope: operator.admin", field)
            self.assertNotIn(field, self.successResultOf(self.gateway.sessions.get("agent:main:x")))
        error = yield self.error("sessions.patch", {"key": "x", "permissionMode": "full"}, client=writer, code="FORBIDDEN")
        self.assertEqual(error["message"], "missing scope: operator.admin")
        yield self.ok("sessions.patch", {"key": "x", "permissionMode": "ask"}, client=writer)
        reader = yield self.operator([READ])
        error = yield self.error("sessions.patch", {"key": "x", "label": "By reader"}, client=reader, code="FORBIDDEN")
        self.assertEqual(error["message"], "missing scope: operator.write")
        # The admin may do all of it.
        yield self.ok("sessions.patch", {"key": "x", "sendPolicy": "deny", "execHost": "node"})

    @inlineCallbacks
    def test_bad_params(self):
        error = yield self.error("sessions.patch", {"key": "x", "bogus": 1})
        self.assertIn("bogus", error["message"])
        error = yield self.error("sessions.patch", {"label": "x"})
        self.assertIn("key", error["message"])
        error = yield self.error("sessions.patch", {"key": "x", "verboseLevel": "loud"})
        self.assertIn("verboseLevel", error["message"])
        error = yield self.error("sessions.patch", {"key": "", "label": "x"})
        self.assertIn("key", error["message"])
        error = yield self.error("sessions.patch", {"key": "x", "label": "y" * 201})
        self.assertIn("label", error["message"])
        self.assertIsNone(self.successResultOf(self.gateway.sessions.get("agent:main:x")))


class ResetTests(SessionsTestCase):
    @inlineCallbacks
    def test_reset_gives_new_session_and_empty_history(self):
        yield self.chat("main", "remember this")
        yield self.ok("sessions.patch", {"key": "main", "label": "Home", "thinkingLevel": "high"})
        before = self.successResultOf(self.gateway.sessions.get("agent:main:main"))
        history = yield self.ok("chat.history", {"sessionKey": "main"})
        self.assertEqual(len(history["messages"]), 2)
        result = yield self.ok("sessions.reset", {"key": "main"})
        self.assertEqual(result["key"], "agent:main:main")
        self.assertNotEqual(result["entry"]["sessionId"], before["sessionId"])
        self.assertEqual(result["entry"]["label"], "Home")
        self.assertEqual(result["entry"]["thinkingLevel"], "high")
        self.assertEqual(result["entry"]["totalTokens"], 0)
        history = yield self.ok("chat.history", {"sessionKey": "main"})
        self.assertEqual(history["messages"], [])
        self.assertEqual(history["sessionId"], result["entry"]["sessionId"])
        archive_dir = os.path.join(self.gateway.settings.state_dir, "sessions", "archive")
        (name,) = [n for n in os.listdir(archive_dir) if n.startswith(before["sessionId"])]
        self.assertIn(".jsonl.reset.", name)
        # The next message starts from a clean slate.
        yield self.chat("main", "fresh start")
        self.assertEqual(self.upstream.requests[-1]["body"]["messages"], [{"role": "user", "content": "fresh start"}])

    @inlineCallbacks
    def test_reason_and_expected_session_id(self):
        created = yield self.ok("sessions.patch", {"key": "x"})
        error = yield self.error("sessions.reset", {"key": "x", "expectedSessionId": "other"})
        self.assertEqual(error["details"], {"code": "SESSION_CONFLICT"})
        result = yield self.ok("sessions.reset", {"key": "x", "reason": "new", "expectedSessionId": created["entry"]["sessionId"]})
        self.assertNotEqual(result["entry"]["sessionId"], created["entry"]["sessionId"])
        error = yield self.error("sessions.reset", {"key": "x", "reason": "because"})
        self.assertIn("reason", error["message"])

    @inlineCallbacks
    def test_admin_only(self):
        yield self.ok("sessions.patch", {"key": "x"})
        before = self.successResultOf(self.gateway.sessions.get("agent:main:x"))
        writer = yield self.operator([WRITE])
        error = yield self.error("sessions.reset", {"key": "x"}, client=writer, code="FORBIDDEN")
        self.assertEqual(error["message"], "missing scope: operator.admin")
        self.assertEqual(self.successResultOf(self.gateway.sessions.get("agent:main:x")), before)


class DeleteTests(SessionsTestCase):
    @inlineCallbacks
    def test_main_cannot_be_deleted(self):
        yield self.ok("sessions.patch", {"key": "main"})
        for key in ("main", "agent:main:main", "AGENT:MAIN:MAIN"):
            error = yield self.error("sessions.delete", {"key": key})
            self.assertEqual(error["message"], "Cannot delete the main session (agent:main:main).")
        self.assertIsNotNone(self.successResultOf(self.gateway.sessions.get("agent:main:main")))

    @inlineCallbacks
    def test_delete_archives_transcript(self):
        yield self.chat("work", "temporary")
        entry = self.successResultOf(self.gateway.sessions.get("agent:main:work"))
        result = yield self.ok("sessions.delete", {"key": "work"})
        self.assertEqual((result["ok"], result["key"], result["deleted"]), (True, "agent:main:work", True))
        (path,) = result["archived"]
        self.assertTrue(os.path.exists(path))
        self.assertTrue(os.path.basename(path).startswith(entry["sessionId"] + ".jsonl.deleted."))
        with open(path, "rb") as handle:
            self.assertEqual(len(handle.read().splitlines()), 3)  # header, user, assistant
        self.assertIsNone(self.successResultOf(self.gateway.sessions.get("agent:main:work")))
        listed = yield self.ok("sessions.list", {})
        self.assertEqual(listed["sessions"], [])
        again = yield self.ok("sessions.delete", {"key": "work"})
        self.assertEqual((again["deleted"], again["archived"]), (False, []))

    @inlineCallbacks
    def test_delete_keeping_transcript(self):
        self.store_lines("agent:main:x", 2)
        result = yield self.ok("sessions.delete", {"key": "x", "deleteTranscript": False})
        self.assertEqual((result["deleted"], result["archived"]), (True, []))

    @inlineCallbacks
    def test_scope_rules(self):
        yield self.ok("sessions.patch", {"key": "live"})
        yield self.ok("sessions.patch", {"key": "old", "archived": True})
        writer = yield self.operator([WRITE])
        error = yield self.error("sessions.delete", {"key": "live"}, client=writer, code="FORBIDDEN")
        self.assertEqual(error["message"], "missing scope: operator.admin")
        error = yield self.error("sessions.delete", {"key": "live", "archivedOnly": True}, client=writer)
        self.assertEqual(error["message"], "Session agent:main:live is not archived.")
        self.assertIsNotNone(self.successResultOf(self.gateway.sessions.get("agent:main:live")))
        result = yield self.ok("sessions.delete", {"key": "old", "archivedOnly": True}, client=writer)
        self.assertIs(result["deleted"], True)
        # archivedOnly plus an admin-only key is back to admin.
        yield self.ok("sessions.patch", {"key": "old2", "archived": True})
        error = yield self.error(
            "sessions.delete", {"key": "old2", "archivedOnly": True, "expectedLifecycleRevision": "1"}, client=writer, code="FORBIDDEN"
        )
        self.assertEqual(error["message"], "missing scope: operator.admin")
        self.assertIsNotNone(self.successResultOf(self.gateway.sessions.get("agent:main:old2")))

    @inlineCallbacks
    def test_bad_params(self):
        error = yield self.error("sessions.delete", {})
        self.assertIn("key", error["message"])
        error = yield self.error("sessions.delete", {"key": "x", "deleteTranscript": "yes"})
        self.assertIn("deleteTranscript", error["message"])


class CompactTests(SessionsTestCase):
    @inlineCallbacks
    def test_compact_keeps_max_lines(self):
        entry, lines = self.store_lines("agent:main:x", 10)
        result = yield self.ok("sessions.compact", {"key": "x", "maxLines": 4})
        self.assertEqual((result["ok"], result["key"], result["compacted"], result["kept"]), (True, "agent:main:x", True, 4))
        self.assertTrue(os.path.exists(result["archived"]))
        history = yield self.ok("chat.history", {"sessionKey": "x"})
        self.assertEqual([m["content"] for m in history["messages"]], [f"line {n}" for n in range(6, 10)])
        self.assertEqual(self.successResultOf(self.gateway.sessions.get("agent:main:x"))["compactionCount"], 1)
        again = yield self.ok("sessions.compact", {"key": "x", "maxLines": 4})
        self.assertEqual(again, {"ok": True, "key": "agent:main:x", "compacted": False, "kept": 4})

    @inlineCallbacks
    def test_default_max_lines_and_missing(self):
        self.store_lines("agent:main:x", 5)
        result = yield self.ok("sessions.compact", {"key": "x"})
        self.assertIs(result["compacted"], False)
        missing = yield self.ok("sessions.compact", {"key": "nope"})
        self.assertEqual(missing, {"ok": True, "key": "agent:main:nope", "compacted": False, "reason": "no sessionId"})
        yield self.ok("sessions.patch", {"key": "blank"})
        blank = yield self.ok("sessions.compact", {"key": "blank"})
        self.assertEqual(blank["reason"], "no transcript")

    @inlineCallbacks
    def test_admin_only_and_bad_params(self):
        writer = yield self.operator([WRITE])
        error = yield self.error("sessions.compact", {"key": "x"}, client=writer, code="FORBIDDEN")
        self.assertEqual(error["message"], "missing scope: operator.admin")
        error = yield self.error("sessions.compact", {"key": "x", "maxLines": 0})
        self.assertIn("maxLines", error["message"])


class ChangedEventTests(SessionsTestCase):
    @inlineCallbacks
    def events_before_response(self, client, method, params=None):
        """Send a request; return the sessions.changed events that arrived before its response."""
        skipped_before = len(client.skipped)
        response = yield client.request(method, params)
        self.assertTrue(response["ok"], response)
        return [frame for frame in client.skipped[skipped_before:] if is_sessions_changed(frame)]

    @inlineCallbacks
    def test_only_subscribers_get_events(self):
        watcher = yield self.operator([READ])
        bystander = yield self.operator([READ])
        self.assertEqual((yield self.ok("sessions.subscribe", {}, client=watcher)), {"subscribed": True})

        yield self.ok("sessions.patch", {"key": "work", "label": "W"})
        event = yield watcher.next_matching(is_sessions_changed)
        payload = event["payload"]
        self.assertEqual(payload["sessionKey"], "agent:main:work")
        self.assertEqual(payload["agentId"], "main")
        self.assertEqual(payload["reason"], "patch")
        self.assertIsInstance(payload["ts"], int)
        self.assertEqual(payload["session"]["label"], "W")

        # Anything the gateway sent the bystander before now precedes this response on its socket.
        self.assertEqual((yield self.events_before_response(bystander, "sessions.list", {})), [])
        self.assertEqual([f for f in bystander.skipped if is_sessions_changed(f)], [])
        # The caller itself did not subscribe either.
        self.assertEqual([f for f in self.client.skipped if is_sessions_changed(f)], [])

        yield self.ok("sessions.reset", {"key": "work"})
        self.assertEqual((yield watcher.next_matching(is_sessions_changed))["payload"]["reason"], "reset")
        yield self.ok("sessions.delete", {"key": "work"})
        self.assertEqual((yield watcher.next_matching(is_sessions_changed))["payload"]["reason"], "delete")

        self.assertEqual((yield self.ok("sessions.unsubscribe", {}, client=watcher)), {"subscribed": False})
        yield self.ok("sessions.patch", {"key": "other"})
        self.assertEqual((yield self.events_before_response(watcher, "sessions.list", {})), [])

    @inlineCallbacks
    def test_runs_and_compaction_announce_changes(self):
        watcher = yield self.operator([READ])
        yield self.ok("sessions.subscribe", {}, client=watcher)
        yield self.chat("main", "hi")
        started = yield watcher.next_matching(lambda f: is_sessions_changed(f) and f["payload"]["reason"] == "agent.run.started")
        self.assertEqual(started["payload"]["sessionKey"], "agent:main:main")
        yield watcher.next_matching(lambda f: is_sessions_changed(f) and f["payload"]["reason"] == "agent.run.ended")
        yield self.ok("sessions.compact", {"key": "main", "maxLines": 1})
        compacted = yield watcher.next_matching(is_sessions_changed)
        self.assertEqual(compacted["payload"]["reason"], "compact")


class RestartTests(SessionsTestCase):
    @inlineCallbacks
    def test_data_survives_restart(self):
        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        first = yield self.start(state_dir=state_dir)
        client = yield self.operator(ALL, running=first)
        yield self.chat("work", "keep me", client=client)
        yield self.ok("sessions.patch", {"key": "work", "label": "Persistent", "thinkingLevel": "low"}, client=client)
        yield self.ok("sessions.patch", {"key": "agent:ops:side"}, client=client)
        before = yield self.ok("sessions.list", {}, client=client)

        yield first.websocket.stopService()
        yield first.port.stopListening()
        yield first.gateway.sessions.close()

        second = yield self.start(state_dir=state_dir)
        self.assertEqual(second.gateway.sessions.path, first.gateway.sessions.path)
        self.assertEqual(second.gateway.sessions.summary(0).count, 2)
        client = yield self.operator(ALL, running=second)
        after = yield self.ok("sessions.list", {}, client=client)
        self.assertEqual(after["totalCount"], 2)
        strip = lambda rows: [{k: v for k, v in row.items() if k != "hasActiveRun"} for row in rows]  # noqa: E731
        self.assertEqual(strip(after["sessions"]), strip(before["sessions"]))
        work = next(row for row in after["sessions"] if row["key"] == "agent:main:work")
        self.assertEqual((work["label"], work["thinkingLevel"]), ("Persistent", "low"))
        history = yield self.ok("chat.history", {"sessionKey": "work"}, client=client)
        self.assertEqual([m["role"] for m in history["messages"]], ["user", "assistant"])
        self.assertEqual(history["messages"][0]["content"], "keep me")
        self.assertEqual(history["thinkingLevel"], "low")
        resolved = yield self.ok("sessions.resolve", {"label": "Persistent"}, client=client)
        self.assertEqual(resolved["key"], "agent:main:work")
        # And the conversation carries on where it left off.
        yield self.chat("work", "still there?", client=client)
        sent = self.upstream.requests[-1]["body"]["messages"]
        self.assertEqual([m["content"] for m in sent], ["keep me", "Hello there!", "still there?"])
