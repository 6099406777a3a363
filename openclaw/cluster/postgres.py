"""PostgreSQL behind the same ``run(work, *args)`` seam the SQLite stores use.

Every statement runs on this database's own worker threads (``deferToThreadPool``), never on the
reactor: each thread keeps one psycopg 3 connection whose ``search_path`` is the cluster's schema.
``run`` executes ``work(connection, *args)`` in one transaction and fires only after COMMIT, so a
write acknowledged to a client is durable and visible to every instance.

The stores' SQL is written for SQLite; :class:`Connection` translates the few places where the
dialects differ (``?`` placeholders, ``INSERT OR REPLACE``), so there is one copy of each query.
A PostgreSQL that is down or restarting turns into a retryable ``UNAVAILABLE`` for the client
and a fresh connection on the next call.
"""
from __future__ import annotations

import functools
import re
import threading
from typing import Any, TypeVar
from collections.abc import Callable, Iterable, Sequence

import psycopg
from twisted.internet.defer import Deferred

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..stores.sqlite import Executor, ThreadExecutor

T = TypeVar("T")
R = TypeVar("R")
CONNECT_TIMEOUT_S = 5
POSTGRES_RETRY_AFTER_MS = 1000

# Primary keys of the tables the stores write with ``INSERT OR REPLACE``.
UPSERT_KEYS: dict[str, tuple[str, ...]] = {
    "paired_devices": ("device_id",),
    "device_tokens": ("device_id", "role"),
    "pending_requests": ("request_id",),
    "paired_nodes": ("node_id",),
    "pending_nodes": ("request_id",),
}
_INSERT_OR_REPLACE = re.compile(r"^\s*INSERT OR REPLACE INTO (\w+) \(([^)]*)\)(.*)$", re.S)


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's spelling of a statement in PostgreSQL's (the stores' SQL is static text)."""
    match = _INSERT_OR_REPLACE.match(sql)
    if match:
        table, columns, rest = match.groups()
        keys = UPSERT_KEYS[table]
        names = [name.strip() for name in columns.split(",")]
        updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in keys)
        sql = f"INSERT INTO {table} ({columns}){rest} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    return sql.replace("%", "%%").replace("?", "%s")


def postgres_unavailable(exc: BaseException) -> GatewayError:
    return GatewayError(
        UNAVAILABLE,
        f"shared storage (PostgreSQL) unavailable, retry: {str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__}",
        {"code": "STORAGE_UNAVAILABLE"},
        retryable=True,
        retry_after_ms=POSTGRES_RETRY_AFTER_MS,
    )


class Connection:
    """A psycopg connection that accepts the stores' SQLite-flavoured SQL."""

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor:
        return self.raw.execute(translate(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self.raw.cursor() as cursor:
                cursor.executemany(translate(sql), rows)


class PostgresDatabase:
    """A schema on a PostgreSQL server, worked on by an executor of its own.

    One worker thread (``threaded``) keeps SQLite's guarantee that work reaches the database in
    the order the reactor issued it; more throughput comes from more instances, not more threads.
    """

    def __init__(self, dsn: str, schema: str, executor: Executor):
        self._dsn = dsn
        self.schema = schema
        self.path = f"postgresql schema {schema!r}"
        self._executor = executor
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def threaded(cls, reactor: Any, dsn: str, schema: str, name: str) -> PostgresDatabase:
        return cls(dsn, schema, ThreadExecutor(reactor, f"postgres:{name}"))

    def connect(self) -> psycopg.Connection:
        """A new connection whose unqualified names resolve in the cluster schema (any thread)."""
        return psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, options=f"-c search_path={self.schema}"
        )

    def _connection(self) -> psycopg.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.broken:
            connection = self.connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def run(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """``work(connection, *args)`` in one transaction on the worker; fires after COMMIT."""

        def in_transaction() -> T:
            try:
                raw = self._connection()
                with raw.transaction():
                    return work(Connection(raw), *args)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._forget_connection()
                raise postgres_unavailable(exc) from exc

        return self._executor.submit(in_transaction)

    def _forget_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def close(self) -> Deferred[None]:
        """Close the connections on the worker, then stop it; closing twice is harmless."""

        def shut() -> None:
            with self._lock:
                connections, self._connections = self._connections, []
            for connection in connections:
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - closing what may be broken
                    pass

        def stop(result: R) -> R:
            self._executor.stop()
            return result

        return self._executor.submit(shut).addBoth(stop)
