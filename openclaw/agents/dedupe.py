"""Idempotency keys: a replayed ``chat.send``/``agent`` returns the first request's outcome.

Clients retry after reconnects; without this a flaky network would start the same run twice.
Entries live five minutes and the table holds at most 1000 (the reference's numbers), evicting
the oldest first so memory stays bounded however many keys clients invent.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

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
