"""Session rows and their transcripts in one SQLite file (``<state-dir>/sessions.sqlite``).

Each session row keeps its full entry as JSON (the reference has dozens of optional fields and
adds more every release) next to the few columns lists filter and sort on. Transcript lines are
rows too, one per entry, so appending a message is one small transaction: a ``kill -9`` at any
moment loses at most the line being written, and the file is always readable (WAL).

Transcript lines that leave the database (reset, delete, compaction) are first written to an
archive JSONL file under ``<state-dir>/sessions/archive`` and only then removed, so nothing a user
stored is silently lost.

Every method returns a Deferred; the work runs on the database's worker thread.
"""
from __future__ import annotations

import builtins
import datetime
import os
import sqlite3
import uuid
from typing import Any, TypeVar
from collections.abc import Callable, Mapping, Sequence

import attrs
import orjson
from twisted.internet.defer import Deferred

from ..sessions.keys import GLOBAL_KEY, UNKNOWN_KEY, agent_id_of, is_cron_run_key
from zope.interface import implementer

from ..seams import ISessionStore
from . import session_usage, usage
from .sqlite import SQLiteDatabase

T = TypeVar("T")

MIGRATIONS: list[Any] = [
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        agent_id TEXT,
        session_id TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        label TEXT,
        spawned_by TEXT,
        hidden INTEGER NOT NULL DEFAULT 0,
        archived INTEGER NOT NULL DEFAULT 0,
        search_text TEXT NOT NULL,
        first_user_text TEXT,
        last_message_preview TEXT,
        entry TEXT NOT NULL
    );
    CREATE INDEX sessions_listing ON sessions(updated_at DESC, key, hidden, archived, agent_id, search_text);
    CREATE INDEX sessions_by_agent ON sessions(agent_id, updated_at DESC);
    CREATE INDEX sessions_by_label ON sessions(label);
    CREATE INDEX sessions_by_spawner ON sessions(spawned_by);
    CREATE INDEX sessions_by_session_id ON sessions(session_id);
    CREATE TABLE transcript (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL,
        entry TEXT NOT NULL
    );
    CREATE INDEX transcript_by_session ON transcript(session_id, id)
    """,
]

# A trigram index answers selective substring searches without reading every row; SQLite
# builds without FTS5 or the trigram tokenizer (before 3.34) simply search by scanning.
SEARCH_INDEX = [
    "CREATE VIRTUAL TABLE session_search USING fts5("
    "search_text, content='sessions', content_rowid='id', tokenize='trigram')",
    """CREATE TRIGGER sessions_search_insert AFTER INSERT ON sessions BEGIN
        INSERT INTO session_search(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    """CREATE TRIGGER sessions_search_delete AFTER DELETE ON sessions BEGIN
        INSERT INTO session_search(session_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    END""",
    """CREATE TRIGGER sessions_search_update AFTER UPDATE OF search_text ON sessions
    WHEN old.search_text IS NOT new.search_text BEGIN
        INSERT INTO session_search(session_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
        INSERT INTO session_search(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    "INSERT INTO session_search(session_search) VALUES ('rebuild')",
]


def _add_search_index(connection: sqlite3.Connection) -> None:
    connection.execute("SAVEPOINT search_index")
    try:
        for statement in SEARCH_INDEX:
            connection.execute(statement)
    except sqlite3.OperationalError:
        connection.execute("ROLLBACK TO search_index")
    connection.execute("RELEASE search_index")


MIGRATIONS.append(_add_search_index)

# Every write refreshes the count ``health`` reports; a trigger-kept counter makes that one row
# read instead of a count over every session (9-20 ms at 100,000 sessions, per message).
SESSION_COUNT = (
    "CREATE TABLE session_count (id INTEGER PRIMARY KEY CHECK (id = 1), visible INTEGER NOT NULL)",
    "INSERT INTO session_count (id, visible) VALUES (1, (SELECT count(*) FROM sessions WHERE hidden = 0))",
    """CREATE TRIGGER session_count_insert AFTER INSERT ON sessions WHEN new.hidden = 0 BEGIN
        UPDATE session_count SET visible = visible + 1 WHERE id = 1;
    END""",
    """CREATE TRIGGER session_count_delete AFTER DELETE ON sessions WHEN old.hidden = 0 BEGIN
        UPDATE session_count SET visible = visible - 1 WHERE id = 1;
    END""",
)
MIGRATIONS.append(lambda connection: [connection.execute(statement) for statement in SESSION_COUNT])

# Tokens spent per answered run, for usage.cost (stores/usage.py); survives session resets.
MIGRATIONS.append(usage.MIGRATION)

# Above SEARCH_INDEX_MAX_HITS trigram hits a term is broad, and walking the recency index with a
# substring test finds the first page sooner than sorting every hit; the index still counts
# faster than a scan up to SEARCH_INDEX_COUNT_HITS.
SEARCH_INDEX_MAX_HITS = 2000
SEARCH_INDEX_COUNT_HITS = 20_000
MIN_TRIGRAM_SEARCH = 3

PREVIEW_CHARS = 240
DERIVED_TITLE_CHARS = 60
ARCHIVE_DIR = os.path.join("sessions", "archive")

# Fields ``sessions.reset`` carries into the fresh entry (everything else starts over).
RESET_CARRIED_FIELDS = (
    "thinkingLevel",
    "verboseLevel",
    "reasoningLevel",
    "elevatedLevel",
    "responseUsage",
    "model",
    "modelOverride",
    "providerOverride",
    "contextTokens",
    "sendPolicy",
    "groupActivation",
    "label",
    "displayName",
    "origin",
    "lastChannel",
    "lastTo",
    "lastAccountId",
    "skillsSnapshot",
    "spawnedBy",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "pinned",
    "icon",
    "color",
    "category",
)


class SessionNotFound(Exception):
    pass


class LabelInUse(Exception):
    """Labels name sessions for ``sessions.resolve``, so two sessions may not share one."""


class SessionConflict(Exception):
    """An ``expected*`` guard did not match the stored entry."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str) -> Any:
    return orjson.loads(text)


def _search_text(key: str, entry: Mapping[str, Any]) -> str:
    parts = (entry.get("displayName"), entry.get("label"), entry.get("subject"), entry.get("sessionId"), key)
    return "\n".join(str(part) for part in parts if part).lower()


def message_text(message: Mapping[str, Any]) -> str:
    """The plain text of a transcript message (string content or text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def model_override(entry: Mapping[str, Any]) -> str | None:
    """The ``provider/model`` a session was switched to (``sessions.patch {model}``), if any.

    ``model``/``modelProvider`` on an entry record what last ran, which after a fallback is not
    what the user chose, so the choice lives in ``modelOverride``/``providerOverride``.
    """
    model = entry.get("modelOverride")
    if not model:
        return None
    provider = entry.get("providerOverride")
    return f"{provider}/{model}" if provider else model


def truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


@attrs.frozen
class ListQuery:
    """``sessions.list`` filters, already normalised by the method layer."""

    limit: int | None = None
    offset: int = 0
    active_since_ms: int | None = None
    include_global: bool = False
    include_unknown: bool = False
    label: str | None = None
    spawned_by: str | None = None
    agent_id: str | None = None
    search: str | None = None
    archived: bool | None = False  # None means archived and live alike


@attrs.frozen
class ListPage:
    rows: list[dict[str, Any]]
    total: int


@attrs.frozen
class StoreSummary:
    count: int
    recent: list[dict[str, Any]]


@implementer(ISessionStore)
class SessionStore:
    # The LIMIT value meaning "no limit" in this dialect (SQLite: -1; PostgreSQL: NULL).
    NO_LIMIT: int | None = -1

    def __init__(self, database: SQLiteDatabase, state_dir: str):
        self._db = database
        self._archive_dir = os.path.join(state_dir, ARCHIVE_DIR)
        self._count = 0
        self._search_index: bool | None = None
        self._recent: list[tuple[str, int]] = []
        # Bumped whenever the count or the recent keys are replaced: what caches of them key on.
        self.summary_version = 0

    @property
    def path(self) -> str:
        return self._db.path

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> Deferred[None]:
        """Open (and migrate) the file and prime the counts ``health`` reports without I/O."""

        return self._db.run(self._refresh_summary).addCallback(self._set_summary)

    def close(self) -> Deferred[None]:
        return self._db.close()

    def _set_summary(self, summary: tuple[int, list[tuple[str, int]]]) -> None:
        self._count, self._recent = summary
        self.summary_version += 1

    def summary(self, now_ms: int) -> StoreSummary:
        """Session count and the five most recently updated keys, from memory."""
        return StoreSummary(
            self._count,
            [{"key": key, "updatedAt": updated, "age": max(0, now_ms - updated)} for key, updated in self._recent],
        )

    def _refresh_summary(self, connection: sqlite3.Connection) -> tuple[int, list[tuple[str, int]]]:
        (count,) = connection.execute("SELECT visible FROM session_count WHERE id = 1").fetchone()
        recent = connection.execute(
            "SELECT key, updated_at FROM sessions WHERE hidden = 0 ORDER BY updated_at DESC LIMIT 5"
        ).fetchall()
        return count, [(key, updated) for key, updated in recent]

    def _write(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run a mutation and refresh the in-memory summary in the same transaction."""

        def mutate(connection: sqlite3.Connection) -> tuple[T, tuple[int, list[tuple[str, int]]]]:
            result = work(connection, *args)
            return result, self._refresh_summary(connection)

        def unpack(outcome: tuple[T, tuple[int, list[tuple[str, int]]]]) -> T:
            result, summary = outcome
            self._set_summary(summary)
            return result

        return self._db.run(mutate).addCallback(unpack)

    # -- rows --------------------------------------------------------------------------------

    @staticmethod
    def _get(connection: sqlite3.Connection, key: str) -> dict[str, Any] | None:
        row = connection.execute("SELECT entry FROM sessions WHERE key = ?", (key,)).fetchone()
        return _loads(row[0]) if row else None

    @staticmethod
    def _put(connection: sqlite3.Connection, key: str, entry: dict[str, Any]) -> None:
        connection.execute(
            """
            INSERT INTO sessions
                (key, agent_id, session_id, updated_at, label, spawned_by, hidden, archived, search_text, entry)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(key) DO UPDATE SET
                agent_id = excluded.agent_id, session_id = excluded.session_id,
                updated_at = excluded.updated_at, label = excluded.label,
                spawned_by = excluded.spawned_by, hidden = excluded.hidden, archived = excluded.archived,
                search_text = excluded.search_text, entry = excluded.entry
            """,
            (
                key,
                agent_id_of(key),
                entry["sessionId"],
                int(entry.get("updatedAt") or 0),
                (entry.get("label") or "").strip() or None,
                entry.get("spawnedBy"),
                1 if is_cron_run_key(key) else 0,
                1 if entry.get("archived") else 0,
                _search_text(key, entry),
                _dumps(entry),
            ),
        )

    def get(self, key: str) -> Deferred[dict[str, Any] | None]:
        """Fires with the entry dict, or None."""
        return self._db.run(self._get, key)

    def ensure(self, key: str, now_ms: int, defaults: Mapping[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """Fires with the entry for ``key``, creating it (new sessionId) when missing."""

        def work(connection: sqlite3.Connection) -> dict[str, Any]:
            entry = self._get(connection, key)
            if entry is None:
                entry = _new_entry(key, now_ms)
                entry.update({k: v for k, v in (defaults or {}).items() if v is not None})
                self._put(connection, key, entry)
            return entry

        return self._write(work)

    def patch(
        self, key: str, changes: Mapping[str, Any], now_ms: int, expect: Mapping[str, Any] | None = None, create: bool = True
    ) -> Deferred[dict[str, Any]]:
        """Apply ``changes`` (``None`` removes a field); fires with the new entry.

        ``expect`` maps entry fields to the values the caller last saw; a mismatch fails with
        :class:`SessionConflict` and changes nothing.
        """

        def work(connection: sqlite3.Connection) -> dict[str, Any]:
            entry = self._get(connection, key)
            if entry is None:
                if not create:
                    raise SessionNotFound(key)
                entry = _new_entry(key, now_ms)
            _check_expectations(entry, expect)
            label = changes.get("label")
            if isinstance(label, str) and label.strip():
                taken = connection.execute(
                    "SELECT 1 FROM sessions WHERE label = ? AND key != ? LIMIT 1", (label.strip(), key)
                ).fetchone()
                if taken:
                    raise LabelInUse(label.strip())
            _apply_changes(entry, changes)
            entry["updatedAt"] = now_ms
            self._put(connection, key, entry)
            return entry

        return self._write(work)

    def reset(self, key: str, now_ms: int, reason: str = "reset", expect: Mapping[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """A fresh entry with a new sessionId; the old transcript is archived. Fires with the entry."""

        def work(connection: sqlite3.Connection) -> dict[str, Any]:
            old = self._get(connection, key) or {}
            _check_expectations(old, expect)
            entry: dict[str, Any] = {field: old[field] for field in RESET_CARRIED_FIELDS if field in old}
            agent = agent_id_of(key)
            if agent:
                entry["agentId"] = agent
            entry.update(
                {
                    "sessionId": str(uuid.uuid4()),
                    "updatedAt": now_ms,
                    "sessionStartedAt": now_ms,
                    "systemSent": False,
                    "abortedLastRun": False,
                    "inputTokens": 0,
                    "outputTokens": 0,
                    "totalTokens": 0,
                }
            )
            if old.get("sessionId"):
                self._archive(connection, old["sessionId"], reason, now_ms)
            self._put(connection, key, entry)
            connection.execute(
                "UPDATE sessions SET first_user_text = NULL, last_message_preview = NULL WHERE key = ?", (key,)
            )
            return entry

        return self._write(work)

    def delete(
        self, key: str, now_ms: int, delete_transcript: bool = True, expect: Mapping[str, Any] | None = None
    ) -> Deferred[tuple[bool, list[str]]]:
        """Fires with ``(deleted, archived_paths)``."""

        def work(connection: sqlite3.Connection) -> tuple[bool, list[str]]:
            entry = self._get(connection, key)
            if entry is None:
                return False, []
            _check_expectations(entry, expect)
            archived: list[str] = []
            if delete_transcript:
                path = self._archive(connection, entry["sessionId"], "deleted", now_ms)
                if path:
                    archived.append(path)
            connection.execute("DELETE FROM sessions WHERE key = ?", (key,))
            return True, archived

        return self._write(work)

    def compact(self, key: str, max_lines: int, now_ms: int) -> Deferred[dict[str, Any]]:
        """Keep the last ``max_lines`` transcript lines; the older ones go to an archive file."""

        def work(connection: sqlite3.Connection) -> dict[str, Any]:
            entry = self._get(connection, key)
            if entry is None:
                raise SessionNotFound(key)
            session_id = entry.get("sessionId")
            if not session_id:
                return {"compacted": False, "reason": "no sessionId"}
            (count,) = connection.execute("SELECT count(*) FROM transcript WHERE session_id = ?", (session_id,)).fetchone()
            if count == 0:
                return {"compacted": False, "reason": "no transcript"}
            if count <= max_lines:
                return {"compacted": False, "kept": count}
            (first_kept,) = connection.execute(
                "SELECT id FROM transcript WHERE session_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (session_id, max_lines - 1),
            ).fetchone()
            path = self._archive(connection, session_id, "bak", now_ms, before_id=first_kept, keep_rows=False)
            for field in ("inputTokens", "outputTokens", "totalTokens"):
                entry.pop(field, None)
            entry["compactionCount"] = int(entry.get("compactionCount") or 0) + 1
            entry["updatedAt"] = now_ms
            self._put(connection, key, entry)
            return {"compacted": True, "archived": path, "kept": max_lines}

        return self._write(work)

    def _archive(
        self,
        connection: sqlite3.Connection,
        session_id: str,
        reason: str,
        now_ms: int,
        before_id: int | None = None,
        keep_rows: bool = False,
    ) -> str | None:
        """Copy transcript lines to ``<sessionId>.jsonl.<reason>.<ts>`` (fsynced), then delete them."""
        query = "SELECT id, entry FROM transcript WHERE session_id = ?"
        args: tuple[Any, ...] = (session_id,)
        if before_id is not None:
            query += " AND id < ?"
            args += (before_id,)
        rows = connection.execute(query + " ORDER BY id", args).fetchall()
        if not rows:
            return None
        os.makedirs(self._archive_dir, mode=0o700, exist_ok=True)
        stamp = _iso(now_ms).replace(":", "-")
        path = os.path.join(self._archive_dir, f"{session_id}.jsonl.{reason}.{stamp}")
        # Two archives in one millisecond (say, two compactions) must not overwrite each other.
        base, suffix = path, 1
        while os.path.exists(path):
            path, suffix = f"{base}.{suffix}", suffix + 1
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                header = {"type": "session", "id": session_id, "timestamp": _iso(now_ms), "archiveReason": reason}
                handle.write(orjson.dumps(header) + b"\n")
                for _, text in rows:
                    handle.write(text.encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        if not keep_rows:
            last_id = rows[-1][0]
            connection.execute("DELETE FROM transcript WHERE session_id = ? AND id <= ?", (session_id, last_id))
        return path

    # -- transcript --------------------------------------------------------------------------

    def append(
        self, key: str, session_id: str, entries: Sequence[Mapping[str, Any]], entry_changes: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        """Append transcript entries and update the session row in one transaction.

        ``entry_changes`` is merged into the session entry (``None`` removes); the row must exist.
        Fires with the updated session entry.
        """

        def work(connection: sqlite3.Connection) -> dict[str, Any]:
            entry = self._get(connection, key)
            if entry is None:
                raise SessionNotFound(key)
            first_user = last_preview = None
            for item in entries:
                connection.execute(
                    "INSERT INTO transcript (session_id, entry) VALUES (?, ?)", (session_id, _dumps(item))
                )
                message = item.get("message") if item.get("type") == "message" else None
                if isinstance(message, dict):
                    usage.record_message(connection, key, message)
                if isinstance(message, dict) and message.get("role") in ("user", "assistant"):
                    text = message_text(message)
                    if text:
                        last_preview = truncate(text, PREVIEW_CHARS)
                        if message.get("role") == "user" and first_user is None:
                            first_user = truncate(text, DERIVED_TITLE_CHARS)
            _apply_changes(entry, entry_changes)
            self._put(connection, key, entry)
            if last_preview is not None:
                connection.execute(
                    "UPDATE sessions SET last_message_preview = ?, first_user_text = coalesce(first_user_text, ?) "
                    "WHERE key = ?",
                    (last_preview, first_user, key),
                )
            return entry

        return self._write(work)

    def usage_cost(
        self, now_ms: int, days: int, prices: Mapping[tuple[str, str], Mapping[str, Any]], agent_id: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """Fires with the ``usage.cost`` payload from the usage ledger (stores/usage.py)."""
        return self._db.run(usage.cost_summary, now_ms, days, prices, agent_id)

    def usage_report(
        self, now_ms: int, start: Any, end: Any, prices: Mapping[tuple[str, str], Mapping[str, Any]], agent_id: str | None, limit: int
    ) -> Deferred[dict[str, Any]]:
        """Fires with the ``sessions.usage`` payload for a UTC date range (stores/session_usage.py)."""
        return self._db.run(session_usage.usage_report, now_ms, start, end, prices, agent_id, limit)

    def history(self, session_id: str, limit: int, before_id: int | None = None) -> Deferred[tuple[list[tuple[int, dict[str, Any]]], bool]]:
        """Fires with ``(entries oldest first, has_more)`` for the newest ``limit`` lines."""

        def read(connection: sqlite3.Connection) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
            query = "SELECT id, entry FROM transcript WHERE session_id = ?"
            args: tuple[Any, ...] = (session_id,)
            if before_id is not None:
                query += " AND id < ?"
                args += (before_id,)
            rows = connection.execute(query + " ORDER BY id DESC LIMIT ?", args + (limit + 1,)).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            rows.reverse()
            return [(row_id, _loads(text)) for row_id, text in rows], has_more

        return self._db.run(read)

    def preview(self, keys: Sequence[str], limit: int, max_chars: int) -> Deferred[list[dict[str, Any]]]:
        """Per key: status ``ok``/``empty``/``missing`` and the last ``limit`` text items."""

        def read(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            previews: list[dict[str, Any]] = []
            for key in keys:
                entry = self._get(connection, key)
                if entry is None or not entry.get("sessionId"):
                    previews.append({"key": key, "status": "missing", "items": []})
                    continue
                items: list[dict[str, Any]] = []
                cursor = connection.execute(
                    "SELECT entry FROM transcript WHERE session_id = ? ORDER BY id DESC", (entry["sessionId"],)
                )
                for (text,) in cursor:
                    line = _loads(text)
                    message = line.get("message") if line.get("type") == "message" else None
                    if not isinstance(message, dict):
                        continue
                    role = message.get("role")
                    body = message_text(message)
                    if role in ("user", "assistant", "toolResult") and body:
                        items.append({"role": "tool" if role == "toolResult" else role, "text": truncate(body, max_chars)})
                        if len(items) >= limit:
                            break
                cursor.close()
                items.reverse()
                previews.append({"key": key, "status": "ok" if items else "empty", "items": items})
            return previews

        return self._db.run(read)

    # -- queries -----------------------------------------------------------------------------

    def list(self, query: ListQuery, include_previews: bool = False) -> Deferred[ListPage]:
        """Rows newest first (``key`` and ``entry`` plus preview columns); fires with a ListPage."""

        def read(connection: sqlite3.Connection) -> ListPage:
            where, args = _filters(
                agent_id=query.agent_id,
                spawned_by=query.spawned_by,
                label=query.label,
                include_global=query.include_global,
                include_unknown=query.include_unknown,
                archived=query.archived,
                active_since_ms=query.active_since_ms,
            )
            count_where, count_args, page_where, page_args = where, args, where, args
            if query.search:
                count_term, page_term = self._search_terms(connection, query.search.lower())
                count_where, count_args = where + [count_term[0]], args + [count_term[1]]
                page_where, page_args = where + [page_term[0]], args + [page_term[1]]
            (total,) = connection.execute(
                f"SELECT count(*) FROM sessions WHERE {' AND '.join(count_where)}", count_args
            ).fetchone()
            page_sql = (
                "SELECT key, entry, first_user_text, last_message_preview FROM sessions"
                f" WHERE {' AND '.join(page_where)} ORDER BY updated_at DESC, key LIMIT ? OFFSET ?"
            )
            limit = query.limit if query.limit is not None else self.NO_LIMIT
            rows = []
            for key, text, first_user, last_preview in connection.execute(page_sql, page_args + [limit, query.offset]):
                row = {"key": key, "entry": _loads(text)}
                if include_previews:
                    row["firstUserText"] = first_user
                    row["lastMessagePreview"] = last_preview
                rows.append(row)
            return ListPage(rows, total)

        return self._db.run(read)

    def _search_terms(self, connection: sqlite3.Connection, search: str) -> tuple[tuple[str, Any], tuple[str, Any]]:
        """WHERE terms (for counting, for the page) matching ``search`` as a substring.

        The trigram index is exact and cheap for selective terms. For broad ones the first page
        is found sooner by walking the recency index with a substring test (it stops after one
        page), while counting is still cheaper through the index up to a point; past that,
        everything scans.
        """
        scan = ("instr(search_text, ?) > 0", search)
        # FTS5's query parser ends a string at NUL ("unterminated string"): such text is scanned.
        if len(search) < MIN_TRIGRAM_SEARCH or "\x00" in search or not self._has_search_index(connection):
            return scan, scan
        phrase = '"' + search.replace('"', '""') + '"'
        (hits,) = connection.execute(
            "SELECT count(*) FROM (SELECT rowid FROM session_search WHERE session_search MATCH ? LIMIT ?)",
            (phrase, SEARCH_INDEX_COUNT_HITS + 1),
        ).fetchone()
        indexed = ("id IN (SELECT rowid FROM session_search WHERE session_search MATCH ?)", phrase)
        if hits <= SEARCH_INDEX_MAX_HITS:
            return indexed, indexed
        if hits <= SEARCH_INDEX_COUNT_HITS:
            return indexed, scan
        return scan, scan

    def _has_search_index(self, connection: sqlite3.Connection) -> bool:
        # Only the worker thread calls this, so the cached answer needs no lock.
        if self._search_index is None:
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'session_search'").fetchone()
            self._search_index = found is not None
        return self._search_index

    def find(
        self,
        *,
        key: str | None = None,
        session_id: str | None = None,
        label: str | None = None,
        agent_id: str | None = None,
        spawned_by: str | None = None,
        include_global: bool = False,
        include_unknown: bool = False,
        limit: int = 11,
    ) -> Deferred[builtins.list[tuple[str, dict[str, Any]]]]:
        """Keys matching every given criterion (for ``sessions.resolve``), newest first."""

        def read(connection: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
            where, args = _filters(
                key=key,
                session_id=session_id,
                label=label,
                agent_id=agent_id,
                spawned_by=spawned_by,
                include_global=include_global or key is not None,
                include_unknown=include_unknown or key is not None,
            )
            sql = f"SELECT key, entry FROM sessions WHERE {' AND '.join(where)} ORDER BY updated_at DESC LIMIT ?"
            return [(row_key, _loads(text)) for row_key, text in connection.execute(sql, args + [limit])]

        return self._db.run(read)


def _new_entry(key: str, now_ms: int) -> dict[str, Any]:
    """A session's first entry: a new sessionId, and the agent its key names (if any)."""
    entry: dict[str, Any] = {"sessionId": str(uuid.uuid4()), "updatedAt": now_ms, "sessionStartedAt": now_ms}
    agent = agent_id_of(key)
    if agent:
        entry["agentId"] = agent
    return entry


def _apply_changes(entry: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Entry field updates where ``None`` removes the field."""
    for field, value in changes.items():
        if value is None:
            entry.pop(field, None)
        else:
            entry[field] = value


def _filters(
    *,
    key: str | None = None,
    session_id: str | None = None,
    label: str | None = None,
    agent_id: str | None = None,
    spawned_by: str | None = None,
    include_global: bool = False,
    include_unknown: bool = False,
    archived: bool | None = None,
    active_since_ms: int | None = None,
) -> tuple[list[str], list[Any]]:
    """WHERE terms shared by lists and lookups; hidden (cron run) sessions never match."""
    where: list[str] = ["hidden = 0"]
    args: list[Any] = []
    excluded = [name for name, keep in ((GLOBAL_KEY, include_global), (UNKNOWN_KEY, include_unknown)) if not keep]
    if excluded:
        where.append(f"key NOT IN ({', '.join('?' for _ in excluded)})")
        args.extend(excluded)
    for column, value in (
        ("key", key),
        ("session_id", session_id),
        ("agent_id", agent_id),
        ("spawned_by", spawned_by),
        ("label", label.strip() if label is not None else None),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if archived is not None:
        where.append("archived = ?")
        args.append(1 if archived else 0)
    if active_since_ms is not None:
        where.append("updated_at >= ?")
        args.append(active_since_ms)
    return where, args


def _check_expectations(entry: Mapping[str, Any], expect: Mapping[str, Any] | None) -> None:
    for field, expected in (expect or {}).items():
        if entry.get(field) != expected:
            raise SessionConflict(f"{field} does not match (expected {expected!r}, found {entry.get(field)!r})")

