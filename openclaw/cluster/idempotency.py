"""Idempotency keys shared by every instance, on Redis.

A client retrying through a balancer may reach another instance than its first attempt did; the
retry must still get the first request's outcome, not a second run or invoke. Each instance keeps
the in-process cache it always had (``get``/``put``: the run objects a replay on the same instance
answers from), and before doing a request it *claims* the key in Redis: ``<prefix>idem:<key>``
is set only if absent (one Lua call: read, or set with the TTL), to a small JSON record naming
the owner and the request's fingerprint. The owner writes the outcome into the record when it
is known (keeping the TTL) and announces it on the control channel; an instance holding a replay
waits for that notice (and reads the record once after registering, in case it came before).

A waiter whose owner dies fails with UNAVAILABLE (retryable) and the dead owner's claim is
removed (only if still the same record), so the client's next retry runs the request again: as
on one gateway restarted mid-request. Redis away: the claim fails the request with UNAVAILABLE
(retryable) rather than risk doing it twice.
"""
from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ..agents.dedupe import DEDUPE_TTL_S, IdempotencyCache
from ..protocol.errors import UNAVAILABLE, GatewayError
from ..seams import IIdempotencyCache

MAX_WAITERS = 4096
CLAIM = "local v = redis.call('get', KEYS[1]) if v then return v end redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return false"
DELETE_IF_OWNER = (
    "local v = redis.call('get', KEYS[1]) "
    "if v and cjson.decode(v)['owner'] == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
)
DELETE_IF_SAME = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def unavailable(message: str) -> GatewayError:
    return GatewayError(UNAVAILABLE, message, {"code": "IDEMPOTENCY_OWNER_UNAVAILABLE"}, retryable=True)


@implementer(IIdempotencyCache)
class ClusterIdempotencyCache(IdempotencyCache[Any]):
    _log = Logger()

    def __init__(self, clock: Any, bus: Any, ttl_s: float = DEDUPE_TTL_S):
        super().__init__(clock, ttl_s)
        self._bus = bus
        self._ttl_ms = int(ttl_s * 1000)
        self._waiters: dict[str, list[tuple[str, Deferred[Any], Any]]] = {}
        bus.idempotency = self

    def _key(self, key: str) -> str:
        return f"{self._bus.key('idem')}:{key}"

    def claim(self, key: str, fingerprint: str) -> Deferred[Any]:
        record = orjson.dumps({"owner": self._bus.instance_id, "fp": fingerprint, "done": False})
        d: Deferred[Any] = self._bus.link.command("EVAL", CLAIM, 1, self._key(key), record, self._ttl_ms)

        def answered(reply: Any) -> dict[str, Any] | None:
            return None if reply is None else orjson.loads(reply)

        def failed(failure: Any) -> None:
            raise unavailable(f"cluster bus unavailable, retry: {failure.getErrorMessage()}")

        return d.addCallbacks(answered, failed)

    def complete(self, key: str, fingerprint: str, result: Any = None, error: Any = None) -> None:
        record: dict[str, Any] = {"owner": self._bus.instance_id, "fp": fingerprint, "done": True, "ok": error is None}
        if error is None:
            record["result"] = result
        else:
            record["error"] = error.to_shape()
            if error.payload is not None:
                record["payload"] = error.payload
        link = self._bus.link
        stored = link.command("SET", self._key(key), orjson.dumps(record), "XX", "KEEPTTL")
        told = self._bus.publish(self._bus.control_channel, {"k": "idem", "i": self._bus.instance_id, "key": key, "rec": record})
        for d in (stored, told):
            d.addErrback(lambda failure: self._log.warn("idempotency outcome not shared: {error}", error=failure.getErrorMessage()))
        self.completed(key, record)  # a replay waiting here (the bus skips this instance's own notices)

    def abandon(self, key: str) -> None:
        link = self._bus.link
        freed = link.command("EVAL", DELETE_IF_OWNER, 1, self._key(key), self._bus.instance_id)
        told = self._bus.publish(self._bus.control_channel, {"k": "idem", "i": self._bus.instance_id, "key": key, "rec": {"done": True, "abandoned": True}})
        for d in (freed, told):
            d.addErrback(lambda failure: self._log.warn("idempotency claim not freed: {error}", error=failure.getErrorMessage()))
        self.completed(key, {"done": True, "abandoned": True})

    def wait(self, key: str, record: dict[str, Any], timeout_s: float) -> Deferred[Any]:
        if record.get("done"):
            return succeed(record)
        owner = str(record.get("owner"))
        if owner != self._bus.instance_id and owner not in self._bus.live_instances:
            self._forget_claim(key, record)
            return _failed(unavailable(f"the gateway instance that took this idempotencyKey ({owner}) is gone; retry"))
        if sum(len(w) for w in self._waiters.values()) >= MAX_WAITERS:
            return _failed(GatewayError(UNAVAILABLE, "too many requests waiting for another instance", retryable=True))
        result: Deferred[Any] = Deferred()
        timer = self._clock.callLater(timeout_s, self._settle_one, key, result, unavailable("waiting for another instance's outcome timed out; retry"))
        self._waiters.setdefault(key, []).append((owner, result, timer))
        # The outcome may have been announced before this waiter was listed.
        self._bus.link.command("GET", self._key(key)).addCallbacks(self._reread, lambda _: None, callbackArgs=(key,))
        return result

    def _reread(self, reply: Any, key: str) -> None:
        if reply is not None:
            record = orjson.loads(reply)
            if record.get("done"):
                self.completed(key, record)

    def completed(self, key: str, record: dict[str, Any]) -> None:
        """An owner's outcome, announced on the bus (or read back)."""
        for _, d, timer in self._waiters.pop(key, []):
            if timer.active():
                timer.cancel()
            d.callback(record)

    def owner_gone(self, instance_id: str) -> None:
        """A peer died: requests waiting on its outcomes fail, retryable."""
        for key, waiters in list(self._waiters.items()):
            for owner, d, _ in [w for w in waiters if w[0] == instance_id]:
                self._settle_one(key, d, unavailable(f"the gateway instance that took this idempotencyKey ({owner}) is gone; retry"))

    def _settle_one(self, key: str, d: Deferred[Any], error: GatewayError) -> None:
        waiters = self._waiters.get(key, [])
        for entry in list(waiters):
            if entry[1] is d:
                waiters.remove(entry)
                if entry[2].active():
                    entry[2].cancel()
        if not waiters:
            self._waiters.pop(key, None)
        if not d.called:
            d.errback(error)

    def _forget_claim(self, key: str, record: dict[str, Any]) -> None:
        # Compare with the exact bytes stored: re-encode as the owner did.
        value = orjson.dumps(record)
        d = self._bus.link.command("EVAL", DELETE_IF_SAME, 1, self._key(key), value)
        d.addErrback(lambda _: None)


def _failed(error: GatewayError) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d
