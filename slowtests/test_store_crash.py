"""SIGKILL a process in the middle of transcript appends: the database stays consistent.

A real child process appends to ``sessions.sqlite`` and reports each commit; it is killed without
warning after 200, and the file must pass ``integrity_check`` with every surviving line whole and
contiguous. In the slow group: it spends seconds in a child process.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import orjson
from twisted.trial.unittest import SynchronousTestCase

from openclaw.stores import sessions
from openclaw.stores.sessions import SessionStore
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


WRITER = textwrap.dedent(
    """
    import sys
    from openclaw.stores import sessions
    from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase

    state_dir = sys.argv[1]
    store = sessions.SessionStore(
        SQLiteDatabase(state_dir + "/sessions.sqlite", sessions.MIGRATIONS, InlineExecutor()), state_dir
    )
    store.load()
    entries = []
    store.ensure("agent:main:crash", 1000).addCallback(entries.append)
    session_id = entries[0]["sessionId"]
    print("session", session_id, flush=True)
    failures = []
    for n in range(1000000):
        line = {"type": "message", "id": str(n), "message": {"role": "user", "content": "line %d " % n + "x" * 200}}
        d = store.append("agent:main:crash", session_id, [line], {"updatedAt": 1000 + n})
        d.addErrback(failures.append)
        if failures:
            failures[0].raiseException()
        print("committed", n, flush=True)
    """
)


class CrashSafetyTests(SynchronousTestCase):
    def test_sigkill_mid_append_leaves_a_consistent_database(self):
        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        stderr_path = os.path.join(state_dir, "writer.stderr")
        env = dict(os.environ, PYTHONPATH=PROJECT_ROOT)
        with open(stderr_path, "wb") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-c", WRITER, state_dir], stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=state_dir
            )

        def reap():
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()

        self.addCleanup(reap)

        def child_failed(what):
            child.kill()
            child.wait()
            with open(stderr_path) as handle:
                self.fail(f"{what}; writer stderr:\n{handle.read()}")

        first = child.stdout.readline().split()
        if len(first) != 2 or first[0] != b"session":
            child_failed(f"unexpected first line {first!r}")
        session_id = first[1].decode()
        committed = -1
        while committed < 199:
            raw = child.stdout.readline()
            if not raw:
                child_failed(f"writer exited after {committed + 1} commits")
            word, number = raw.split()
            self.assertEqual(word, b"committed")
            committed = int(number)
        os.kill(child.pid, signal.SIGKILL)
        self.assertEqual(child.wait(), -signal.SIGKILL)

        connection = sqlite3.connect(os.path.join(state_dir, "sessions.sqlite"))
        try:
            self.assertEqual(connection.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            rows = connection.execute("SELECT id, entry FROM transcript WHERE session_id = ? ORDER BY id", (session_id,)).fetchall()
            (entry_text, updated_at) = connection.execute(
                "SELECT entry, updated_at FROM sessions WHERE key = 'agent:main:crash'"
            ).fetchone()
        finally:
            connection.close()
        self.assertGreaterEqual(len(rows), 200)
        # Every surviving line is whole, and they are exactly lines 0..n-1 with no gaps.
        self.assertEqual([orjson.loads(text)["id"] for _, text in rows], [str(n) for n in range(len(rows))])
        entry = orjson.loads(entry_text)
        self.assertEqual(entry["sessionId"], session_id)
        # The row and its lines commit together: the row reflects the last surviving line.
        self.assertEqual(updated_at, 1000 + len(rows) - 1)
        self.assertEqual(entry["updatedAt"], updated_at)

        # And the store opens it normally.
        store = SessionStore(
            SQLiteDatabase(os.path.join(state_dir, "sessions.sqlite"), sessions.MIGRATIONS, InlineExecutor()), state_dir
        )
        self.addCleanup(store.close)
        self.successResultOf(store.load())
        self.assertEqual(self.successResultOf(store.get("agent:main:crash"))["sessionId"], session_id)
        history, has_more = self.successResultOf(store.history(session_id, 1000000))
        self.assertEqual(len(history), len(rows))
        self.assertFalse(has_more)
