"""What a cluster does when its servers fail: Redis restarts, PostgreSQL goes away.

Real twistd gateways on a private ``redis-server`` the test stops and starts again on the same
port, or on the machine's PostgreSQL through a TCP proxy the test cuts and restores (the shared
servers stay up for everyone else).
"""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from .support.cluster import POSTGRES_DSN, CuttableProxy, PrivateRedis, missing_modules
from .test_cluster import ClusterTestBase


class RedisRestartTests(ClusterTestBase):
    """Redis restarts: instances reconnect and resubscribe, ``health`` says what they missed,
    and an event lost meanwhile shows up as a ``seq`` gap on the receiving connection."""

    skip = missing_modules()
    names = ("A", "C")

    @inlineCallbacks
    def setUp(self):
        self.redis = PrivateRedis(self)
        yield self.redis.start()
        self.redis_url = self.redis.url
        yield super().setUp()

    @inlineCallbacks
    def test_instances_reconnect_and_report_the_outage(self):
        on_a = yield self.operator("A")
        watcher = yield self.operator("C")
        yield watcher.request("sessions.subscribe", {})
        yield self.changed_seen_on(watcher, on_a, "agent:main:before")
        self.assertEqual(self.gaps_in(watcher.event_seqs), [])

        lost = [self.instances[name].wait_for_line("cluster bus (Redis at", timeout_s=30) for name in self.names]
        yield self.redis.stop()
        for d in lost:
            yield d
        # Written while Redis is away: acknowledged (PostgreSQL has it), its event not relayed.
        during = yield on_a.request("sessions.patch", {"key": "agent:main:during", "label": "during"})
        self.assertTrue(during["ok"], during)

        back = [self.instances[name].wait_for_line("cluster bus back after", timeout_s=60) for name in self.names]
        yield self.redis.start()
        for d in back:
            yield d
        seen_before = len(watcher.event_seqs)
        yield self.changed_seen_on(watcher, on_a, "agent:main:after")
        # The event that never arrived shows as a gap in C's numbering for this connection.
        self.assertNotEqual(self.gaps_in(watcher.event_seqs[seen_before - 1 :]), [], watcher.event_seqs)

        for name, client in (("A", on_a), ("C", watcher)):
            health = yield self.health_once_both_listed(client)
            bus = health["payload"]["cluster"]["bus"]
            self.assertTrue(bus["connected"], bus)
            self.assertEqual(len(bus["gaps"]), 1, bus)
            self.assertGreater(bus["gaps"][0]["ms"], 0)
            self.assertEqual(health["payload"]["cluster"]["instances"], ["A", "C"], name)
        health_a = yield on_a.request("health", {"probe": True})
        self.assertGreaterEqual(health_a["payload"]["cluster"]["bus"]["relayFailures"], 1)
        health_c = yield watcher.request("health", {"probe": True})
        self.assertGreaterEqual(health_c["payload"]["cluster"]["bus"]["missedEvents"], 1)
        listed = yield watcher.request("sessions.list", {"search": "during"})
        self.assertEqual([row["key"] for row in listed["payload"]["sessions"]], ["agent:main:during"])

    @inlineCallbacks
    def changed_seen_on(self, watcher, writer, key):
        """``writer`` (on A) patches a session; its ``sessions.changed`` reaches ``watcher`` (on C)."""
        from .test_nodes import event_seen

        written = yield writer.request("sessions.patch", {"key": key, "label": key})
        self.assertTrue(written["ok"], written)
        seen = event_seen(watcher, lambda f: f.get("event") == "sessions.changed" and f["payload"].get("sessionKey") == key)
        yield seen.addTimeout(30, reactor)

    @inlineCallbacks
    def health_once_both_listed(self, client):
        """``health`` once the instances have found each other again (a peer may have looked
        dead for a beat while Redis came back empty, until its hello)."""
        for _ in range(100):
            health = yield client.request("health", {"probe": True})  # not the cached snapshot
            if health["payload"]["cluster"]["instances"] == ["A", "C"]:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        return health

    @staticmethod
    def gaps_in(seqs):
        return [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1]


class PostgresDownTests(ClusterTestBase):
    """PostgreSQL away: requests that need it fail UNAVAILABLE, retryable; nothing acknowledged
    is lost; the gateway recovers by itself when the server is back."""

    skip = missing_modules()
    names = ("A",)

    @inlineCallbacks
    def setUp(self):
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(POSTGRES_DSN)
        self.proxy = CuttableProxy(self, info.get("host", "127.0.0.1"), int(info.get("port", 5432)))
        self.proxy.restore()
        self.postgres_dsn = " ".join(f"{k}={v}" for k, v in {**info, "host": "127.0.0.1", "port": self.proxy.port}.items())
        yield super().setUp()

    @inlineCallbacks
    def test_requests_fail_retryable_and_recover(self):
        client = yield self.operator("A")
        kept = yield client.request("sessions.patch", {"key": "agent:main:kept", "label": "acknowledged"})
        self.assertTrue(kept["ok"], kept)

        yield self.proxy.cut()
        for method, params in (
            ("sessions.patch", {"key": "agent:main:new", "label": "while down"}),
            ("sessions.list", {}),
            ("chat.history", {"sessionKey": "agent:main:kept"}),
        ):
            failed = yield client.request(method, params)
            self.assertFalse(failed["ok"], failed)
            error = failed["error"]
            self.assertEqual((error["code"], error["retryable"], error["details"]["code"]), ("UNAVAILABLE", True, "STORAGE_UNAVAILABLE"), method)
            self.assertIn("PostgreSQL", error["message"])
            self.assertGreater(error["retryAfterMs"], 0)
        health = yield client.request("health", {})  # answered from memory meanwhile
        self.assertTrue(health["ok"], health)

        self.proxy.restore()
        retried = yield client.request("sessions.patch", {"key": "agent:main:new", "label": "while down"})
        self.assertTrue(retried["ok"], retried)
        listed = yield client.request("sessions.list", {})
        self.assertEqual(sorted(row["key"] for row in listed["payload"]["sessions"]), ["agent:main:kept", "agent:main:new"])
        labels = {row["key"]: row.get("label") for row in listed["payload"]["sessions"]}
        self.assertEqual(labels["agent:main:kept"], "acknowledged")
