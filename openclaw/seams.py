"""The seams between the gateway and where its state lives (issue 16, point 2).

Everything above these interfaces (methods, the handshake, services) works the same whether the
parts behind them are the single-process ones (SQLite files, in-memory registries) or the cluster
ones in :mod:`openclaw.cluster` (PostgreSQL, Redis). Each class declares what it provides with
``@implementer``, and tests check both kinds with ``zope.interface.verify.verifyObject``.

:class:`openclaw.parts.GatewayParts` is how a composition root chooses which implementation of
each seam it gets.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


class IDeviceStore(Interface):
    """Paired devices, their per-role tokens and pending pairing requests.

    Reads are served from memory (the handshake never waits on a disk); writes return Deferreds
    that fire once the change is durable.
    """

    path = Attribute("where the store lives, for messages")

    def load() -> Deferred[None]:
        """Read everything once, at start; fires when done."""

    def close() -> Deferred[None]:
        """Release the storage."""

    def refresh(device_id: str) -> Deferred[None]:
        """Bring one device's rows up to date with shared storage before a handshake uses them."""

    def paired(device_id: str) -> Any:
        """The PairedDevice, or None."""

    def all_paired() -> list[Any]:
        """Every paired device, oldest approval first."""

    def token(device_id: str, role: str) -> Any:
        """The DeviceToken for a role, or None."""

    def tokens_for(device_id: str) -> list[Any]:
        """Every token a device holds."""

    def pending(request_id: str) -> Any:
        """A pending pairing request, or None."""

    def pending_for_device(device_id: str) -> Any:
        """The pending request a device has open, or None."""

    def all_pending() -> list[Any]:
        """Every pending request, oldest first."""

    def put_paired(device: Any) -> Deferred[Any]:
        # Fires with the stored PairedDevice (the store module owns the record classes).
        """Store a paired device."""

    def remove_paired(device_id: str) -> Deferred[Any]:
        """Forget a device and its tokens."""

    def put_token(token: Any) -> Deferred[Any]:
        """Store a device token."""

    def remove_token(device_id: str, role: str) -> Deferred[Any]:
        """Revoke a token."""

    def put_pending(request: Any) -> Deferred[Any]:
        """Store a pending request."""

    def remove_pending(request_ids: Iterable[str]) -> Deferred[list[str]]:
        """Drop pending requests."""


class INodeStore(Interface):
    """Paired nodes and pending node pairing requests (records in the reference's wire shape)."""

    path = Attribute("where the store lives, for messages")

    def load() -> Deferred[None]:
        """Read everything once, at start."""

    def close() -> Deferred[None]:
        """Release the storage."""

    def paired(node_id: str) -> dict[str, Any] | None:
        """The paired record, or None."""

    def all_paired() -> list[dict[str, Any]]:
        """Every paired record."""

    def pending(request_id: str) -> dict[str, Any] | None:
        """A pending request, or None."""

    def pending_for(node_id: str) -> dict[str, Any] | None:
        """The pending request of a node, or None."""

    def all_pending() -> list[dict[str, Any]]:
        """Every pending request."""

    def put_paired(record: dict[str, Any]) -> Deferred[Any]:
        """Store a paired node."""

    def remove_paired(node_id: str) -> Deferred[Any]:
        """Forget a node."""

    def put_pending(record: dict[str, Any]) -> Deferred[Any]:
        """Store a pending request."""

    def remove_pending(request_ids: Iterable[str]) -> Deferred[Any]:
        """Drop pending requests."""


class ISessionStore(Interface):
    """Session rows and their transcripts; every method returns a Deferred."""

    path = Attribute("where the store lives, for messages")
    summary_version = Attribute("bumped whenever what summary() returns (but its ages) changes")

    def load() -> Deferred[None]:
        """Open (and migrate) and prime the summary."""

    def close() -> Deferred[None]:
        """Release the storage."""

    def summary(now_ms: int) -> Any:
        """Count and most recent keys, from memory."""

    def get(key: str) -> Deferred[dict[str, Any] | None]:
        """The entry, or None."""

    def ensure(key: str, now_ms: int, defaults: Mapping[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """The entry, created when missing."""

    def patch(
        key: str, changes: Mapping[str, Any], now_ms: int, expect: Mapping[str, Any] | None = None, create: bool = True
    ) -> Deferred[Any]:
        """Apply field changes."""

    def reset(key: str, now_ms: int, reason: str = "reset", expect: Mapping[str, Any] | None = None) -> Deferred[Any]:
        """A fresh entry with a new sessionId; the old transcript is archived."""

    def delete(
        key: str, now_ms: int, delete_transcript: bool = True, expect: Mapping[str, Any] | None = None
    ) -> Deferred[Any]:
        """Remove a session."""

    def compact(key: str, max_lines: int, now_ms: int) -> Deferred[Any]:
        """Keep the last lines of a transcript."""

    def append(
        key: str, session_id: str, entries: Sequence[Mapping[str, Any]], entry_changes: Mapping[str, Any]
    ) -> Deferred[Any]:
        """Append transcript lines and update the row in one transaction."""

    def history(session_id: str, limit: int, before_id: int | None = None) -> Deferred[Any]:
        """The newest transcript lines."""

    def preview(keys: Sequence[str], limit: int, max_chars: int) -> Deferred[Any]:
        """Short previews of several sessions."""

    def list(query: Any, include_previews: bool = False) -> Deferred[Any]:
        """A page of sessions, newest first, with the same search everywhere."""

    def find(
        *,
        key: str | None = None,
        session_id: str | None = None,
        label: str | None = None,
        agent_id: str | None = None,
        spawned_by: str | None = None,
        include_global: bool = False,
        include_unknown: bool = False,
        limit: int = 11,
    ) -> Deferred[Any]:
        """Keys matching criteria (``sessions.resolve``)."""

    def usage_cost(
        now_ms: int, days: int, prices: Mapping[tuple[str, str], Mapping[str, Any]], agent_id: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """The ``usage.cost`` payload, from the usage ledger."""

    def usage_report(
        now_ms: int, start: Any, end: Any, prices: Mapping[tuple[str, str], Mapping[str, Any]], agent_id: str | None, limit: int
    ) -> Deferred[dict[str, Any]]:
        """The ``sessions.usage`` payload for a UTC date range."""


class IEventRelay(Interface):
    """The part of event fan-out that reaches connections held by other processes.

    The local registry delivers to its own connections (each with its own ``seq``) and then
    hands the encoded event here; a relay delivers it to the other instances, which deliver it
    to theirs with the same scope gating.
    """

    def relay(event: str, payload_json: bytes, drop_if_slow: bool, topic: Any) -> None:
        """Send one already encoded event to the other instances."""


class IPresence(Interface):
    """Who is online: this gateway, its clients, ``system-event`` entries (and, in a cluster,
    every other instance and its clients)."""

    version = Attribute("presence stateVersion")

    def bump() -> int:
        """A new stateVersion."""

    def entries() -> list[dict[str, Any]]:
        """Every entry, this gateway first."""

    def client_connected(key: str, conn_id: str, entry: dict[str, Any]) -> None:
        """A client came online."""

    def client_disconnected(key: str, conn_id: str) -> bool:
        """A client went away; True when an entry was removed."""

    def system_event(params: dict[str, Any]) -> None:
        """An entry posted by ``system-event``."""

    def queued_system_events() -> list[str]:
        """Recent ``system-event`` texts."""

    def queue_system_text(text: str) -> None:
        """Queue a text for the next heartbeat without a presence entry (``wake``)."""

    def take_queued_system_events() -> list[str]:
        """The queued texts, handed to a heartbeat run once (the queue is emptied)."""


class INodeRegistry(Interface):
    """Connected nodes and invoke routing: ``invoke`` reaches the node wherever it is connected."""

    def get(node_id: str) -> Any:
        """The node (local or, in a cluster, remote), or None."""

    def all() -> list[Any]:
        """Every connected node."""

    def connected(client: Any) -> Any:
        """A node socket was admitted here."""

    def disconnected(client: Any) -> None:
        """A node socket here went away."""

    def invoke(
        node: Any, command: str, params: Any, timeout_ms: int, idempotency_key: str, extra: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        """Fires with the node's result dict or fails with GatewayError."""

    def result(node_id: str, invoke_id: str, outcome: Mapping[str, Any]) -> bool:
        """A node's answer; False when nothing waited for it."""


class IAuthRateLimiter(Interface):
    """Failed-auth counting and lockouts."""

    def configure(
        *, exempt_loopback: bool, max_attempts: int | None = None, window_ms: int | None = None, lockout_ms: int | None = None
    ) -> None:
        """New limits."""

    def retry_after_ms(address: str | None, kind: str) -> int | None:
        """Milliseconds left on a lockout, or None."""

    def record_failure(address: str | None, kind: str) -> None:
        """Count a failure."""

    def record_success(address: str | None, kind: str) -> None:
        """Forget the failures of a key."""


class ISessionLeases(Interface):
    """Who may run a session's agent now: one process, or (cluster) one instance at a time."""

    def hold(session_key: str) -> Deferred[None]:
        """Fires when this process holds the session's lease (cancel to stop waiting)."""

    def release(session_key: str) -> None:
        """The session's run ended here: let the next one (here or elsewhere) run."""


class IIdempotencyCache(Interface):
    """Idempotency keys and the outcome of the first request that used each."""

    def get(key: str) -> Any:
        """The stored value, or None."""

    def put(key: str, value: Any) -> None:
        """Remember a value for the TTL."""

    def claim(key: str, fingerprint: str) -> Deferred[dict[str, Any] | None]:
        """Take a key for this process before doing its request.

        Fires with None when this process may go ahead (in a single process: always; the local
        ``get`` already answered replays), or with the record of the process that took the key
        first (a dict: ``owner``, ``fp`` the fingerprint it was taken with, ``done`` and, once
        done, ``ok`` with ``result`` or ``error``, the error shape).
        """

    def complete(key: str, fingerprint: str, result: Any = None, error: Any = None) -> None:
        """The outcome of a request this process claimed, for replays elsewhere."""

    def abandon(key: str) -> None:
        """A request this process claimed did not start: free the key (a retry anywhere does it
        again) and fail, retryable, whoever waits for it."""

    def wait(key: str, record: dict[str, Any], timeout_s: float) -> Deferred[dict[str, Any]]:
        """Fires with the finished record of a key another process holds (fails UNAVAILABLE,
        retryable, when that process dies or the wait times out)."""

