"""Turning cluster mode on: options, start-up refusals, the schema version, ``state`` tools."""
from __future__ import annotations

import io
import os
import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw import tap

from .support.cluster import missing_modules

MISSING = missing_modules()  # a venv without the cluster libraries skips, not errors
if MISSING is None:
    import psycopg
    from openclaw.cluster import migrate, schema as cluster_schema
    from openclaw.cluster.options import ClusterConfigError, cluster_options, parse_redis_url
    from openclaw.cluster.postgres import translate
    from openclaw.cluster.wiring import ClusterUnavailable, ClusterWiring
from openclaw.stores import devices, sessions
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase

from .support.cluster import POSTGRES_DSN, REDIS_URL, fresh_schema, require_postgres

DSN = "host=127.0.0.1 dbname=test"


class OptionTests(SynchronousTestCase):
    skip = MISSING
    def test_off_by_default(self):
        self.assertIsNone(cluster_options({}, {}))
        options = tap.Options()
        options.parseOptions(["--state-dir", self.mktemp()])
        self.assertIsNone(options["cluster"])

    def test_both_or_neither(self):
        with self.assertRaises(ClusterConfigError) as caught:
            cluster_options({"cluster-postgres": DSN}, {})
        self.assertIn("--cluster-redis (or OPENCLAW_CLUSTER_REDIS) is missing", str(caught.exception))
        options = tap.Options()
        with self.assertRaises(usage.UsageError) as usage_error:
            options.parseOptions(["--state-dir", self.mktemp(), "--cluster-redis", "redis://127.0.0.1"])
        self.assertIn("--cluster-postgres (or OPENCLAW_CLUSTER_POSTGRES) is missing", str(usage_error.exception))

    def test_environment_and_defaults(self):
        options = cluster_options({}, {"OPENCLAW_CLUSTER_POSTGRES": DSN, "OPENCLAW_CLUSTER_REDIS": "redis://:pw@h:7000/3"})
        self.assertEqual(options.schema, "openclaw")
        self.assertEqual(options.key_prefix, "openclaw:")
        self.assertEqual((options.redis.host, options.redis.port, options.redis.password, options.redis.db), ("h", 7000, "pw", 3))
        self.assertTrue(options.instance_id)
        self.assertNotIn("pw", repr(options))

    def test_bad_values_say_what_is_wrong(self):
        for given, message in (
            ({"cluster-redis": "http://x"}, "must look like redis://"),
            ({"cluster-redis": "redis://h:notaport"}, "bad port"),
            ({"cluster-schema": "Bad-Name"}, "lower-case SQL identifier"),
            ({"cluster-instance-id": "a b"}, "instance id may hold"),
            ({"cluster-postgres": "host=x port"}, "not a PostgreSQL connection string"),
        ):
            base = {"cluster-postgres": DSN, "cluster-redis": "redis://127.0.0.1", **given}
            with self.assertRaises(ClusterConfigError) as caught:
                cluster_options(base, {})
            self.assertIn(message, str(caught.exception))
        self.assertEqual(parse_redis_url("redis://127.0.0.1").port, 6379)

    def test_dialect_translation(self):
        self.assertEqual(translate("SELECT 1 WHERE a = ? AND b LIKE '%x'"), "SELECT 1 WHERE a = %s AND b LIKE '%%x'")
        self.assertEqual(
            translate("INSERT OR REPLACE INTO device_tokens (device_id, role, record) VALUES (?, ?, ?)"),
            "INSERT INTO device_tokens (device_id, role, record) VALUES (%s, %s, %s) "
            "ON CONFLICT (device_id, role) DO UPDATE SET record = excluded.record",
        )


class SchemaTests(SynchronousTestCase):
    skip = MISSING
    def setUp(self):
        self.dsn = require_postgres()
        self.schema = fresh_schema(self)
        self.connection = psycopg.connect(self.dsn, autocommit=True)
        self.addCleanup(self.connection.close)

    def test_created_when_empty_then_accepted(self):
        self.assertIsNone(cluster_schema.current_version(self.connection, self.schema))
        self.assertEqual(cluster_schema.check_version(self.connection, self.schema), cluster_schema.SCHEMA_VERSION)
        self.assertEqual(cluster_schema.migrate(self.connection, self.schema), (cluster_schema.SCHEMA_VERSION,) * 2)

    def test_older_and_newer_schemas_are_refused(self):
        cluster_schema.migrate(self.connection, self.schema)
        self.connection.execute(f"UPDATE {self.schema}.schema_version SET version = 0")
        with self.assertRaises(cluster_schema.SchemaError) as older:
            cluster_schema.check_version(self.connection, self.schema)
        self.assertIn("run `openclaw-gateway state migrate", str(older.exception))
        self.connection.execute(f"UPDATE {self.schema}.schema_version SET version = 99")
        with self.assertRaises(cluster_schema.SchemaError) as newer:
            cluster_schema.check_version(self.connection, self.schema)
        self.assertIn("newer than this gateway knows", str(newer.exception))

    def test_state_commands(self):
        out, err = io.StringIO(), io.StringIO()
        args = ["--cluster-postgres", self.dsn, "--cluster-schema", self.schema]
        self.assertEqual(migrate.main(["status", *args], out, err), 0)
        self.assertIn("missing", out.getvalue())
        self.assertEqual(migrate.main(["migrate", *args], out, err), 0)
        self.assertIn(f"version 0 -> {cluster_schema.SCHEMA_VERSION}", out.getvalue())
        self.assertEqual(migrate.main(["import", *args], out, err), 2)
        self.assertIn("import needs --state-dir", err.getvalue())

    def test_import_copies_a_sqlite_state_dir_once(self):
        state_dir = self.mktemp()
        os.makedirs(state_dir)
        store = sessions.SessionStore(SQLiteDatabase(f"{state_dir}/sessions.sqlite", sessions.MIGRATIONS, InlineExecutor()), state_dir)
        self.successResultOf(store.load())
        entry = self.successResultOf(store.patch("agent:main:old", {"label": "Imported"}, 1000))
        item = {"type": "message", "message": {"role": "user", "content": "hello"}}
        self.successResultOf(store.append("agent:main:old", entry["sessionId"], [item], {}))
        self.successResultOf(store.close())
        device_db = sqlite3.connect(f"{state_dir}/devices.sqlite")
        device_db.executescript(devices.MIGRATIONS[0] + "; INSERT INTO paired_devices VALUES ('d1', '{}')")
        device_db.commit()
        device_db.close()
        out, err = io.StringIO(), io.StringIO()
        args = ["import", "--cluster-postgres", self.dsn, "--cluster-schema", self.schema, "--state-dir", state_dir]
        self.assertEqual(migrate.main(args, out, err), 0, err.getvalue())
        self.assertIn("sessions: 1 row(s)", out.getvalue())
        self.assertIn("transcript: 1 row(s)", out.getvalue())
        self.assertIn("paired_devices: 1 row(s)", out.getvalue())
        count = self.connection.execute(f"SELECT visible FROM {self.schema}.session_count").fetchone()[0]
        self.assertEqual(count, 1)
        self.assertEqual(migrate.main(args, io.StringIO(), err), 2)
        self.assertIn("is not empty", err.getvalue())


class StartupRefusalTests(TestCase):
    skip = MISSING
    def wiring(self, **changes):
        from openclaw.cluster.options import cluster_options

        values = {"cluster-postgres": POSTGRES_DSN, "cluster-redis": REDIS_URL, "cluster-schema": fresh_schema(self), **changes}
        return ClusterWiring(reactor, cluster_options(values, {}), self.mktemp())

    @inlineCallbacks
    def test_unreachable_postgres_is_refused_with_its_address(self):
        wiring = self.wiring(**{"cluster-postgres": "host=127.0.0.1 port=1 dbname=test connect_timeout=2"})
        with self.assertRaises(ClusterUnavailable) as caught:
            yield wiring.service.startService()
        self.assertIn("PostgreSQL at 127.0.0.1:1/test is unreachable", str(caught.exception))
        yield wiring.service.stopService()

    @inlineCallbacks
    def test_unreachable_redis_is_refused_with_its_address(self):
        require_postgres()
        wiring = self.wiring(**{"cluster-redis": "redis://127.0.0.1:1/0"})
        with self.assertRaises(ClusterUnavailable) as caught:
            yield wiring.service.startService()
        self.assertIn("Redis at 127.0.0.1:1 is unreachable", str(caught.exception))
        yield wiring.service.stopService()
