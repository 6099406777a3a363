"""Paired devices, their per-role tokens, and pending pairing requests.

The whole set is small (one row per device), so it is loaded once and served from memory: the
handshake never waits on the disk to look a device up. Every change updates memory first and is
then written through the database worker; callers that must not answer before the write is durable
(approvals, issued tokens) wait on the returned Deferred.
"""
from __future__ import annotations

import json
import secrets
from typing import Any, ClassVar, Self, TypeVar
from collections.abc import Iterable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from zope.interface import implementer

from ..seams import IDeviceStore
from .sqlite import SQLiteDatabase

T = TypeVar("T")

MIGRATIONS = [
    """
    CREATE TABLE paired_devices (device_id TEXT PRIMARY KEY, record TEXT NOT NULL);
    CREATE TABLE device_tokens (
        device_id TEXT NOT NULL,
        role TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (device_id, role)
    );
    CREATE TABLE pending_requests (request_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, record TEXT NOT NULL)
    """,
]


def new_device_token() -> str:
    """32 random bytes, base64url without padding (43 characters), like the reference."""
    return secrets.token_urlsafe(32)


def _drop_none(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if value is not None}


class _Record:
    """JSON-column round trip; unknown keys from newer versions are ignored, not fatal."""

    # Every subclass is an attrs class; declared here so ``attrs.asdict``/``fields`` accept it.
    __attrs_attrs__: ClassVar[Any]

    def to_record(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        known = {field.name for field in attrs.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in known})


@attrs.define
class PairedDevice(_Record):
    device_id: str
    public_key: str
    roles: list[str]
    scopes: list[str]
    created_at_ms: int
    approved_at_ms: int
    display_name: str | None = None
    operator_label: str | None = None
    platform: str | None = None
    device_family: str | None = None
    client_id: str | None = None
    client_mode: str | None = None
    remote_ip: str | None = None
    last_seen_at_ms: int | None = None
    last_seen_reason: str | None = None

    def to_wire(self, tokens: Iterable[DeviceToken] = ()) -> dict[str, Any]:
        return _drop_none(
            {
                "deviceId": self.device_id,
                "publicKey": self.public_key,
                "displayName": self.display_name,
                "operatorLabel": self.operator_label,
                "platform": self.platform,
                "deviceFamily": self.device_family,
                "clientId": self.client_id,
                "clientMode": self.client_mode,
                "role": self.roles[0] if self.roles else None,
                "roles": list(self.roles),
                "scopes": list(self.scopes),
                "approvedScopes": list(self.scopes),
                "remoteIp": self.remote_ip,
                "createdAtMs": self.created_at_ms,
                "approvedAtMs": self.approved_at_ms,
                "lastSeenAtMs": self.last_seen_at_ms,
                "lastSeenReason": self.last_seen_reason,
                "tokens": [token.to_wire() for token in tokens],
            }
        )


@attrs.define
class DeviceToken(_Record):
    device_id: str
    role: str
    token: str = attrs.field(repr=False)
    scopes: list[str]
    created_at_ms: int
    rotated_at_ms: int | None = None
    last_used_at_ms: int | None = None

    @property
    def issued_at_ms(self) -> int:
        return self.rotated_at_ms or self.created_at_ms

    def to_wire(self) -> dict[str, Any]:
        """Token metadata for listings; the secret itself is never listed."""
        return _drop_none(
            {
                "role": self.role,
                "scopes": list(self.scopes),
                "createdAtMs": self.created_at_ms,
                "rotatedAtMs": self.rotated_at_ms,
                "lastUsedAtMs": self.last_used_at_ms,
            }
        )


@attrs.define
class PendingPairing(_Record):
    request_id: str
    device_id: str
    public_key: str
    role: str
    roles: list[str]
    scopes: list[str]
    ts: int
    reason: str = "not-paired"
    display_name: str | None = None
    platform: str | None = None
    device_family: str | None = None
    client_id: str | None = None
    client_mode: str | None = None
    remote_ip: str | None = None
    silent: bool = False
    is_repair: bool = False
    refreshed_at_ms: int | None = None

    @property
    def last_activity_ms(self) -> int:
        return self.refreshed_at_ms or self.ts

    def to_wire(self) -> dict[str, Any]:
        return _drop_none(
            {
                "requestId": self.request_id,
                "deviceId": self.device_id,
                "publicKey": self.public_key,
                "displayName": self.display_name,
                "platform": self.platform,
                "deviceFamily": self.device_family,
                "clientId": self.client_id,
                "clientMode": self.client_mode,
                "role": self.role,
                "roles": list(self.roles),
                "scopes": list(self.scopes),
                "remoteIp": self.remote_ip,
                "silent": self.silent,
                "isRepair": self.is_repair,
                "reason": self.reason,
                "ts": self.ts,
                "refreshedAtMs": self.refreshed_at_ms,
            }
        )


@implementer(IDeviceStore)
class DeviceStore:
    """In-memory view of the device tables, written through to SQLite."""

    def __init__(self, database: SQLiteDatabase):
        self._db = database
        self._paired: dict[str, PairedDevice] = {}
        self._tokens: dict[tuple[str, str], DeviceToken] = {}
        self._pending: dict[str, PendingPairing] = {}

    @property
    def path(self) -> str:
        return self._db.path

    def load(self) -> Deferred[None]:
        """Read every row once, at service start."""

        def read(connection: Any) -> tuple[list[Any], list[Any], list[Any]]:
            return (
                connection.execute("SELECT record FROM paired_devices").fetchall(),
                connection.execute("SELECT record FROM device_tokens").fetchall(),
                connection.execute("SELECT record FROM pending_requests").fetchall(),
            )

        def fill(rows: tuple[list[Any], list[Any], list[Any]]) -> None:
            paired, tokens, pending = rows
            for (record,) in paired:
                device = PairedDevice.from_record(json.loads(record))
                self._paired[device.device_id] = device
            for (record,) in tokens:
                token = DeviceToken.from_record(json.loads(record))
                self._tokens[(token.device_id, token.role)] = token
            for (record,) in pending:
                request = PendingPairing.from_record(json.loads(record))
                self._pending[request.request_id] = request

        return self._db.run(read).addCallback(fill)

    def close(self) -> Deferred[None]:
        return self._db.close()

    def refresh(self, device_id: str) -> Deferred[None]:
        """Nothing to do in a single process: memory is written first, so it is never behind."""
        return succeed(None)

    # -- reads (memory only) -------------------------------------------------------------------

    def paired(self, device_id: str) -> PairedDevice | None:
        return self._paired.get(device_id)

    def all_paired(self) -> list[PairedDevice]:
        return sorted(self._paired.values(), key=lambda device: device.approved_at_ms)

    def token(self, device_id: str, role: str) -> DeviceToken | None:
        return self._tokens.get((device_id, role))

    def tokens_for(self, device_id: str) -> list[DeviceToken]:
        return [token for (owner, _), token in sorted(self._tokens.items()) if owner == device_id]

    def pending(self, request_id: str) -> PendingPairing | None:
        return self._pending.get(request_id)

    def pending_for_device(self, device_id: str) -> PendingPairing | None:
        for request in self._pending.values():
            if request.device_id == device_id:
                return request
        return None

    def all_pending(self) -> list[PendingPairing]:
        return sorted(self._pending.values(), key=lambda request: request.ts)

    # -- writes (memory now, disk through the worker) ----------------------------------------------

    def _written(self, d: Deferred[T], table: dict[Any, Any], key: Any, previous: Any) -> Deferred[T]:
        """On a failed write (a full disk), memory goes back to what the disk still holds.

        Unless something newer replaced or removed the entry meanwhile (a revoke after a
        written-behind last-used time): undoing then would bring back what was revoked.
        """
        written = table.get(key)

        def undo(failure: Failure) -> Failure:
            if table.get(key) is not written:
                return failure
            if previous is None:
                table.pop(key, None)
            else:
                table[key] = previous
            return failure

        return d.addErrback(undo)

    def put_paired(self, device: PairedDevice) -> Deferred[PairedDevice]:
        previous = self._paired.get(device.device_id)
        self._paired[device.device_id] = device
        record = json.dumps(device.to_record())
        d = self._db.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO paired_devices (device_id, record) VALUES (?, ?)",
                (device.device_id, record),
            )
        )
        return self._written(d, self._paired, device.device_id, previous).addCallback(lambda _: device)

    def remove_paired(self, device_id: str) -> Deferred[PairedDevice | None]:
        """Forget a device and every token it holds."""
        removed = self._paired.pop(device_id, None)
        for key in [key for key in self._tokens if key[0] == device_id]:
            del self._tokens[key]

        def delete(connection: Any) -> None:
            connection.execute("DELETE FROM paired_devices WHERE device_id = ?", (device_id,))
            connection.execute("DELETE FROM device_tokens WHERE device_id = ?", (device_id,))

        return self._db.run(delete).addCallback(lambda _: removed)

    def put_token(self, token: DeviceToken) -> Deferred[DeviceToken]:
        key = (token.device_id, token.role)
        previous = self._tokens.get(key)
        self._tokens[key] = token
        record = json.dumps(token.to_record())
        d = self._db.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO device_tokens (device_id, role, record) VALUES (?, ?, ?)",
                (token.device_id, token.role, record),
            )
        )
        return self._written(d, self._tokens, key, previous).addCallback(lambda _: token)

    def remove_token(self, device_id: str, role: str) -> Deferred[DeviceToken | None]:
        removed = self._tokens.pop((device_id, role), None)
        if removed is None:
            return succeed(None)
        return self._db.run(
            lambda c: c.execute("DELETE FROM device_tokens WHERE device_id = ? AND role = ?", (device_id, role))
        ).addCallback(lambda _: removed)

    def put_pending(self, request: PendingPairing) -> Deferred[PendingPairing]:
        previous = self._pending.get(request.request_id)
        self._pending[request.request_id] = request
        record = json.dumps(request.to_record())
        d = self._db.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO pending_requests (request_id, device_id, record) VALUES (?, ?, ?)",
                (request.request_id, request.device_id, record),
            )
        )
        return self._written(d, self._pending, request.request_id, previous).addCallback(lambda _: request)

    def remove_pending(self, request_ids: Iterable[str]) -> Deferred[list[str]]:
        ids = [request_id for request_id in request_ids if self._pending.pop(request_id, None) is not None]
        if not ids:
            return succeed([])
        return self._db.run(
            lambda c: c.executemany("DELETE FROM pending_requests WHERE request_id = ?", [(i,) for i in ids])
        ).addCallback(lambda _: ids)
