"""A SQLite database whose every statement runs on one dedicated worker thread.

All disk work leaves the reactor thread; a single worker serialises writes so that the order the
reactor issued them in is the order they reach the disk, and WAL mode keeps the file readable if
the process is killed mid-write (the last uncommitted transaction is simply gone).
"""
from __future__ import annotations

import os
import sqlite3
from typing import Any, Protocol, TypeVar
from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")
Migration = str | Callable[[sqlite3.Connection], None]


class Executor(Protocol):
    """Where a database's work runs: inline (tests, tools) or on its own worker thread."""

    def submit(self, work: Callable[[], T]) -> Deferred[T]: ...

    def stop(self) -> None: ...


class StoreUnavailable(Exception):
    """A store that cannot be opened or read at start-up: the gateway must not run without it."""


def refuse_to_start_without(name: str, path: str) -> Callable[[Failure], Failure]:
    """An errback naming the store and its file, so start-up fails with a message to act on.

    Carrying on would leave a gateway that listens but can never admit anyone (the handshake
    waits for the device store), which is harder to diagnose than a clear refusal to start.
    """

    def explain(failure: Failure) -> Failure:
        return Failure(StoreUnavailable(f"could not open the {name} at {path}: {failure.getErrorMessage()}"))

    return explain


class InlineExecutor:
    """Runs database work synchronously: for SynchronousTestCase tests and offline tools."""

    def submit(self, work: Callable[[], T]) -> Deferred[T]:
        return maybeDeferred(work)

    def stop(self) -> None:
        pass


class ThreadExecutor:
    """One worker thread owned by this database; its Deferreds fire on the reactor thread."""

    def __init__(self, reactor: Any, name: str):
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        # Started on first use, not here: ``makeService`` runs before twistd daemonizes (forks),
        # and a thread started before the fork does not exist in the daemon.
        self._stopped = False

    def submit(self, work: Callable[[], T]) -> Deferred[T]:
        if not self._pool.started and not self._stopped:
            self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, work)

    def stop(self) -> None:
        self._stopped = True
        self._pool.stop()


class SQLiteDatabase:
    """A database file plus its ordered migrations; ``run`` executes a function in a transaction."""

    def __init__(self, path: str, migrations: Sequence[Migration], executor: Executor):
        self.path = path
        self._migrations = list(migrations)
        self._executor = executor
        self._connection: sqlite3.Connection | None = None
        self._closing: Deferred[None] | None = None

    @classmethod
    def threaded(cls, reactor: Any, path: str, migrations: Sequence[Migration]) -> SQLiteDatabase:
        return cls(path, migrations, ThreadExecutor(reactor, f"sqlite:{os.path.basename(path)}"))

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            # Create the file 0600 before SQLite opens it, so it is never readable by others.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute("PRAGMA busy_timeout=5000")
                connection.execute("PRAGMA foreign_keys=ON")
                self._migrate(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        for number, migration in enumerate(self._migrations[version:], start=version + 1):
            connection.execute("BEGIN IMMEDIATE")
            try:
                if callable(migration):
                    migration(connection)
                else:
                    for statement in filter(None, (s.strip() for s in migration.split(";"))):
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version={number}")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def run(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``work(connection, *args)`` in one transaction on the worker; fires with its result."""

        def in_transaction() -> T:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection, *args)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return self._executor.submit(in_transaction)

    def close(self) -> Deferred[None]:
        """Close the file and stop the worker; closing twice is harmless (the worker is gone)."""
        d: Deferred[None] = Deferred()
        if self._closing is not None:

            def release(result: object) -> object:
                d.callback(None)
                return result

            self._closing.addBoth(release)
            return d

        def shut() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        def relay(result: Any) -> None:
            # The first caller gets the outcome (including a failure); later callers get None.
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

        self._closing = self._executor.submit(shut)
        self._closing.addBoth(self._stop_executor)
        self._closing.addBoth(relay)
        return d

    def _stop_executor(self, result: Any) -> Any:
        self._executor.stop()
        return result
