"""Session leases, failed-auth lockouts and idempotency keys across two cluster buses on the real Redis."""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase


from .support.cluster import missing_modules

MISSING = missing_modules()  # a venv without the cluster libraries skips, not errors
if MISSING is None:
    from openclaw.cluster.bus import ClusterBus
    from openclaw.cluster.coordination import ClusterLeases, ClusterRateLimiter
    from openclaw.cluster.idempotency import ClusterIdempotencyCache
    from openclaw.protocol.errors import GatewayError
    from openclaw.cluster.options import cluster_options

from .support.cluster import POSTGRES_DSN, REDIS_URL, fresh_schema, require_redis


def settle(d: Deferred, timeout_s: float = 5.0) -> Deferred:
    return d.addTimeout(timeout_s, reactor)


class TwoBusesTestBase(TestCase):
    skip = MISSING
    timeout = 30

    @inlineCallbacks
    def setUp(self):
        require_redis()
        schema = fresh_schema(self)
        self.buses = []
        for name in ("a", "b"):
            options = cluster_options(
                {"cluster-postgres": POSTGRES_DSN, "cluster-redis": REDIS_URL, "cluster-schema": schema, "cluster-instance-id": name}, {}
            )
            bus = ClusterBus(reactor, options)
            bus.leases = ClusterLeases(reactor, bus, ttl_s=3)
            yield bus.start()
            self.addCleanup(bus.stop)
            self.buses.append(bus)


class LeaseTests(TwoBusesTestBase):
    @inlineCallbacks
    def test_one_instance_at_a_time_then_the_waiter(self):
        a, b = self.buses
        yield settle(a.leases.hold("agent:main:x"))
        waiting = b.leases.hold("agent:main:x")
        yield deferLater(reactor, 0.6, lambda: None)  # several retries: still held by a
        self.assertFalse(waiting.called)
        a.leases.release("agent:main:x")
        yield settle(waiting)
        self.assertEqual(b.leases.held, {"agent:main:x"})
        # Another session is independent.
        yield settle(a.leases.hold("agent:main:y"))

    @inlineCallbacks
    def test_cancelled_wait_takes_nothing(self):
        a, b = self.buses
        yield settle(a.leases.hold("agent:main:x"))
        waiting = b.leases.hold("agent:main:x")
        waiting.cancel()
        with self.assertRaises(CancelledError):
            yield waiting
        a.leases.release("agent:main:x")
        yield settle(a.leases.hold("agent:main:x"))
        self.assertEqual(b.leases.held, set())

    @inlineCallbacks
    def test_a_dead_instances_leases_are_freed(self):
        a, b = self.buses
        yield settle(a.leases.hold("agent:main:x"))
        waiting = b.leases.hold("agent:main:x")
        yield b.leases.release_dead("a")
        yield settle(waiting)

    @inlineCallbacks
    def test_renewal_keeps_a_long_run_leased(self):
        a, b = self.buses
        yield settle(a.leases.hold("agent:main:long"))
        waiting = b.leases.hold("agent:main:long")
        yield deferLater(reactor, 4.0, lambda: None)  # past the 3 s TTL: renewed by a
        self.assertFalse(waiting.called)
        waiting.cancel()
        yield waiting.addErrback(lambda f: f.trap(CancelledError))


class LockoutTests(TwoBusesTestBase):
    @inlineCallbacks
    def test_failures_on_two_instances_add_up_to_one_lockout_everywhere(self):
        a, b = self.buses
        limiters = [ClusterRateLimiter(reactor, bus) for bus in (a, b)]
        for limiter in limiters:
            limiter.configure(exempt_loopback=True, max_attempts=4, window_ms=60_000, lockout_ms=30_000)
        address = "203.0.113.9"
        for n in range(4):
            limiters[n % 2].record_failure(address, "token")
            yield deferLater(reactor, 0.05, lambda: None)
        # Neither instance saw four failures itself; the shared count did.
        for _ in range(40):
            if all(limiter.retry_after_ms(address, "token") for limiter in limiters):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        for limiter in limiters:
            self.assertGreater(limiter.retry_after_ms(address, "token"), 25_000)
        self.assertIsNone(limiters[0].retry_after_ms("203.0.113.10", "token"))


class IdempotencyTests(TwoBusesTestBase):
    """One claim per key cluster-wide; the owner's outcome reaches a replay on the other bus."""

    def setUp(self):
        d = super().setUp()

        def caches(_):
            self.caches = [ClusterIdempotencyCache(reactor, bus) for bus in self.buses]
            for bus, peer in zip(self.buses, ("b", "a"), strict=False):
                bus.live_instances.add(peer)

        return d.addCallback(caches)

    def test_declares_the_seam(self):
        from zope.interface.verify import verifyObject

        from openclaw.seams import IIdempotencyCache

        verifyObject(IIdempotencyCache, self.caches[0])

    @inlineCallbacks
    def test_second_claim_sees_the_owner_then_its_outcome(self):
        a, b = self.caches
        mine = yield settle(a.claim("chat:k1", "fp1"))
        self.assertIsNone(mine)
        held = yield settle(b.claim("chat:k1", "fp1"))
        self.assertEqual((held["owner"], held["fp"], held["done"]), ("a", "fp1", False))
        waiting = b.wait("chat:k1", held, 5)
        a.complete("chat:k1", "fp1", {"status": "ok"})
        done = yield settle(waiting)
        self.assertEqual((done["ok"], done["result"]), (True, {"status": "ok"}))
        # A later claim reads the finished record (the TTL kept).
        again = yield settle(b.claim("chat:k1", "fp1"))
        self.assertEqual(again["result"], {"status": "ok"})
        ttl = yield self.buses[0].link.command("PTTL", self.buses[0].key("idem", "chat:k1"))
        self.assertGreater(ttl, 0)

    @inlineCallbacks
    def test_an_outcome_announced_before_the_wait_is_read_back(self):
        a, b = self.caches
        yield settle(a.claim("node.invoke:n:k", "fp"))
        held = yield settle(b.claim("node.invoke:n:k", "fp"))
        a.complete("node.invoke:n:k", "fp", error=GatewayError("UNAVAILABLE", "node said no", {"nodeError": {"code": "X"}}))
        yield self.buses[0].link.command("PING")  # the outcome is stored before b waits
        done = yield settle(b.wait("node.invoke:n:k", held, 5))
        self.assertEqual(done["error"]["details"], {"nodeError": {"code": "X"}})

    @inlineCallbacks
    def test_a_dead_owner_fails_the_wait_and_frees_the_key(self):
        a, b = self.caches
        yield settle(a.claim("agent:k", "fp"))
        held = yield settle(b.claim("agent:k", "fp"))
        waiting = b.wait("agent:k", held, 5)
        self.buses[1]._drop_peer("a")
        with self.assertRaises(GatewayError) as raised:
            yield settle(waiting)
        self.assertEqual((raised.exception.code, raised.exception.retryable), ("UNAVAILABLE", True))
        # A retry once the owner is known to be gone frees its claim and takes the key.
        with self.assertRaises(GatewayError):
            yield settle(b.wait("agent:k", held, 5))
        yield self.buses[1].link.command("PING")
        mine = yield settle(b.claim("agent:k", "fp"))
        self.assertIsNone(mine)

    @inlineCallbacks
    def test_a_replay_waiting_on_the_owners_own_instance_gets_the_outcome(self):
        a, _ = self.caches
        yield settle(a.claim("agent:own", "fp"))
        held = yield settle(a.claim("agent:own", "fp"))
        self.assertEqual(held["owner"], "a")
        waiting = a.wait("agent:own", held, 5)
        a.complete("agent:own", "fp", {"status": "ok"})
        done = yield settle(waiting)
        self.assertEqual(done["result"], {"status": "ok"})

    @inlineCallbacks
    def test_abandoned_claim_is_free_again(self):
        a, b = self.caches
        yield settle(a.claim("chat:k2", "fp"))
        held = yield settle(b.claim("chat:k2", "fp"))
        waiting = b.wait("chat:k2", held, 5)
        a.abandon("chat:k2")
        done = yield settle(waiting)
        self.assertTrue(done["abandoned"])
        mine = yield settle(b.claim("chat:k2", "fp"))
        self.assertIsNone(mine)
