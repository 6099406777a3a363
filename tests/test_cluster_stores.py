"""The PostgreSQL stores: the SQLite store's own behaviour tests, run again on PostgreSQL, plus
what only a shared database has (two writers racing on one session, another instance's changes).
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.seams import IDeviceStore, INodeStore, ISessionStore
from openclaw.stores.devices import DeviceToken, PairedDevice
from openclaw.stores.sessions import ListQuery
from openclaw.stores.sqlite import InlineExecutor
from zope.interface.verify import verifyObject

from .support.cluster import missing_modules

MISSING = missing_modules()  # a venv without the cluster libraries skips, not errors
if MISSING is None:
    import psycopg
    from openclaw.cluster import schema as cluster_schema
    from openclaw.cluster.postgres import PostgresDatabase, translate
    from openclaw.cluster.stores import PostgresDeviceStore, PostgresNodeStore, PostgresSessionStore

from . import test_sessions_store as sqlite_tests
from .support.cluster import fresh_schema, require_postgres


def migrated_schema(testcase) -> tuple[str, str]:
    dsn = require_postgres()
    schema = fresh_schema(testcase)
    with psycopg.connect(dsn, autocommit=True) as connection:
        cluster_schema.migrate(connection, schema)
    return dsn, schema


class PostgresStoreMixin(sqlite_tests.StoreTestMixin):
    """``open()`` gives a PostgreSQL store on a fresh schema (same tests, other engine)."""

    skip = MISSING

    def open(self):
        if not hasattr(self, "_pg"):
            self._pg = migrated_schema(self)
        dsn, schema = self._pg
        store = PostgresSessionStore(PostgresDatabase(dsn, schema, InlineExecutor()), self.state_dir)
        self.addCleanup(store.close)
        self.successResultOf(store.load())
        return store

    def sql(self, query, *args):
        dsn, schema = self._pg
        with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as connection:
            return [tuple(row) for row in connection.execute(translate(query), args).fetchall()]


class PostgresEnsureAndPatchTests(PostgresStoreMixin, sqlite_tests.EnsureAndPatchTests):
    pass


class PostgresTranscriptTests(PostgresStoreMixin, sqlite_tests.TranscriptTests):
    pass


class PostgresPreviewTests(PostgresStoreMixin, sqlite_tests.PreviewTests):
    pass


class PostgresListTests(PostgresStoreMixin, sqlite_tests.ListTests):
    pass


class PostgresSummaryTests(PostgresStoreMixin, SynchronousTestCase):
    test_summary_counts_and_recent = sqlite_tests.SummaryAndDurabilityTests.test_summary_counts_and_recent
    test_summary_loaded_on_open = sqlite_tests.SummaryAndDurabilityTests.test_summary_loaded_on_open


class PostgresOnlyTests(PostgresStoreMixin, SynchronousTestCase):
    def test_every_sqlite_table_has_a_postgres_table(self):
        """A migration added to a SQLite store needs its PostgreSQL twin in cluster/schema.py."""
        from openclaw.stores import devices, nodes, sessions
        from openclaw.stores.sqlite import SQLiteDatabase

        sqlite_tables = set()
        for name, migrations in (("d", devices.MIGRATIONS), ("n", nodes.MIGRATIONS), ("s", sessions.MIGRATIONS)):
            database = SQLiteDatabase(f"{self.state_dir}/{name}.sqlite", migrations, InlineExecutor())
            rows = self.successResultOf(database.run(lambda c: c.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()))
            sqlite_tables |= {row[0] for row in rows}
            self.successResultOf(database.close())
        postgres_tables = {row[0] for row in self.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
        missing = sqlite_tables - postgres_tables - cluster_schema.SQLITE_ONLY_TABLES
        self.assertEqual(missing, set(), "add these tables to openclaw/cluster/schema.py MIGRATIONS")

    def test_declares_the_seams(self):
        verifyObject(ISessionStore, self.store)
        dsn, schema = self._pg
        verifyObject(IDeviceStore, PostgresDeviceStore(PostgresDatabase(dsn, schema, InlineExecutor())))
        verifyObject(INodeStore, PostgresNodeStore(PostgresDatabase(dsn, schema, InlineExecutor())))

    def test_archives_move_into_the_shared_table(self):
        """Reset/delete/compact keep old lines in ``transcript_archive``, readable by every instance."""
        entry, lines = self.session_with_lines("agent:main:x", 5)
        result = self.ok(self.store.compact("agent:main:x", 2, 2000))
        self.assertTrue(result["compacted"])
        self.assertTrue(result["archived"].startswith(f"postgresql:{self._pg[1]}/{entry['sessionId']}.jsonl.bak."))
        self.assertEqual(self.transcript_count(entry["sessionId"]), 2)
        reset = self.ok(self.store.reset("agent:main:x", 3000))
        self.assertNotEqual(reset["sessionId"], entry["sessionId"])
        archived = self.sql("SELECT reason, entry FROM transcript_archive ORDER BY id")
        self.assertEqual([reason for reason, _ in archived], ["bak"] * 3 + ["reset"] * 2)
        self.assertEqual([orjson_loads(text) for _, text in archived], lines)
        self.assertEqual(self.transcript_count(entry["sessionId"]), 0)

    def test_search_escapes_like_wildcards(self):
        self.ok(self.store.patch("agent:main:a", {"label": "100% done"}, 1000))
        self.ok(self.store.patch("agent:main:b", {"label": "1000 done"}, 1000))
        self.ok(self.store.patch("agent:main:c", {"label": "a_b"}, 1000))
        self.ok(self.store.patch("agent:main:d", {"label": "axb"}, 1000))
        keys = lambda search: [row["key"] for row in self.ok(self.store.list(ListQuery(search=search))).rows]
        self.assertEqual(keys("0% d"), ["agent:main:a"])
        self.assertEqual(keys("a_b"), ["agent:main:c"])
        self.assertEqual(keys("a\x00b"), [])  # no PostgreSQL text holds NUL: a clean empty answer


def orjson_loads(text):
    import orjson

    return orjson.loads(text)


class ConcurrentWriterTests(TestCase):
    """Two instances (two stores, two connections) writing one session at the same time."""

    skip = MISSING

    @inlineCallbacks
    def setUp(self):
        dsn, schema = migrated_schema(self)
        self.stores = []
        for name in ("a", "b"):
            store = PostgresSessionStore(PostgresDatabase.threaded(reactor, dsn, schema, name), self.mktemp())
            self.addCleanup(store.close)
            yield store.load()
            self.stores.append(store)

    @inlineCallbacks
    def test_racing_appends_keep_one_transcript(self):
        a, b = self.stores
        entry = yield a.ensure("agent:main:race", 1000)
        again = yield b.ensure("agent:main:race", 1001)
        self.assertEqual(again["sessionId"], entry["sessionId"])
        writes = []
        for n in range(40):
            store = a if n % 2 == 0 else b
            item = sqlite_tests.line("user", f"from {'ab'[n % 2]} #{n}")
            writes.append(store.append("agent:main:race", entry["sessionId"], [item], {"updatedAt": 2000 + n, f"seen{n % 2}": n}))
        yield gatherResults(writes)
        rows, _ = yield b.history(entry["sessionId"], 100)
        texts = [item["message"]["content"] for _, item in rows]
        self.assertEqual(len(texts), 40)
        # Each instance's own lines stay in the order it issued them.
        self.assertEqual([t for t in texts if t.startswith("from a")], [f"from a #{n}" for n in range(0, 40, 2)])
        self.assertEqual([t for t in texts if t.startswith("from b")], [f"from b #{n}" for n in range(1, 40, 2)])
        final = yield a.get("agent:main:race")
        # Both writers' entry changes survived (no lost update): each field has its last value.
        self.assertEqual((final["seen0"], final["seen1"]), (38, 39))

    @inlineCallbacks
    def test_racing_creates_agree_on_one_session_id(self):
        a, b = self.stores
        first, second = yield gatherResults([a.ensure("agent:main:new", 1000), b.ensure("agent:main:new", 1000)])
        self.assertEqual(first["sessionId"], second["sessionId"])
        self.assertEqual(a.summary(1000).count + 0, 1)

    @inlineCallbacks
    def test_racing_patches_merge(self):
        a, b = self.stores
        yield a.ensure("agent:main:p", 1000)
        yield gatherResults(
            [a.patch("agent:main:p", {f"fieldA{n}": n}, 1000 + n) for n in range(10)]
            + [b.patch("agent:main:p", {f"fieldB{n}": n}, 1000 + n) for n in range(10)]
        )
        final = yield b.get("agent:main:p")
        self.assertEqual({k for k in final if k.startswith("field")}, {f"field{x}{n}" for x in "AB" for n in range(10)})


class SharedDeviceStoreTests(TestCase):
    """A device paired through one instance's store is known to another's."""
    skip = MISSING

    @inlineCallbacks
    def test_refresh_and_reload_see_another_instances_writes(self):
        dsn, schema = migrated_schema(self)
        changes = []
        a = PostgresDeviceStore(PostgresDatabase.threaded(reactor, dsn, schema, "a"), on_change=lambda op, args: changes.append(op))
        b = PostgresDeviceStore(PostgresDatabase.threaded(reactor, dsn, schema, "b"))
        for store in (a, b):
            self.addCleanup(store.close)
            yield store.load()
        device = PairedDevice("dev1", "pk", ["operator"], ["operator.read"], 1, 2)
        yield a.put_paired(device)
        yield a.put_token(DeviceToken("dev1", "operator", "secret", ["operator.read"], 3))
        self.assertEqual(changes, ["put_paired", "put_token"])
        self.assertIsNone(b.paired("dev1"))
        yield b.refresh("dev1")
        self.assertEqual(b.paired("dev1"), device)
        self.assertEqual(b.token("dev1", "operator").token, "secret")
        yield a.remove_paired("dev1")
        yield b.refresh("dev1")
        self.assertIsNone(b.paired("dev1"))
        self.assertIsNone(b.token("dev1", "operator"))
        yield a.put_paired(device)
        yield b._reload_all()
        self.assertEqual([d.device_id for d in b.all_paired()], ["dev1"])
