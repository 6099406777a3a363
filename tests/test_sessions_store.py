"""``SessionStore``: session rows, transcripts, archives, list filters and crash safety.

Most tests run the store on ``InlineExecutor`` so every Deferred has fired by the time the call
returns (SynchronousTestCase + successResultOf). One class uses the production thread executor,
and one test kills a writer process with SIGKILL mid-stream to show the file stays consistent.
"""
from __future__ import annotations

import os
import sqlite3
import uuid

import orjson
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.stores import sessions
from openclaw.stores.sessions import (
    ARCHIVE_DIR,
    LabelInUse,
    ListQuery,
    SessionConflict,
    SessionNotFound,
    SessionStore,
)
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase



def line(role, text, **extra):
    """A transcript line as the run manager writes it."""
    message = {"role": role, "content": text, **extra}
    return {"type": "message", "id": str(uuid.uuid4()), "timestamp": 1, "message": message}


def read_jsonl(path):
    with open(path, "rb") as handle:
        return [orjson.loads(raw) for raw in handle.read().splitlines()]


class StoreTestMixin:
    def setUp(self):
        self.state_dir = self.mktemp()
        os.makedirs(self.state_dir)
        self.db_path = os.path.join(self.state_dir, "sessions.sqlite")
        self.archive_dir = os.path.join(self.state_dir, ARCHIVE_DIR)
        self.store = self.open()

    def open(self):
        store = SessionStore(SQLiteDatabase(self.db_path, sessions.MIGRATIONS, InlineExecutor()), self.state_dir)
        self.addCleanup(store.close)
        self.successResultOf(store.load())
        return store

    def reopen(self):
        self.successResultOf(self.store.close())
        self.store = self.open()
        return self.store

    def ok(self, d):
        return self.successResultOf(d)

    def sql(self, query, *args):
        connection = sqlite3.connect(self.db_path)
        try:
            return connection.execute(query, args).fetchall()
        finally:
            connection.close()

    def transcript_count(self, session_id):
        return self.sql("SELECT count(*) FROM transcript WHERE session_id = ?", session_id)[0][0]

    def archives(self):
        if not os.path.isdir(self.archive_dir):
            return []
        return sorted(os.listdir(self.archive_dir))

    def session_with_lines(self, key, count, now_ms=1000, start=0):
        entry = self.ok(self.store.ensure(key, now_ms))
        lines = [line("user" if n % 2 == 0 else "assistant", f"message {n}") for n in range(start, start + count)]
        for item in lines:
            self.ok(self.store.append(key, entry["sessionId"], [item], {"updatedAt": now_ms}))
        return entry, lines


class EnsureAndPatchTests(StoreTestMixin, SynchronousTestCase):
    def test_ensure_creates_once(self):
        entry = self.ok(self.store.ensure("agent:main:work", 1000, {"label": "Work", "model": None}))
        uuid.UUID(entry["sessionId"])
        self.assertEqual(entry["updatedAt"], 1000)
        self.assertEqual(entry["sessionStartedAt"], 1000)
        self.assertEqual(entry["agentId"], "main")
        self.assertEqual(entry["label"], "Work")
        self.assertNotIn("model", entry)  # None defaults are not stored
        again = self.ok(self.store.ensure("agent:main:work", 5000, {"label": "Other"}))
        self.assertEqual(again, entry)
        self.assertEqual(self.ok(self.store.get("agent:main:work")), entry)

    def test_ensure_global_has_no_agent(self):
        entry = self.ok(self.store.ensure("global", 1000))
        self.assertNotIn("agentId", entry)

    def test_get_missing_is_none(self):
        self.assertIsNone(self.ok(self.store.get("agent:main:nope")))

    def test_patch_creates_sets_and_clears(self):
        entry = self.ok(self.store.patch("agent:main:x", {"label": "X", "thinkingLevel": "high"}, 2000))
        self.assertEqual(entry["label"], "X")
        self.assertEqual(entry["thinkingLevel"], "high")
        self.assertEqual(entry["updatedAt"], 2000)
        self.assertEqual(entry["agentId"], "main")
        session_id = entry["sessionId"]
        entry = self.ok(self.store.patch("agent:main:x", {"thinkingLevel": None, "verboseLevel": "on"}, 3000))
        self.assertNotIn("thinkingLevel", entry)
        self.assertEqual(entry["verboseLevel"], "on")
        self.assertEqual(entry["sessionId"], session_id)
        self.assertEqual(self.ok(self.store.get("agent:main:x")), entry)
        # A cleared label frees the label column too.
        self.ok(self.store.patch("agent:main:x", {"label": None}, 4000))
        self.assertEqual(self.sql("SELECT label FROM sessions WHERE key = 'agent:main:x'"), [(None,)])

    def test_patch_without_create_on_missing_fails(self):
        self.failureResultOf(self.store.patch("agent:main:x", {"label": "X"}, 1, create=False), SessionNotFound)
        self.assertIsNone(self.ok(self.store.get("agent:main:x")))

    def test_expectation_mismatch_changes_nothing(self):
        entry = self.ok(self.store.patch("agent:main:x", {"label": "X"}, 1000))
        failure = self.failureResultOf(
            self.store.patch("agent:main:x", {"label": "Y", "model": "m"}, 2000, expect={"sessionId": "other"}), SessionConflict
        )
        self.assertIn("sessionId", str(failure.value))
        self.assertEqual(self.ok(self.store.get("agent:main:x")), entry)
        # The matching expectation goes through.
        patched = self.ok(self.store.patch("agent:main:x", {"label": "Y"}, 3000, expect={"sessionId": entry["sessionId"]}))
        self.assertEqual(patched["label"], "Y")

    def test_label_must_be_unique(self):
        self.ok(self.store.patch("agent:main:a", {"label": "Shared"}, 1000))
        before = self.ok(self.store.ensure("agent:main:b", 1000))
        failure = self.failureResultOf(self.store.patch("agent:main:b", {"label": "Shared", "icon": "x"}, 2000), LabelInUse)
        self.assertEqual(str(failure.value), "Shared")
        self.assertEqual(self.ok(self.store.get("agent:main:b")), before)
        # Surrounding whitespace does not dodge the check.
        self.failureResultOf(self.store.patch("agent:main:b", {"label": "  Shared "}, 2000), LabelInUse)
        # A session may re-set its own label, and a missing session is not created on refusal.
        self.ok(self.store.patch("agent:main:a", {"label": "Shared"}, 3000))
        self.failureResultOf(self.store.patch("agent:main:c", {"label": "Shared"}, 3000), LabelInUse)
        self.assertIsNone(self.ok(self.store.get("agent:main:c")))
        # Once the first session lets go, the label is free.
        self.ok(self.store.patch("agent:main:a", {"label": None}, 4000))
        self.assertEqual(self.ok(self.store.patch("agent:main:b", {"label": "Shared"}, 5000))["label"], "Shared")


class ResetTests(StoreTestMixin, SynchronousTestCase):
    def test_reset_starts_over_and_archives(self):
        key = "agent:main:work"
        self.ok(
            self.store.patch(
                key,
                {"label": "Work", "model": "fake/m1", "thinkingLevel": "high", "inputTokens": 5, "outputTokens": 7, "totalTokens": 12, "custom": "x"},
                1000,
            )
        )
        old, lines = self.session_with_lines(key, 4)
        result = self.ok(self.store.reset(key, 2000))
        self.assertNotEqual(result["sessionId"], old["sessionId"])
        self.assertEqual(result["label"], "Work")
        self.assertEqual(result["model"], "fake/m1")
        self.assertEqual(result["thinkingLevel"], "high")
        self.assertEqual(result["agentId"], "main")
        self.assertEqual((result["inputTokens"], result["outputTokens"], result["totalTokens"]), (0, 0, 0))
        self.assertIs(result["systemSent"], False)
        self.assertIs(result["abortedLastRun"], False)
        self.assertEqual((result["updatedAt"], result["sessionStartedAt"]), (2000, 2000))
        self.assertNotIn("custom", result)
        self.assertEqual(self.ok(self.store.get(key)), result)

        self.assertEqual(self.transcript_count(old["sessionId"]), 0)
        self.assertEqual(self.ok(self.store.history(result["sessionId"], 10)), ([], False))
        (name,) = self.archives()
        self.assertTrue(name.startswith(f"{old['sessionId']}.jsonl.reset."), name)
        archived = read_jsonl(os.path.join(self.archive_dir, name))
        self.assertEqual(archived[0]["type"], "session")
        self.assertEqual(archived[0]["id"], old["sessionId"])
        self.assertEqual(archived[0]["archiveReason"], "reset")
        self.assertEqual(archived[1:], lines)

        # Previews derived from the old transcript are gone too.
        page = self.ok(self.store.list(ListQuery(), include_previews=True))
        self.assertEqual(page.rows[0]["lastMessagePreview"], None)
        self.assertEqual(page.rows[0]["firstUserText"], None)

    def test_reset_without_transcript_writes_no_archive(self):
        old = self.ok(self.store.ensure("agent:main:x", 1000))
        new = self.ok(self.store.reset("agent:main:x", 2000, reason="new"))
        self.assertNotEqual(new["sessionId"], old["sessionId"])
        self.assertEqual(self.archives(), [])

    def test_reset_missing_key_creates_it(self):
        entry = self.ok(self.store.reset("agent:main:fresh", 1000))
        self.assertEqual(self.ok(self.store.get("agent:main:fresh")), entry)

    def test_reset_expectation_mismatch(self):
        old, _ = self.session_with_lines("agent:main:x", 2)
        self.failureResultOf(self.store.reset("agent:main:x", 2000, expect={"sessionId": "nope"}), SessionConflict)
        self.assertEqual(self.ok(self.store.get("agent:main:x"))["sessionId"], old["sessionId"])
        self.assertEqual(self.transcript_count(old["sessionId"]), 2)
        self.assertEqual(self.archives(), [])


class DeleteTests(StoreTestMixin, SynchronousTestCase):
    def test_delete_archives_then_removes(self):
        entry, lines = self.session_with_lines("agent:main:x", 3)
        deleted, archived = self.ok(self.store.delete("agent:main:x", 5000))
        self.assertTrue(deleted)
        self.assertEqual(len(archived), 1)
        self.assertEqual(os.path.dirname(archived[0]), self.archive_dir)
        self.assertIn(".jsonl.deleted.", archived[0])
        contents = read_jsonl(archived[0])
        self.assertEqual(contents[0]["archiveReason"], "deleted")
        self.assertEqual(contents[1:], lines)
        self.assertIsNone(self.ok(self.store.get("agent:main:x")))
        self.assertEqual(self.transcript_count(entry["sessionId"]), 0)
        self.assertEqual(self.ok(self.store.delete("agent:main:x", 6000)), (False, []))

    def test_delete_without_transcript_deletion_writes_no_archive(self):
        self.session_with_lines("agent:main:x", 3)
        self.assertEqual(self.ok(self.store.delete("agent:main:x", 5000, delete_transcript=False)), (True, []))
        self.assertEqual(self.archives(), [])
        self.assertIsNone(self.ok(self.store.get("agent:main:x")))

    def test_delete_session_without_lines(self):
        self.ok(self.store.ensure("agent:main:x", 1000))
        self.assertEqual(self.ok(self.store.delete("agent:main:x", 5000)), (True, []))

    def test_delete_expectation_mismatch_keeps_session(self):
        self.session_with_lines("agent:main:x", 1)
        self.failureResultOf(self.store.delete("agent:main:x", 5000, expect={"sessionId": "nope"}), SessionConflict)
        self.assertIsNotNone(self.ok(self.store.get("agent:main:x")))
        self.assertEqual(self.archives(), [])


class CompactTests(StoreTestMixin, SynchronousTestCase):
    def test_keeps_last_lines_and_archives_the_rest(self):
        key = "agent:main:x"
        self.ok(self.store.patch(key, {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, 1000))
        entry, lines = self.session_with_lines(key, 10)
        outcome = self.ok(self.store.compact(key, 4, 2000))
        self.assertTrue(outcome["compacted"])
        self.assertEqual(outcome["kept"], 4)
        self.assertIn(".jsonl.bak.", outcome["archived"])
        archived = read_jsonl(outcome["archived"])
        self.assertEqual(archived[0]["archiveReason"], "bak")
        self.assertEqual(archived[1:], lines[:6])
        rows, has_more = self.ok(self.store.history(entry["sessionId"], 100))
        self.assertEqual([item for _, item in rows], lines[6:])
        self.assertFalse(has_more)
        after = self.ok(self.store.get(key))
        self.assertEqual(after["compactionCount"], 1)
        self.assertEqual(after["updatedAt"], 2000)
        self.assertEqual(after["sessionId"], entry["sessionId"])
        for field in ("inputTokens", "outputTokens", "totalTokens"):
            self.assertNotIn(field, after)

        # Again: the counter keeps counting.
        self.session_with_lines(key, 3, now_ms=3000, start=10)
        outcome = self.ok(self.store.compact(key, 2, 4000))
        self.assertTrue(outcome["compacted"])
        self.assertEqual(self.ok(self.store.get(key))["compactionCount"], 2)
        self.assertEqual(self.transcript_count(entry["sessionId"]), 2)

    def test_nothing_to_compact(self):
        entry, _ = self.session_with_lines("agent:main:x", 3)
        self.assertEqual(self.ok(self.store.compact("agent:main:x", 3, 2000)), {"compacted": False, "kept": 3})
        self.assertEqual(self.ok(self.store.compact("agent:main:x", 10, 2000)), {"compacted": False, "kept": 3})
        self.assertNotIn("compactionCount", self.ok(self.store.get("agent:main:x")))
        self.assertEqual(self.archives(), [])
        self.assertEqual(self.transcript_count(entry["sessionId"]), 3)

    def test_no_transcript(self):
        self.ok(self.store.ensure("agent:main:x", 1000))
        self.assertEqual(self.ok(self.store.compact("agent:main:x", 3, 2000)), {"compacted": False, "reason": "no transcript"})

    def test_missing_session(self):
        self.failureResultOf(self.store.compact("agent:main:nope", 3, 2000), SessionNotFound)

    def test_two_compactions_in_one_millisecond_keep_both_archives(self):
        # Archive names carry a millisecond timestamp; a second compaction at the same instant
        # must not overwrite the first archive (that would silently lose transcript lines).
        key = "agent:main:x"
        _, first = self.session_with_lines(key, 6)
        self.ok(self.store.compact(key, 2, 2000))
        _, second = self.session_with_lines(key, 4, start=6)
        self.ok(self.store.compact(key, 2, 2000))
        archived_lines = []
        for name in self.archives():
            archived_lines.extend(read_jsonl(os.path.join(self.archive_dir, name))[1:])
        everything = first + second
        self.assertEqual(sorted(item["id"] for item in archived_lines), sorted(item["id"] for item in everything[:-2]))


class TranscriptTests(StoreTestMixin, SynchronousTestCase):
    def test_append_requires_session(self):
        self.failureResultOf(self.store.append("agent:main:nope", "sid", [line("user", "hi")], {}), SessionNotFound)
        self.assertEqual(self.sql("SELECT count(*) FROM transcript"), [(0,)])

    def test_append_merges_entry_changes(self):
        entry = self.ok(self.store.ensure("agent:main:x", 1000, {"abortedLastRun": True}))
        updated = self.ok(
            self.store.append("agent:main:x", entry["sessionId"], [line("user", "hi")], {"updatedAt": 2000, "abortedLastRun": None, "model": "m1"})
        )
        self.assertEqual(updated["updatedAt"], 2000)
        self.assertEqual(updated["model"], "m1")
        self.assertNotIn("abortedLastRun", updated)
        self.assertEqual(self.ok(self.store.get("agent:main:x")), updated)

    def test_history_oldest_first_with_limit_and_paging(self):
        entry, lines = self.session_with_lines("agent:main:x", 7)
        sid = entry["sessionId"]
        rows, has_more = self.ok(self.store.history(sid, 100))
        self.assertEqual([item for _, item in rows], lines)
        self.assertFalse(has_more)
        ids = [row_id for row_id, _ in rows]
        self.assertEqual(ids, sorted(ids))

        rows, has_more = self.ok(self.store.history(sid, 3))
        self.assertEqual([item for _, item in rows], lines[4:])
        self.assertTrue(has_more)
        rows, has_more = self.ok(self.store.history(sid, 3, before_id=rows[0][0]))
        self.assertEqual([item for _, item in rows], lines[1:4])
        self.assertTrue(has_more)
        rows, has_more = self.ok(self.store.history(sid, 3, before_id=rows[0][0]))
        self.assertEqual([item for _, item in rows], lines[:1])
        self.assertFalse(has_more)

        rows, has_more = self.ok(self.store.history(sid, 7))
        self.assertEqual(len(rows), 7)
        self.assertFalse(has_more)

    def test_history_is_per_session(self):
        a, a_lines = self.session_with_lines("agent:main:a", 2)
        b, b_lines = self.session_with_lines("agent:main:b", 3)
        self.assertEqual([item for _, item in self.ok(self.store.history(a["sessionId"], 10))[0]], a_lines)
        self.assertEqual([item for _, item in self.ok(self.store.history(b["sessionId"], 10))[0]], b_lines)
        self.assertEqual(self.ok(self.store.history("unknown-session", 10)), ([], False))

    def test_multi_line_append_is_one_transaction(self):
        entry = self.ok(self.store.ensure("agent:main:x", 1000))
        items = [line("user", "a"), line("assistant", "b")]
        self.ok(self.store.append("agent:main:x", entry["sessionId"], items, {}))
        self.assertEqual([item for _, item in self.ok(self.store.history(entry["sessionId"], 10))[0]], items)


class PreviewTests(StoreTestMixin, SynchronousTestCase):
    def test_statuses(self):
        self.session_with_lines("agent:main:full", 2)
        self.ok(self.store.ensure("agent:main:empty", 1000))
        previews = self.ok(self.store.preview(["agent:main:full", "agent:main:empty", "agent:main:missing"], 10, 100))
        self.assertEqual(
            previews,
            [
                {"key": "agent:main:full", "status": "ok", "items": [{"role": "user", "text": "message 0"}, {"role": "assistant", "text": "message 1"}]},
                {"key": "agent:main:empty", "status": "empty", "items": []},
                {"key": "agent:main:missing", "status": "missing", "items": []},
            ],
        )

    def test_limit_takes_newest_in_order(self):
        self.session_with_lines("agent:main:x", 6)
        (preview,) = self.ok(self.store.preview(["agent:main:x"], 2, 100))
        self.assertEqual([item["text"] for item in preview["items"]], ["message 4", "message 5"])

    def test_truncation_and_roles(self):
        entry = self.ok(self.store.ensure("agent:main:x", 1000))
        items = [
            line("user", "word " * 50),
            line("toolResult", [{"type": "text", "text": "tool output"}]),
            line("system", "hidden system line"),
            line("assistant", [{"type": "image", "data": "..."}]),  # no text: skipped
            {"type": "custom", "data": {"x": 1}},
        ]
        self.ok(self.store.append("agent:main:x", entry["sessionId"], items, {}))
        (preview,) = self.ok(self.store.preview(["agent:main:x"], 10, 20))
        self.assertEqual([item["role"] for item in preview["items"]], ["user", "tool"])
        text = preview["items"][0]["text"]
        self.assertLessEqual(len(text), 20)
        self.assertTrue(text.endswith("…"), text)
        self.assertTrue(text.startswith("word word"), text)
        self.assertEqual(preview["items"][1]["text"], "tool output")

    def test_only_empty_lines(self):
        entry = self.ok(self.store.ensure("agent:main:x", 1000))
        self.ok(self.store.append("agent:main:x", entry["sessionId"], [{"type": "custom"}], {}))
        (preview,) = self.ok(self.store.preview(["agent:main:x"], 10, 100))
        self.assertEqual(preview["status"], "empty")


class ListTests(StoreTestMixin, SynchronousTestCase):
    def setUp(self):
        super().setUp()
        ok, store = self.ok, self.store
        ok(store.patch("agent:main:main", {"displayName": "Home"}, 1000))
        ok(store.patch("agent:main:work", {"label": "Work Stuff"}, 2000))
        ok(store.patch("agent:ops:deploy", {"label": "Deploy", "spawnedBy": "agent:main:work"}, 3000))
        ok(store.patch("agent:ops:child", {"spawnedBy": "agent:main:work"}, 4000))
        ok(store.patch("agent:main:old", {"archived": True}, 5000))
        ok(store.patch("global", {}, 6000))
        ok(store.patch("unknown", {}, 7000))
        ok(store.patch("agent:main:cron:daily:run:r1", {}, 8000))
        ok(store.patch("agent:main:cron:daily", {}, 900))

    def keys(self, **query):
        page = self.ok(self.store.list(ListQuery(**query)))
        return [row["key"] for row in page.rows]

    def test_default_newest_first_without_hidden_global_unknown_archived(self):
        page = self.ok(self.store.list(ListQuery()))
        self.assertEqual(
            [row["key"] for row in page.rows],
            ["agent:ops:child", "agent:ops:deploy", "agent:main:work", "agent:main:main", "agent:main:cron:daily"],
        )
        self.assertEqual(page.total, 5)
        self.assertEqual(page.rows[2]["entry"]["label"], "Work Stuff")
        self.assertNotIn("lastMessagePreview", page.rows[0])

    def test_include_global_and_unknown(self):
        self.assertEqual(self.keys(include_global=True)[0], "global")
        self.assertNotIn("unknown", self.keys(include_global=True))
        self.assertEqual(self.keys(include_unknown=True)[0], "unknown")
        self.assertNotIn("global", self.keys(include_unknown=True))
        self.assertEqual(self.keys(include_global=True, include_unknown=True)[:2], ["unknown", "global"])

    def test_cron_run_keys_never_listed(self):
        for query in ({}, {"archived": None}, {"search": "cron"}, {"include_global": True, "include_unknown": True}):
            self.assertNotIn("agent:main:cron:daily:run:r1", self.keys(**query), query)
        self.assertIn("agent:main:cron:daily", self.keys(search="cron"))

    def test_agent_filter(self):
        self.assertEqual(self.keys(agent_id="ops"), ["agent:ops:child", "agent:ops:deploy"])
        self.assertEqual(self.keys(agent_id="nobody"), [])

    def test_label_filter(self):
        self.assertEqual(self.keys(label="Deploy"), ["agent:ops:deploy"])
        self.assertEqual(self.keys(label=" Deploy "), ["agent:ops:deploy"])
        self.assertEqual(self.keys(label="deploy"), [])

    def test_spawned_by_filter(self):
        self.assertEqual(self.keys(spawned_by="agent:main:work"), ["agent:ops:child", "agent:ops:deploy"])

    def test_search_is_case_insensitive_over_label_display_name_key_and_session_id(self):
        self.assertEqual(self.keys(search="WORK STUFF"), ["agent:main:work"])
        self.assertEqual(self.keys(search="home"), ["agent:main:main"])
        self.assertEqual(self.keys(search="OPS:CHI"), ["agent:ops:child"])
        session_id = self.ok(self.store.get("agent:ops:deploy"))["sessionId"]
        self.assertEqual(self.keys(search=session_id.upper()[:13]), ["agent:ops:deploy"])
        self.assertEqual(self.keys(search="no such thing"), [])

    def test_active_since(self):
        self.assertEqual(self.keys(active_since_ms=3000), ["agent:ops:child", "agent:ops:deploy"])
        self.assertEqual(self.keys(active_since_ms=3001), ["agent:ops:child"])

    def test_archived_filter(self):
        self.assertEqual(self.keys(archived=True), ["agent:main:old"])
        self.assertIn("agent:main:old", self.keys(archived=None))
        self.assertEqual(len(self.keys(archived=None)), 6)
        self.ok(self.store.patch("agent:main:old", {"archived": None}, 5000))
        self.assertIn("agent:main:old", self.keys())

    def test_offset_limit_and_total(self):
        page = self.ok(self.store.list(ListQuery(limit=2)))
        self.assertEqual([row["key"] for row in page.rows], ["agent:ops:child", "agent:ops:deploy"])
        self.assertEqual(page.total, 5)
        page = self.ok(self.store.list(ListQuery(limit=2, offset=2)))
        self.assertEqual([row["key"] for row in page.rows], ["agent:main:work", "agent:main:main"])
        page = self.ok(self.store.list(ListQuery(limit=2, offset=4)))
        self.assertEqual([row["key"] for row in page.rows], ["agent:main:cron:daily"])
        page = self.ok(self.store.list(ListQuery(limit=2, offset=10)))
        self.assertEqual((page.rows, page.total), ([], 5))
        page = self.ok(self.store.list(ListQuery(agent_id="ops", limit=1)))
        self.assertEqual(page.total, 2)

    def test_filters_combine(self):
        self.assertEqual(self.keys(agent_id="ops", label="Deploy"), ["agent:ops:deploy"])
        self.assertEqual(self.keys(agent_id="main", spawned_by="agent:main:work"), [])

    def test_ties_on_updated_at_sort_by_key(self):
        self.ok(self.store.patch("agent:main:b", {}, 9000))
        self.ok(self.store.patch("agent:main:a", {}, 9000))
        self.assertEqual(self.keys(limit=2), ["agent:main:a", "agent:main:b"])

    def test_previews(self):
        entry = self.ok(self.store.get("agent:main:work"))
        self.ok(
            self.store.append(
                "agent:main:work",
                entry["sessionId"],
                [line("user", "first question"), line("assistant", "an answer"), line("user", "second   question")],
                {},
            )
        )
        self.ok(self.store.append("agent:main:work", entry["sessionId"], [line("assistant", "latest")], {}))
        page = self.ok(self.store.list(ListQuery(label="Work Stuff"), include_previews=True))
        (row,) = page.rows
        self.assertEqual(row["firstUserText"], "first question")
        self.assertEqual(row["lastMessagePreview"], "latest")

    def test_find(self):
        self.assertEqual([key for key, _ in self.ok(self.store.find(label="Deploy"))], ["agent:ops:deploy"])
        self.assertEqual([key for key, _ in self.ok(self.store.find(key="global"))], ["global"])
        self.assertEqual(self.ok(self.store.find(key="agent:main:cron:daily:run:r1")), [])
        found = self.ok(self.store.find(spawned_by="agent:main:work"))
        self.assertEqual([key for key, _ in found], ["agent:ops:child", "agent:ops:deploy"])


class SearchIndexTests(StoreTestMixin, SynchronousTestCase):
    """Selective searches go through the trigram index, broad ones scan; both give the same rows."""

    def setUp(self):
        super().setUp()
        self.broad = sessions.SEARCH_INDEX_MAX_HITS + 5
        connection = sqlite3.connect(self.db_path, isolation_level=None)
        connection.execute("BEGIN")
        for index in range(self.broad):
            SessionStore._put(connection, f"agent:main:common-{index}", {"sessionId": f"s{index}", "updatedAt": index})
        for index in range(3):
            SessionStore._put(connection, f"agent:main:rare-{index}", {"sessionId": f"r{index}", "updatedAt": 10**9 + index, "label": f"Needle {index}"})
        connection.execute("COMMIT")
        connection.close()

    def search(self, term, limit=10):
        return self.ok(self.store.list(ListQuery(limit=limit, search=term)))

    def test_index_exists_and_follows_changes(self):
        self.assertEqual(self.sql("SELECT count(*) FROM session_search WHERE session_search MATCH '\"needle\"'"), [(3,)])
        self.ok(self.store.patch("agent:main:rare-0", {"label": "haystack"}, 5))
        self.ok(self.store.delete("agent:main:rare-1", 6))
        page = self.search("needle")
        self.assertEqual([row["key"] for row in page.rows], ["agent:main:rare-2"])
        self.assertEqual(self.search("haystack").total, 1)

    def test_search_text_with_nul_or_quotes_is_a_plain_substring(self):
        """FTS5 cannot take NUL in a query: such a search scans instead of failing."""
        self.assertEqual(self.search("Needle\x00 0").total, 0)
        self.assertEqual(self.search('Nee"dle').total, 0)
        self.assertEqual(self.search("edle 1").total, 1)

    def test_selective_and_broad_searches(self):
        page = self.search("needle")
        self.assertEqual(page.total, 3)
        self.assertEqual([row["key"] for row in page.rows], ["agent:main:rare-2", "agent:main:rare-1", "agent:main:rare-0"])
        page = self.search("common", limit=5)
        self.assertEqual(page.total, self.broad)
        self.assertEqual(len(page.rows), 5)
        self.assertEqual(page.rows[0]["key"], f"agent:main:common-{self.broad - 1}")

    def test_short_terms_and_quotes_scan(self):
        self.assertEqual(self.search("ne").total, 3)
        self.assertEqual(self.search('needle "x').total, 0)

    def test_without_the_index_search_still_works(self):
        """SQLite builds without FTS5 trigram skip the index; search falls back to scanning."""
        self.successResultOf(self.store.close())
        connection = sqlite3.connect(self.db_path, isolation_level=None)
        for trigger in ("insert", "delete", "update"):
            connection.execute(f"DROP TRIGGER sessions_search_{trigger}")
        connection.execute("DROP TABLE session_search")
        connection.close()
        self.store = self.open()
        self.assertEqual(self.search("needle").total, 3)
        self.assertEqual(self.search("common", limit=1).total, self.broad)


class SummaryAndDurabilityTests(StoreTestMixin, SynchronousTestCase):
    def test_summary_counts_and_recent(self):
        self.assertEqual(self.store.summary(0).count, 0)
        for n in range(7):
            self.ok(self.store.ensure(f"agent:main:s{n}", 1000 + n))
        summary = self.store.summary(2000)
        self.assertEqual(summary.count, 7)
        self.assertEqual([item["key"] for item in summary.recent], [f"agent:main:s{n}" for n in (6, 5, 4, 3, 2)])
        self.assertEqual(summary.recent[0], {"key": "agent:main:s6", "updatedAt": 1006, "age": 994})
        self.ok(self.store.delete("agent:main:s6", 3000))
        self.assertEqual(self.store.summary(3000).count, 6)
        self.assertEqual(self.store.summary(3000).recent[0]["key"], "agent:main:s5")
        # A failed write leaves the summary alone.
        self.failureResultOf(self.store.compact("agent:main:nope", 1, 4000), SessionNotFound)
        self.assertEqual(self.store.summary(3000).count, 6)

    def test_summary_loaded_on_open(self):
        self.ok(self.store.ensure("agent:main:a", 1000))
        self.ok(self.store.ensure("agent:main:b", 2000))
        store = self.reopen()
        summary = store.summary(2000)
        self.assertEqual(summary.count, 2)
        self.assertEqual(summary.recent[0]["key"], "agent:main:b")

    def test_data_survives_close_and_reopen(self):
        entry = self.ok(self.store.patch("agent:main:x", {"label": "Kept", "thinkingLevel": "low"}, 1000))
        _, lines = self.session_with_lines("agent:main:x", 3)
        store = self.reopen()
        self.assertEqual(self.ok(store.get("agent:main:x")), entry)
        rows, _ = self.ok(store.history(entry["sessionId"], 10))
        self.assertEqual([item for _, item in rows], lines)
        self.assertEqual([row["key"] for row in self.ok(store.list(ListQuery(label="Kept"))).rows], ["agent:main:x"])
        self.assertEqual(store.path, self.db_path)


class ThreadedStoreTests(TestCase):
    """The production executor: same behaviour with the work on a worker thread."""

    @inlineCallbacks
    def test_round_trip_on_worker_thread(self):
        state_dir = self.mktemp()
        path = os.path.join(state_dir, "sessions.sqlite")
        store = SessionStore(SQLiteDatabase.threaded(reactor, path, sessions.MIGRATIONS), state_dir)
        closed = []
        # Closing a threaded database twice never fires, so clean up only if the test did not.
        self.addCleanup(lambda: None if closed else store.close())
        yield store.load()
        entry = yield store.ensure("agent:main:x", 1000)
        lines = [line("user", f"m{n}") for n in range(20)]
        yield gatherResults([store.append("agent:main:x", entry["sessionId"], [item], {"updatedAt": 2000}) for item in lines])
        rows, has_more = yield store.history(entry["sessionId"], 100)
        self.assertEqual([item for _, item in rows], lines)  # submission order is disk order
        self.assertFalse(has_more)
        self.assertEqual(store.summary(2000).count, 1)
        deleted, archived = yield store.delete("agent:main:x", 3000)
        self.assertTrue(deleted)
        self.assertEqual(read_jsonl(archived[0])[1:], lines)
        closed.append(True)
        yield store.close()

        reopened = SessionStore(SQLiteDatabase.threaded(reactor, path, sessions.MIGRATIONS), state_dir)
        self.addCleanup(reopened.close)
        yield reopened.load()
        self.assertEqual(reopened.summary(3000).count, 0)
        found = yield reopened.get("agent:main:x")
        self.assertIsNone(found)
