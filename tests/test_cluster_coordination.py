"""Session leases and failed-auth lockouts across two cluster buses on the real Redis."""
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
