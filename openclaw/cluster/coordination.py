"""Cluster-wide session leases and failed-auth lockouts, on Redis.

**Leases.** Before a run starts, its instance takes ``<prefix>lease:<session key>`` (``SET NX PX``,
value: the instance id) and renews it while the run lasts; a run on another instance for the same
session waits (it is queued, as runs on one instance are) until the lease is free. A lease is
released by compare-and-delete, so an instance never frees a lease another one took after its own
expired. A dead instance's leases are deleted by the peer that notices the death, and expire by
themselves after :data:`LEASE_TTL_S` in any case.

**Lockouts.** Each instance still counts failures in memory (``retry_after_ms`` must answer the
handshake without waiting), and also adds each failure to a shared counter per address and kind
that expires with the window; the instance whose failure reaches the limit publishes a lockout,
and every instance locks that address out until the same moment. Attempts spread over instances
by a balancer are therefore counted together.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ..security.rate_limit import AuthRateLimiter
from ..seams import IAuthRateLimiter, ISessionLeases

LEASE_TTL_S = 15.0
LEASE_RETRY_S = 0.25
RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
RENEW_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"


@implementer(ISessionLeases)
class ClusterLeases:
    _log = Logger()

    def __init__(self, clock: Any, bus: Any, ttl_s: float = LEASE_TTL_S):
        self._clock = clock
        self._bus = bus
        self._ttl_ms = int(ttl_s * 1000)
        self.held: set[str] = set()
        self._renew = LoopingCall(self._renew_all)
        self._renew.clock = clock

    def _key(self, session_key: str) -> str:
        key: str = self._bus.key("lease", session_key)
        return key

    def hold(self, session_key: str) -> Deferred[None]:
        """Fires once this instance holds the lease; retries while another instance holds it."""
        waiting: list[Any] = []

        def cancel(_: Deferred[None]) -> None:
            for call in waiting:
                if call.active():
                    call.cancel()

        result: Deferred[None] = Deferred(cancel)

        def attempt() -> None:
            waiting.clear()
            if result.called:
                return
            d = self._bus.link.command("SET", self._key(session_key), self._bus.instance_id, "NX", "PX", self._ttl_ms)
            d.addCallbacks(answered, failed)

        def answered(reply: Any) -> None:
            if result.called:
                if reply == "OK":
                    self._release_now(session_key)  # cancelled meanwhile: give it back
                return
            if reply == "OK":
                # Fires once the lease is also listed under this instance (for its peers to
                # free it should this instance die).
                self._taken(session_key).addBoth(listed)
            else:
                waiting.append(self._clock.callLater(LEASE_RETRY_S, attempt))

        def listed(_: Any) -> None:
            if result.called:
                self.release(session_key)  # cancelled while being listed
            else:
                result.callback(None)

        def failed(failure: Any) -> None:
            # Redis away: wait for it rather than risk two instances running one session.
            self._log.debug("session lease for {key} not taken yet: {error}", key=session_key, error=failure.getErrorMessage())
            if not result.called:
                waiting.append(self._clock.callLater(LEASE_RETRY_S * 4, attempt))

        attempt()
        return result

    def _taken(self, session_key: str) -> Deferred[Any]:
        self.held.add(session_key)
        if not self._renew.running:
            self._renew.start(self._ttl_ms / 3000.0, now=False)
        listed: Deferred[Any] = self._bus.link.command("SADD", self._bus.key("leases", self._bus.instance_id), session_key)
        return listed

    def release(self, session_key: str) -> None:
        if session_key in self.held:
            self.held.discard(session_key)
            self._release_now(session_key)
        if not self.held and self._renew.running:
            self._renew.stop()

    def _release_now(self, session_key: str) -> None:
        link = self._bus.link
        d = link.command("EVAL", RELEASE_IF_OURS, 1, self._key(session_key), self._bus.instance_id)
        d.addCallback(lambda _: link.command("SREM", self._bus.key("leases", self._bus.instance_id), session_key))
        d.addErrback(lambda failure: self._log.debug("lease release failed: {error}", error=failure.getErrorMessage()))

    def _renew_all(self) -> None:
        for session_key in sorted(self.held):
            d = self._bus.link.command("EVAL", RENEW_IF_OURS, 1, self._key(session_key), self._bus.instance_id, self._ttl_ms)
            d.addCallback(self._renewed, session_key)
            d.addErrback(lambda failure: None)

    def _renewed(self, reply: Any, session_key: str) -> None:
        if not reply and session_key in self.held:
            self._log.warn("lost the lease of session {key} (held past its expiry?)", key=session_key)

    def stop(self) -> None:
        if self._renew.running:
            self._renew.stop()
        for session_key in sorted(self.held):
            self._release_now(session_key)
        self.held.clear()

    def release_dead(self, instance_id: str) -> Deferred[Any]:
        """Free the leases a dead instance held (only those still naming it)."""
        link = self._bus.link
        set_key = self._bus.key("leases", instance_id)

        def free(members: Any) -> Deferred[Any]:
            from twisted.internet.defer import gatherResults

            calls = [link.command("EVAL", RELEASE_IF_OURS, 1, self._key(str(m)), instance_id) for m in (members or ())]
            return gatherResults(calls).addCallback(lambda _: link.command("DEL", set_key))

        members: Deferred[Any] = link.command("SMEMBERS", set_key)
        return members.addCallback(free)


@implementer(IAuthRateLimiter)
class ClusterRateLimiter(AuthRateLimiter):
    _log = Logger()

    def __init__(self, clock: Any, bus: Any):
        super().__init__(clock)
        self._bus = bus
        bus.rate_limiter = self

    def record_failure(self, address: str | None, kind: str) -> None:
        super().record_failure(address, kind)
        if self._exempt(address, kind):
            return
        key = self._bus.key("auth", kind, address or "")
        link = self._bus.link
        d = link.command("INCR", key)

        def counted(count: Any) -> Any:
            if int(count) == 1:
                link.command("PEXPIRE", key, int(self._window * 1000)).addErrback(lambda _: None)
            if int(count) >= self._max_attempts:
                until_ms = int((self._clock.seconds() + self._lockout) * 1000)
                link.command("DEL", key).addErrback(lambda _: None)
                self.lock(address or "", kind, until_ms)
                return self._bus.publish(
                    self._bus.control_channel,
                    {"k": "lockout", "i": self._bus.instance_id, "address": address or "", "kind": kind, "untilMs": until_ms},
                )
            return None

        d.addCallback(counted)
        d.addErrback(lambda failure: self._log.debug("failure not shared: {error}", error=failure.getErrorMessage()))

    def record_success(self, address: str | None, kind: str) -> None:
        super().record_success(address, kind)
        if not self._exempt(address, kind):
            self._bus.link.command("DEL", self._bus.key("auth", kind, address or "")).addErrback(lambda _: None)

    def lock(self, address: str, kind: str, until_ms: int) -> None:
        """A lockout decided anywhere in the cluster, applied here until the same moment."""
        window = self._windows.get((address, kind))
        if window is None:
            from ..security.rate_limit import _Window

            window = self._windows[(address, kind)] = _Window()
        window.locked_until = max(window.locked_until, until_ms / 1000.0)
        window.failures.clear()
