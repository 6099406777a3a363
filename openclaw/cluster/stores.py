"""The session, device and node stores on PostgreSQL, shared by every instance.

They are the SQLite stores with PostgreSQL's differences, so lists, search and every method
behave the same in both modes:

- **Sessions** are read from the database on every call (as in SQLite). Concurrent writers to one
  session, on any instance, are serialised by a transaction-scoped advisory lock on the session
  key taken before the row is read: each write reads the latest committed row and its changes are
  never lost; appends from two instances land in one transcript in commit order. Archived
  transcript lines move to ``transcript_archive`` (every instance can read them) instead of a
  local file.
- **Devices and nodes** are small and served from memory as in SQLite; after each committed
  change ``on_change`` sends the change itself to the other instances (over Redis), which apply
  it to their memory in bus order, so an event broadcast after the change (``node.pair.requested``
  say) never reaches a peer before the change does; a full reload runs when the bus reconnects.
  A handshake re-reads its own device first (``refresh``), so a token issued on another instance
  a moment ago is already known.
"""
from __future__ import annotations

import json
from typing import Any, TypeVar
from collections.abc import Callable, Iterable

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..protocol.errors import GatewayError
from ..stores.devices import DeviceStore, DeviceToken, PairedDevice, PendingPairing
from ..stores.nodes import NodeStore
from ..stores.sessions import SessionStore, _iso
from .postgres import Connection, PostgresDatabase

T = TypeVar("T")
_log = Logger(namespace="openclaw.cluster.stores")
SESSION_LOCK_SPACE = 0x5E55  # second argument of hashtextextended: keeps our keys apart


class PostgresSessionStore(SessionStore):
    NO_LIMIT = None

    def __init__(self, database: PostgresDatabase, state_dir: str):
        super().__init__(database, state_dir)  # type: ignore[arg-type]
        self._schema = database.schema

    def _write(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        def locking(connection: Connection, *work_args: Any) -> T:
            connection.locking = True  # type: ignore[attr-defined]
            return work(connection, *work_args)

        return super()._write(locking, *args)

    def _get(self, connection: Any, key: str) -> dict[str, Any] | None:  # type: ignore[override]
        if getattr(connection, "locking", False):
            connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, ?))", (key, SESSION_LOCK_SPACE))
        return SessionStore._get(connection, key)

    def _search_terms(self, connection: Any, search: str) -> tuple[tuple[str, Any], tuple[str, Any]]:
        """A substring test PostgreSQL answers from the trigram index when it has one."""
        if "\x00" in search:
            never = ("0 = ?", 1)  # PostgreSQL text holds no NUL, so nothing can contain one
            return never, never
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        term = ("search_text LIKE ?", pattern)
        return term, term

    def _archive(
        self,
        connection: Any,
        session_id: str,
        reason: str,
        now_ms: int,
        before_id: int | None = None,
        keep_rows: bool = False,
    ) -> str | None:
        """Move transcript lines to ``transcript_archive`` under one archive name; returns it."""
        name = f"postgresql:{self._schema}/{session_id}.jsonl.{reason}.{_iso(now_ms).replace(':', '-')}"
        condition = "session_id = ?"
        args: list[Any] = [session_id]
        if before_id is not None:
            condition += " AND id < ?"
            args.append(before_id)
        moved = connection.execute(
            "INSERT INTO transcript_archive (archive, session_id, reason, archived_at, line_id, entry) "
            f"SELECT ?, session_id, ?, ?, id, entry FROM transcript WHERE {condition} ORDER BY id",
            [name, reason, now_ms, *args],
        ).rowcount
        if not moved:
            return None
        if not keep_rows:
            connection.execute(f"DELETE FROM transcript WHERE {condition}", args)
        return name

    def refresh_summary(self) -> Deferred[None]:
        """Re-read the count and recent keys ``health`` shows (after another instance wrote)."""
        return self._db.run(self._refresh_summary).addCallback(self._set_summary)


def _reload_failed(failure: Failure) -> None:
    _log.failure("reloading a shared store failed", failure)


class _Reloader:
    """Reloads a memory-served store, one at a time; a request during a reload runs one more."""

    def __init__(self, reload: Callable[[], Deferred[None]]):
        self._reload = reload
        self._running = False
        self._again = False

    def request(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        d = self._reload()
        d.addErrback(_reload_failed)
        d.addBoth(self._done)

    def _done(self, _: Any) -> None:
        self._running = False
        if self._again:
            self._again = False
            self.request()


class PostgresDeviceStore(DeviceStore):
    def __init__(self, database: PostgresDatabase, on_change: Callable[[str, list[Any]], None] | None = None):
        super().__init__(database)  # type: ignore[arg-type]
        self.on_change = on_change
        self._reloader = _Reloader(self._reload_all)

    def refresh(self, device_id: str) -> Deferred[None]:
        def read(connection: Any) -> tuple[Any, list[Any], list[Any]]:
            return (
                connection.execute("SELECT record FROM paired_devices WHERE device_id = ?", (device_id,)).fetchone(),
                connection.execute("SELECT record FROM device_tokens WHERE device_id = ?", (device_id,)).fetchall(),
                connection.execute("SELECT record FROM pending_requests WHERE device_id = ?", (device_id,)).fetchall(),
            )

        def fill(rows: tuple[Any, list[Any], list[Any]]) -> None:
            paired, tokens, pending = rows
            if paired is None:
                self._paired.pop(device_id, None)
            else:
                self._paired[device_id] = PairedDevice.from_record(json.loads(paired[0]))
            for key in [key for key in self._tokens if key[0] == device_id]:
                del self._tokens[key]
            for (record,) in tokens:
                token = DeviceToken.from_record(json.loads(record))
                self._tokens[(token.device_id, token.role)] = token
            for request_id in [rid for rid, request in self._pending.items() if request.device_id == device_id]:
                del self._pending[request_id]
            for (record,) in pending:
                request = PendingPairing.from_record(json.loads(record))
                self._pending[request.request_id] = request

        return self._db.run(read).addCallbacks(fill, self._keep_memory, errbackArgs=(device_id,))

    def _keep_memory(self, failure: Any, device_id: str) -> None:
        """PostgreSQL away: a handshake goes on with what this instance last read."""
        failure.trap(GatewayError)
        _log.warn("could not re-read device {device_id} ({error}); using the copy in memory", device_id=device_id, error=failure.value.message)

    def reload(self) -> None:
        """Another instance changed the tables: read them again (coalesced)."""
        self._reloader.request()

    def _reload_all(self) -> Deferred[None]:
        """Read into a fresh view and swap it in whole: a handshake never sees a half-read store."""
        fresh = DeviceStore(self._db)

        def swap(_: Any) -> None:
            self._paired, self._tokens, self._pending = fresh._paired, fresh._tokens, fresh._pending

        return fresh.load().addCallback(swap)

    def _changed(self, result: T, op: str, *args: Any) -> T:
        """After COMMIT: tell the other instances what changed (they apply it to memory)."""
        if self.on_change is not None:
            self.on_change(op, list(args))
        return result

    def apply(self, op: str, args: list[Any]) -> None:
        """Another instance's committed change, applied to this instance's memory, in the order
        the bus delivers them (before any event that change's method broadcasts next)."""
        if op == "put_paired":
            device = PairedDevice.from_record(args[0])
            self._paired[device.device_id] = device
        elif op == "remove_paired":
            self._paired.pop(args[0], None)
            for key in [key for key in self._tokens if key[0] == args[0]]:
                del self._tokens[key]
        elif op == "put_token":
            # Token secrets never travel over the bus: the device is re-read from PostgreSQL.
            self.refresh(args[0])
        elif op == "remove_token":
            self._tokens.pop((args[0], args[1]), None)
        elif op == "put_pending":
            request = PendingPairing.from_record(args[0])
            self._pending[request.request_id] = request
        elif op == "remove_pending":
            for request_id in args[0]:
                self._pending.pop(request_id, None)
        else:
            self.reload()

    def put_paired(self, device: PairedDevice) -> Deferred[PairedDevice]:
        return super().put_paired(device).addCallback(self._changed, "put_paired", device.to_record())

    def remove_paired(self, device_id: str) -> Deferred[PairedDevice | None]:
        return super().remove_paired(device_id).addCallback(self._changed, "remove_paired", device_id)

    def put_token(self, token: DeviceToken) -> Deferred[DeviceToken]:
        return super().put_token(token).addCallback(self._changed, "put_token", token.device_id, token.role)

    def remove_token(self, device_id: str, role: str) -> Deferred[DeviceToken | None]:
        return super().remove_token(device_id, role).addCallback(self._changed, "remove_token", device_id, role)

    def put_pending(self, request: PendingPairing) -> Deferred[PendingPairing]:
        return super().put_pending(request).addCallback(self._changed, "put_pending", request.to_record())

    def remove_pending(self, request_ids: Iterable[str]) -> Deferred[list[str]]:
        ids = list(request_ids)
        return super().remove_pending(ids).addCallback(self._changed, "remove_pending", ids)


class PostgresNodeStore(NodeStore):
    def __init__(self, database: PostgresDatabase, on_change: Callable[[str, list[Any]], None] | None = None):
        super().__init__(database)  # type: ignore[arg-type]
        self.on_change = on_change
        self._reloader = _Reloader(self.load)

    def reload(self) -> None:
        self._reloader.request()

    def refresh(self, node_id: str) -> Deferred[None]:
        def read(connection: Any) -> Any:
            return connection.execute("SELECT record FROM paired_nodes WHERE node_id = ?", (node_id,)).fetchone()

        def fill(row: Any) -> None:
            if row is None:
                self._paired.pop(node_id, None)
            else:
                self._paired[node_id] = orjson.loads(row[0])

        return self._db.run(read).addCallback(fill)

    def _changed(self, result: T, op: str, *args: Any) -> T:
        if self.on_change is not None:
            self.on_change(op, list(args))
        return result

    def apply(self, op: str, args: list[Any]) -> None:
        """Another instance's committed change, applied to memory (see PostgresDeviceStore)."""
        if op == "put_paired":
            self._paired[args[0]["nodeId"]] = args[0]
        elif op == "remove_paired":
            self._paired.pop(args[0], None)
        elif op == "put_pending":
            self._pending[args[0]["requestId"]] = args[0]
        elif op == "remove_pending":
            for request_id in args[0]:
                self._pending.pop(request_id, None)
        else:
            self.reload()

    def put_paired(self, record: dict[str, Any]) -> Deferred[object]:
        return super().put_paired(record).addCallback(self._changed, "put_paired", record)

    def remove_paired(self, node_id: str) -> Deferred[object]:
        return super().remove_paired(node_id).addCallback(self._changed, "remove_paired", node_id)

    def put_pending(self, record: dict[str, Any]) -> Deferred[object]:
        return super().put_pending(record).addCallback(self._changed, "put_pending", record)

    def remove_pending(self, request_ids: Iterable[str]) -> Deferred[object]:
        ids = list(request_ids)
        if not ids:
            return succeed(None)
        return super().remove_pending(ids).addCallback(self._changed, "remove_pending", ids)
