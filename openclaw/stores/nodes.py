"""Paired nodes and pending node pairing requests, in ``<state-dir>/nodes.sqlite``.

Records are kept in the reference's wire shape (``{nodeId, displayName, platform, caps,
commands, …, token, createdAtMs, approvedAtMs}``), loaded once and served from memory; every
change is written through the database worker, and callers that must not answer before the
write is durable wait on the returned Deferred.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Iterable

import orjson
from twisted.internet.defer import Deferred

from zope.interface import implementer

from ..seams import INodeStore
from .sqlite import SQLiteDatabase

MIGRATIONS = [
    """
    CREATE TABLE paired_nodes (node_id TEXT PRIMARY KEY, record TEXT NOT NULL);
    CREATE TABLE pending_nodes (request_id TEXT PRIMARY KEY, node_id TEXT NOT NULL, record TEXT NOT NULL)
    """,
]


@implementer(INodeStore)
class NodeStore:
    def __init__(self, database: SQLiteDatabase):
        self._db = database
        self._paired: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, dict[str, Any]] = {}


    @property
    def path(self) -> str:
        return self._db.path
    def load(self) -> Deferred[None]:
        def read(connection: Any) -> tuple[list[Any], list[Any]]:
            return (
                connection.execute("SELECT record FROM paired_nodes").fetchall(),
                connection.execute("SELECT record FROM pending_nodes").fetchall(),
            )

        def fill(rows: tuple[list[Any], list[Any]]) -> None:
            paired, pending = rows
            self._paired = {record["nodeId"]: record for record in (orjson.loads(text) for (text,) in paired)}
            self._pending = {record["requestId"]: record for record in (orjson.loads(text) for (text,) in pending)}

        return self._db.run(read).addCallback(fill)

    def close(self) -> Deferred[None]:
        return self._db.close()

    def paired(self, node_id: str) -> dict[str, Any] | None:
        return self._paired.get(node_id)

    def all_paired(self) -> list[dict[str, Any]]:
        return list(self._paired.values())

    def pending(self, request_id: str) -> dict[str, Any] | None:
        return self._pending.get(request_id)

    def pending_for(self, node_id: str) -> dict[str, Any] | None:
        for record in self._pending.values():
            if record["nodeId"] == node_id:
                return record
        return None

    def all_pending(self) -> list[dict[str, Any]]:
        return list(self._pending.values())

    def put_paired(self, record: dict[str, Any]) -> Deferred[object]:
        self._paired[record["nodeId"]] = record
        return self._db.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO paired_nodes (node_id, record) VALUES (?, ?)",
                (record["nodeId"], orjson.dumps(record).decode()),
            )
        )

    def remove_paired(self, node_id: str) -> Deferred[object]:
        self._paired.pop(node_id, None)
        return self._db.run(lambda c: c.execute("DELETE FROM paired_nodes WHERE node_id = ?", (node_id,)))

    def put_pending(self, record: dict[str, Any]) -> Deferred[object]:
        self._pending[record["requestId"]] = record
        return self._db.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO pending_nodes (request_id, node_id, record) VALUES (?, ?, ?)",
                (record["requestId"], record["nodeId"], orjson.dumps(record).decode()),
            )
        )

    def remove_pending(self, request_ids: Iterable[str]) -> Deferred[object]:
        ids = [request_id for request_id in request_ids if self._pending.pop(request_id, None) is not None]
        return self._db.run(
            lambda c: c.executemany("DELETE FROM pending_nodes WHERE request_id = ?", [(request_id,) for request_id in ids])
        )
