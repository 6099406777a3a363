"""Idempotency keys: a replayed ``chat.send``/``agent`` returns the first request's outcome.

Clients retry after reconnects; without this a flaky network would start the same run twice.
Entries live five minutes and the table holds at most 1000 (the reference's numbers), evicting
the oldest first so memory stays bounded however many keys clients invent.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Generic, TypeVar

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..seams import IIdempotencyCache

DEDUPE_TTL_S = 300.0
DEDUPE_MAX_ENTRIES = 1000

V = TypeVar("V")


@implementer(IIdempotencyCache)
class IdempotencyCache(Generic[V]):
    def __init__(self, clock: IReactorTime, ttl_s: float = DEDUPE_TTL_S, max_entries: int = DEDUPE_MAX_ENTRIES):
        self._clock = clock
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        self._expire()
        found = self._entries.get(key)
        return found[1] if found else None

    def put(self, key: str, value: V) -> None:
        self._expire()
        self._entries.pop(key, None)
        self._entries[key] = (self._clock.seconds() + self._ttl, value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def claim(self, key: str, fingerprint: str) -> Deferred[Any]:
        """One process: ``get`` already answered every replay, so the key is always ours."""
        return succeed(None)

    def complete(self, key: str, fingerprint: str, result: Any = None, error: Any = None) -> None:
        """One process: replays read the value ``put`` stored; nothing else to tell."""

    def abandon(self, key: str) -> None:
        """One process: nothing was stored for a request that did not start."""

    def wait(self, key: str, record: dict[str, Any], timeout_s: float) -> Deferred[Any]:
        """Never needed in one process (``claim`` never names another owner)."""
        return succeed(record)

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def _expire(self) -> None:
        now = self._clock.seconds()
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]


def fingerprint(parts: Any) -> str:
    """A short digest of a request's input (messages may be long; the record stays small)."""
    digest: str = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return digest[:32]


def outcome_of(record: dict[str, Any]) -> Any:
    """The result a finished record holds, or raise the error it holds (in the protocol's shape)."""
    if record.get("ok"):
        return record.get("result")
    if record.get("abandoned"):
        raise GatewayError(UNAVAILABLE, "the first request with this idempotencyKey did not start; retry", retryable=True)
    error = record.get("error") or {}
    raise GatewayError(
        error.get("code") or UNAVAILABLE,
        error.get("message") or "request failed",
        error.get("details"),
        error.get("retryable"),
        error.get("retryAfterMs"),
        payload=record.get("payload"),
    )
