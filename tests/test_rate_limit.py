"""The failed-authentication limiter (protocol §4.3), driven entirely by a ``task.Clock``.

Defaults are the reference's: 10 failures inside a sliding 60 s window lock the (address, kind)
key for 5 minutes; loopback is exempt; a success wipes the slate. The handshake-level behaviour
(``AUTH_RATE_LIMITED`` on the wire shape) is in ``test_handshake.HandshakeRateLimitTests``.
"""
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.protocol.constants import (
    AUTH_RATE_LIMIT_LOCKOUT_MS,
    AUTH_RATE_LIMIT_MAX_ATTEMPTS,
    AUTH_RATE_LIMIT_WINDOW_MS,
)
from openclaw.security.rate_limit import BROWSER_ORIGIN_KIND, AuthRateLimiter, is_loopback

REMOTE = "203.0.113.5"
OTHER_REMOTE = "198.51.100.7"
KIND = "shared-secret"


class ReferenceDefaultsTests(SynchronousTestCase):
    """The numbers themselves: clients and operators rely on them (§4.3)."""

    def test_defaults_match_the_reference(self):
        self.assertEqual(AUTH_RATE_LIMIT_MAX_ATTEMPTS, 10)
        self.assertEqual(AUTH_RATE_LIMIT_WINDOW_MS, 60_000)
        self.assertEqual(AUTH_RATE_LIMIT_LOCKOUT_MS, 300_000)


class LockoutTests(SynchronousTestCase):
    """Ten failures within a minute lock the key; the lock lasts five minutes and counts down."""

    def setUp(self):
        self.clock = Clock()
        self.limiter = AuthRateLimiter(self.clock)

    def fail(self, times, address=REMOTE, kind=KIND):
        for _ in range(times):
            self.limiter.record_failure(address, kind)

    def test_unknown_key_is_not_limited(self):
        """Nothing recorded yet: the key may try."""
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))

    def test_nine_failures_do_not_lock(self):
        """The lock needs the tenth failure, not the ninth."""
        self.fail(9)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))

    def test_tenth_failure_locks_for_five_minutes(self):
        """At the tenth failure the remaining lockout is the full 300 000 ms."""
        self.fail(10)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 300_000)

    def test_failures_spread_inside_the_window_still_lock(self):
        """The window slides: failures at t=0 and t=59 s are all inside the same 60 s."""
        self.fail(5)
        self.clock.advance(59)
        self.fail(5)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 300_000)

    def test_failures_older_than_the_window_are_forgotten(self):
        """Failures that fell out of the 60 s window do not count toward the ten."""
        self.fail(9)
        self.clock.advance(61)
        self.fail(9)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))
        self.fail(1)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 300_000)

    def test_retry_after_counts_down(self):
        """``retry_after_ms`` is the time left on the lock, so clients can back off exactly."""
        self.fail(10)
        self.clock.advance(60)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 240_000)
        self.clock.advance(239.5)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 500)

    def test_retry_after_is_never_zero_while_locked(self):
        """A sub-millisecond remainder still reports a positive wait, never 0."""
        self.fail(10)
        self.clock.advance(299.9999)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 1)

    def test_lock_expires_after_five_minutes(self):
        """Exactly at the end of the lockout the key may try again."""
        self.fail(10)
        self.clock.advance(300)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))

    def test_counting_restarts_after_a_lockout(self):
        """The lock consumed the ten failures: one more failure afterwards does not re-lock."""
        self.fail(10)
        self.clock.advance(301)
        self.fail(1)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))
        self.fail(9)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 300_000)

    def test_addresses_are_independent(self):
        """One address's lock does not affect another's."""
        self.fail(10)
        self.assertIsNone(self.limiter.retry_after_ms(OTHER_REMOTE, KIND))

    def test_kinds_are_independent(self):
        """Shared-secret failures do not lock the device-token scope (keys are (ip, kind))."""
        self.fail(10)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, "device-token"))

    def test_custom_thresholds(self):
        """The constructor arguments override the defaults (used for small test limits)."""
        limiter = AuthRateLimiter(self.clock, max_attempts=2, window_ms=1_000, lockout_ms=5_000)
        limiter.record_failure(REMOTE, KIND)
        self.assertIsNone(limiter.retry_after_ms(REMOTE, KIND))
        limiter.record_failure(REMOTE, KIND)
        self.assertEqual(limiter.retry_after_ms(REMOTE, KIND), 5_000)


class SuccessResetTests(SynchronousTestCase):
    """Only failures are counted, and a success clears the key's history."""

    def setUp(self):
        self.clock = Clock()
        self.limiter = AuthRateLimiter(self.clock)

    def test_success_clears_failures(self):
        """Nine failures, a success, then nine more: still not locked."""
        for _ in range(9):
            self.limiter.record_failure(REMOTE, KIND)
        self.limiter.record_success(REMOTE, KIND)
        for _ in range(9):
            self.limiter.record_failure(REMOTE, KIND)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))

    def test_success_only_clears_its_own_key(self):
        """A success from one address does not forgive another address."""
        for _ in range(9):
            self.limiter.record_failure(REMOTE, KIND)
        self.limiter.record_success(OTHER_REMOTE, KIND)
        self.limiter.record_failure(REMOTE, KIND)
        self.assertEqual(self.limiter.retry_after_ms(REMOTE, KIND), 300_000)

    def test_success_on_an_unknown_key_is_harmless(self):
        self.limiter.record_success(REMOTE, KIND)
        self.assertIsNone(self.limiter.retry_after_ms(REMOTE, KIND))


class LoopbackExemptionTests(SynchronousTestCase):
    """Loopback is exempt by default so a local operator cannot lock themselves out."""

    def setUp(self):
        self.clock = Clock()

    def test_loopback_addresses_are_never_locked(self):
        limiter = AuthRateLimiter(self.clock)
        for address in ("127.0.0.1", "127.0.0.53", "::1"):
            for _ in range(50):
                limiter.record_failure(address, KIND)
            self.assertIsNone(limiter.retry_after_ms(address, KIND), address)

    def test_exemption_can_be_turned_off(self):
        """``exempt_loopback=False`` (config ``gateway.auth.rateLimit.exemptLoopback``) limits loopback too."""
        limiter = AuthRateLimiter(self.clock, exempt_loopback=False)
        for _ in range(10):
            limiter.record_failure("127.0.0.1", KIND)
        self.assertEqual(limiter.retry_after_ms("127.0.0.1", KIND), 300_000)

    def test_browser_origin_attempts_are_limited_even_on_loopback(self):
        """Any web page can script ws://127.0.0.1: loopback is no exemption for browser-origin auth."""
        limiter = AuthRateLimiter(self.clock)
        for _ in range(10):
            limiter.record_failure("127.0.0.1", BROWSER_ORIGIN_KIND)
        self.assertEqual(limiter.retry_after_ms("127.0.0.1", BROWSER_ORIGIN_KIND), 300_000)
        self.assertIsNone(limiter.retry_after_ms("127.0.0.1", KIND))

    def test_is_loopback(self):
        """Loopback detection: v4 127/8, v6 ::1 and the name localhost; nothing else."""
        for address in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
            self.assertTrue(is_loopback(address), address)
        for address in ("203.0.113.5", "10.0.0.1", "fe80::1", "", None, "not-an-ip"):
            self.assertFalse(is_loopback(address), address)
