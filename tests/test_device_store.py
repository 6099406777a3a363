"""The SQLite layer and the device store: durability, permissions, transactions, migrations.

Most tests use ``InlineExecutor`` so every Deferred has already fired (SynchronousTestCase +
successResultOf). One class runs the real ``ThreadExecutor`` under the reactor, because that is
what the gateway uses in production and the inline executor cannot show threading mistakes.
"""
from __future__ import annotations

import os
import sqlite3
import stat
import threading

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.stores import devices
from openclaw.stores.devices import DeviceStore, DeviceToken, PairedDevice, PendingPairing, new_device_token
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase


class Boom(Exception):
    pass


def _paired(device_id="d" * 64, **overrides):
    values = dict(
        device_id=device_id,
        public_key="pk-" + device_id[:8],
        roles=["operator"],
        scopes=["operator.read", "operator.write"],
        created_at_ms=1000,
        approved_at_ms=2000,
        display_name="Laptop",
        platform="linux",
        client_id="cli",
        client_mode="cli",
        remote_ip="127.0.0.1",
        last_seen_at_ms=3000,
        last_seen_reason="connect",
    )
    values.update(overrides)
    return PairedDevice(**values)


def _token(device_id="d" * 64, role="operator", **overrides):
    values = dict(
        device_id=device_id,
        role=role,
        token=new_device_token(),
        scopes=["operator.read"],
        created_at_ms=1000,
    )
    values.update(overrides)
    return DeviceToken(**values)


def _pending(request_id="req-1", device_id="e" * 64, **overrides):
    values = dict(
        request_id=request_id,
        device_id=device_id,
        public_key="pk-pending",
        role="operator",
        roles=["operator"],
        scopes=["operator.read"],
        ts=5000,
        remote_ip="203.0.113.7",
    )
    values.update(overrides)
    return PendingPairing(**values)


def _table_migration():
    return ["CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"]


class InlineDatabaseTests(SynchronousTestCase):
    """``SQLiteDatabase`` run synchronously: files, transactions and migrations."""

    def setUp(self):
        self.dir = self.mktemp()
        self.path = os.path.join(self.dir, "state", "test.sqlite")

    def open(self, migrations=None):
        db = SQLiteDatabase(self.path, _table_migration() if migrations is None else migrations, InlineExecutor())
        self.addCleanup(db.close)
        return db

    def _names(self, db):
        return self.successResultOf(db.run(lambda c: [r[0] for r in c.execute("SELECT name FROM things ORDER BY id")]))

    def test_file_created_0600_in_created_directory(self):
        db = self.open()
        self.successResultOf(db.run(lambda c: c.execute("INSERT INTO things (name) VALUES ('a')")))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.path)).st_mode) & 0o077, 0)

    def test_wal_sidecar_files_are_not_world_readable(self):
        """Tokens land in the WAL before a checkpoint, so the sidecars must be as private as the db."""
        db = self.open()
        self.successResultOf(db.run(lambda c: c.execute("INSERT INTO things (name) VALUES ('secret')")))
        for suffix in ("-wal", "-shm"):
            sidecar = self.path + suffix
            if os.path.exists(sidecar):
                self.assertEqual(stat.S_IMODE(os.stat(sidecar).st_mode) & 0o077, 0, sidecar)

    def test_run_returns_work_result_and_passes_args(self):
        db = self.open()
        result = self.successResultOf(db.run(lambda c, a, b: a + b, 2, 3))
        self.assertEqual(result, 5)

    def test_raising_transaction_leaves_nothing_behind(self):
        db = self.open()

        def insert_then_fail(connection):
            connection.execute("INSERT INTO things (name) VALUES ('ghost')")
            raise Boom()

        self.failureResultOf(db.run(insert_then_fail), Boom)
        self.assertEqual(self._names(db), [])
        # and the connection is usable afterwards (no transaction left open)
        self.successResultOf(db.run(lambda c: c.execute("INSERT INTO things (name) VALUES ('real')")))
        self.assertEqual(self._names(db), ["real"])

    def test_data_survives_close_and_reopen(self):
        db = self.open()
        self.successResultOf(db.run(lambda c: c.execute("INSERT INTO things (name) VALUES ('kept')")))
        self.successResultOf(db.close())
        again = self.open()
        self.assertEqual(self._names(again), ["kept"])

    def test_migrations_run_once(self):
        calls = []

        def second(connection):
            calls.append(1)
            connection.execute("ALTER TABLE things ADD COLUMN extra TEXT")

        migrations = _table_migration() + [second]
        db = self.open(migrations)
        self.assertEqual(self.successResultOf(db.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])), 2)
        self.successResultOf(db.close())
        # Re-running CREATE TABLE / ADD COLUMN would fail, so reopening proves they are skipped.
        again = self.open(migrations)
        self.assertEqual(self.successResultOf(again.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])), 2)
        self.assertEqual(calls, [1])

    def test_new_migration_applies_on_top(self):
        db = self.open()
        self.successResultOf(db.run(lambda c: c.execute("INSERT INTO things (name) VALUES ('x')")))
        self.successResultOf(db.close())
        upgraded = self.open(_table_migration() + ["ALTER TABLE things ADD COLUMN colour TEXT"])
        version = self.successResultOf(upgraded.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0]))
        self.assertEqual(version, 2)
        self.successResultOf(upgraded.run(lambda c: c.execute("UPDATE things SET colour = 'red'")))
        self.assertEqual(self._names(upgraded), ["x"])

    def test_failing_migration_rolls_back(self):
        def broken(connection):
            connection.execute("CREATE TABLE half (id INTEGER)")
            raise Boom()

        db = SQLiteDatabase(self.path, _table_migration() + [broken], InlineExecutor())
        self.failureResultOf(db.run(lambda c: None), Boom)
        raw = sqlite3.connect(self.path)
        try:
            self.assertEqual(raw.execute("PRAGMA user_version").fetchone()[0], 1)
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            raw.close()
        self.assertIn("things", tables)
        self.assertNotIn("half", tables)

    def test_multi_statement_string_migration(self):
        db = self.open(devices.MIGRATIONS)
        tables = self.successResultOf(
            db.run(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")})
        )
        self.assertTrue({"paired_devices", "device_tokens", "pending_requests"} <= tables)


class ThreadedDatabaseTests(TestCase):
    """The production executor: work runs off the reactor thread, in submission order."""

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "threaded.sqlite")
        self.db = SQLiteDatabase.threaded(reactor, self.path, _table_migration())
        self.addCleanup(self.db.close)

    @inlineCallbacks
    def test_work_runs_on_worker_thread(self):
        main = threading.current_thread()
        thread = yield self.db.run(lambda c: threading.current_thread())
        self.assertIsNot(thread, main)

    @inlineCallbacks
    def test_writes_keep_submission_order(self):
        writes = [self.db.run(lambda c, n=n: c.execute("INSERT INTO things (name) VALUES (?)", (str(n),))) for n in range(20)]
        yield gatherResults(writes)
        names = yield self.db.run(lambda c: [r[0] for r in c.execute("SELECT name FROM things ORDER BY id")])
        self.assertEqual(names, [str(n) for n in range(20)])

    @inlineCallbacks
    def test_raising_transaction_rolls_back(self):
        def insert_then_fail(connection):
            connection.execute("INSERT INTO things (name) VALUES ('ghost')")
            raise Boom()

        yield self.assertFailure(self.db.run(insert_then_fail), Boom)
        count = yield self.db.run(lambda c: c.execute("SELECT COUNT(*) FROM things").fetchone()[0])
        self.assertEqual(count, 0)

    @inlineCallbacks
    def test_device_store_survives_restart(self):
        store = DeviceStore(SQLiteDatabase.threaded(reactor, os.path.join(self.mktemp(), "d.sqlite"), devices.MIGRATIONS))
        path = store.path
        yield store.load()
        device = _paired()
        token = _token()
        yield store.put_paired(device)
        yield store.put_token(token)
        yield store.put_pending(_pending())
        yield store.close()

        reopened = DeviceStore(SQLiteDatabase.threaded(reactor, path, devices.MIGRATIONS))
        self.addCleanup(reopened.close)
        yield reopened.load()
        self.assertEqual(reopened.paired(device.device_id), device)
        self.assertEqual(reopened.token(device.device_id, "operator").token, token.token)
        self.assertEqual(reopened.pending("req-1"), _pending())
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)


class DeviceStoreTests(SynchronousTestCase):
    """``DeviceStore`` serves reads from memory and writes through; a reload must see the same state."""

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "devices.sqlite")
        self.store = self.open()

    def open(self):
        store = DeviceStore(SQLiteDatabase(self.path, devices.MIGRATIONS, InlineExecutor()))
        self.addCleanup(store.close)
        self.successResultOf(store.load())
        return store

    def restart(self):
        self.successResultOf(self.store.close())
        self.store = self.open()
        return self.store

    def test_paired_device_round_trip(self):
        device = _paired(operator_label="Desk", device_family="desktop")
        self.assertIs(self.successResultOf(self.store.put_paired(device)), device)
        self.assertIs(self.store.paired(device.device_id), device)
        reloaded = self.restart().paired(device.device_id)
        self.assertEqual(reloaded, device)
        self.assertIsNot(reloaded, device)

    def test_all_paired_sorted_by_approval(self):
        late = _paired("b" * 64, approved_at_ms=9000)
        early = _paired("c" * 64, approved_at_ms=100)
        self.successResultOf(self.store.put_paired(late))
        self.successResultOf(self.store.put_paired(early))
        self.assertEqual([d.device_id for d in self.restart().all_paired()], ["c" * 64, "b" * 64])

    def test_tokens_round_trip_per_role(self):
        operator = _token(rotated_at_ms=4000, last_used_at_ms=4500)
        node = _token(role="node", scopes=[])
        self.successResultOf(self.store.put_token(operator))
        self.successResultOf(self.store.put_token(node))
        store = self.restart()
        self.assertEqual(store.token("d" * 64, "operator"), operator)
        self.assertEqual(store.token("d" * 64, "node"), node)
        self.assertEqual(store.token("d" * 64, "operator").issued_at_ms, 4000)
        self.assertEqual([t.role for t in store.tokens_for("d" * 64)], ["node", "operator"])

    def test_token_format(self):
        token = new_device_token()
        self.assertEqual(len(token), 43)
        self.assertRegex(token, r"^[A-Za-z0-9_-]{43}$")
        self.assertNotEqual(token, new_device_token())

    def test_token_secret_never_listed(self):
        token = _token()
        self.assertNotIn(token.token, repr(token))
        self.assertNotIn("token", token.to_wire())
        wire = _paired().to_wire([token])
        self.assertNotIn(token.token, repr(wire))

    def test_replacing_a_token_overwrites(self):
        first = _token()
        second = _token()
        self.successResultOf(self.store.put_token(first))
        self.successResultOf(self.store.put_token(second))
        self.assertEqual(self.restart().token("d" * 64, "operator").token, second.token)

    def test_remove_token(self):
        self.successResultOf(self.store.put_token(_token()))
        removed = self.successResultOf(self.store.remove_token("d" * 64, "operator"))
        self.assertEqual(removed.role, "operator")
        self.assertIsNone(self.successResultOf(self.store.remove_token("d" * 64, "operator")))
        self.assertIsNone(self.restart().token("d" * 64, "operator"))

    def test_remove_paired_drops_its_tokens(self):
        self.successResultOf(self.store.put_paired(_paired()))
        self.successResultOf(self.store.put_token(_token()))
        self.successResultOf(self.store.put_token(_token("f" * 64)))
        removed = self.successResultOf(self.store.remove_paired("d" * 64))
        self.assertEqual(removed.device_id, "d" * 64)
        self.assertIsNone(self.successResultOf(self.store.remove_paired("d" * 64)))
        store = self.restart()
        self.assertIsNone(store.paired("d" * 64))
        self.assertEqual(store.tokens_for("d" * 64), [])
        self.assertIsNotNone(store.token("f" * 64, "operator"))

    def test_pending_round_trip(self):
        request = _pending(refreshed_at_ms=7000, silent=True, is_repair=True, reason="scope-upgrade")
        self.successResultOf(self.store.put_pending(request))
        store = self.restart()
        self.assertEqual(store.pending("req-1"), request)
        self.assertEqual(store.pending_for_device("e" * 64), request)
        self.assertEqual(store.pending("req-1").last_activity_ms, 7000)
        self.assertIsNone(store.pending_for_device("nobody"))

    def test_remove_pending(self):
        self.successResultOf(self.store.put_pending(_pending("req-1")))
        self.successResultOf(self.store.put_pending(_pending("req-2", device_id="a" * 64, ts=6000)))
        self.assertEqual([r.request_id for r in self.store.all_pending()], ["req-1", "req-2"])
        self.assertEqual(self.successResultOf(self.store.remove_pending(["req-1", "missing"])), ["req-1"])
        self.assertEqual(self.successResultOf(self.store.remove_pending(["missing"])), [])
        self.assertEqual([r.request_id for r in self.restart().all_pending()], ["req-2"])

    def test_wire_shapes(self):
        wire = _pending().to_wire()
        self.assertEqual(wire["requestId"], "req-1")
        self.assertEqual(wire["deviceId"], "e" * 64)
        self.assertNotIn("displayName", wire)  # None fields are dropped
        paired = _paired(operator_label="Desk").to_wire()
        self.assertEqual(paired["operatorLabel"], "Desk")
        self.assertEqual(paired["roles"], ["operator"])
        self.assertEqual(paired["approvedScopes"], ["operator.read", "operator.write"])

    def test_database_file_is_private(self):
        self.successResultOf(self.store.put_paired(_paired()))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
