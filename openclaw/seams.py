"""The seams between the gateway and where its state lives (issue 16, point 2).

Everything above these interfaces (methods, the handshake, services) works the same whether the
parts behind them are the single-process ones (SQLite files, in-memory registries) or the cluster
ones in :mod:`openclaw.cluster` (PostgreSQL, Redis). Each class declares what it provides with
``@implementer``, and tests check both kinds with ``zope.interface.verify.verifyObject``.

:class:`openclaw.parts.GatewayParts` is how a composition root chooses which implementation of
each seam it gets.
"""
from __future__ import annotations

from zope.interface import Attribute, Interface


class IDeviceStore(Interface):
    """Paired devices, their per-role tokens and pending pairing requests.

    Reads are served from memory (the handshake never waits on a disk); writes return Deferreds
    that fire once the change is durable.
    """

    path = Attribute("where the store lives, for messages")

    def load():
        """Read everything once, at start; fires when done."""

    def close():
        """Release the storage."""

    def refresh(device_id):
        """Bring one device's rows up to date with shared storage before a handshake uses them."""

    def paired(device_id):
        """The PairedDevice, or None."""

    def all_paired():
        """Every paired device, oldest approval first."""

    def token(device_id, role):
        """The DeviceToken for a role, or None."""

    def tokens_for(device_id):
        """Every token a device holds."""

    def pending(request_id):
        """A pending pairing request, or None."""

    def pending_for_device(device_id):
        """The pending request a device has open, or None."""

    def all_pending():
        """Every pending request, oldest first."""

    def put_paired(device):
        """Store a paired device."""

    def remove_paired(device_id):
        """Forget a device and its tokens."""

    def put_token(token):
        """Store a device token."""

    def remove_token(device_id, role):
        """Revoke a token."""

    def put_pending(request):
        """Store a pending request."""

    def remove_pending(request_ids):
        """Drop pending requests."""


class INodeStore(Interface):
    """Paired nodes and pending node pairing requests (records in the reference's wire shape)."""

    path = Attribute("where the store lives, for messages")

    def load():
        """Read everything once, at start."""

    def close():
        """Release the storage."""

    def paired(node_id):
        """The paired record, or None."""

    def all_paired():
        """Every paired record."""

    def pending(request_id):
        """A pending request, or None."""

    def pending_for(node_id):
        """The pending request of a node, or None."""

    def all_pending():
        """Every pending request."""

    def put_paired(record):
        """Store a paired node."""

    def remove_paired(node_id):
        """Forget a node."""

    def put_pending(record):
        """Store a pending request."""

    def remove_pending(request_ids):
        """Drop pending requests."""


class ISessionStore(Interface):
    """Session rows and their transcripts; every method returns a Deferred."""

    path = Attribute("where the store lives, for messages")

    def load():
        """Open (and migrate) and prime the summary."""

    def close():
        """Release the storage."""

    def summary(now_ms):
        """Count and most recent keys, from memory."""

    def get(key):
        """The entry, or None."""

    def ensure(key, now_ms, defaults=None):
        """The entry, created when missing."""

    def patch(key, changes, now_ms, expect=None, create=True):
        """Apply field changes."""

    def reset(key, now_ms, reason="reset", expect=None):
        """A fresh entry with a new sessionId; the old transcript is archived."""

    def delete(key, now_ms, delete_transcript=True, expect=None):
        """Remove a session."""

    def compact(key, max_lines, now_ms):
        """Keep the last lines of a transcript."""

    def append(key, session_id, entries, entry_changes):
        """Append transcript lines and update the row in one transaction."""

    def history(session_id, limit, before_id=None):
        """The newest transcript lines."""

    def preview(keys, limit, max_chars):
        """Short previews of several sessions."""

    def list(query, include_previews=False):
        """A page of sessions, newest first, with the same search everywhere."""

    def find(*, key=None, session_id=None, label=None, agent_id=None, spawned_by=None, include_global=False, include_unknown=False, limit=11):
        """Keys matching criteria (``sessions.resolve``)."""


class IEventRelay(Interface):
    """The part of event fan-out that reaches connections held by other processes.

    The local registry delivers to its own connections (each with its own ``seq``) and then
    hands the encoded event here; a relay delivers it to the other instances, which deliver it
    to theirs with the same scope gating.
    """

    def relay(event, payload_json, drop_if_slow, topic):
        """Send one already encoded event to the other instances."""


class IPresence(Interface):
    """Who is online: this gateway, its clients, ``system-event`` entries (and, in a cluster,
    every other instance and its clients)."""

    version = Attribute("presence stateVersion")

    def bump():
        """A new stateVersion."""

    def entries():
        """Every entry, this gateway first."""

    def client_connected(key, conn_id, entry):
        """A client came online."""

    def client_disconnected(key, conn_id):
        """A client went away; True when an entry was removed."""

    def system_event(params):
        """An entry posted by ``system-event``."""

    def queued_system_events():
        """Recent ``system-event`` texts."""


class INodeRegistry(Interface):
    """Connected nodes and invoke routing: ``invoke`` reaches the node wherever it is connected."""

    def get(node_id):
        """The node (local or, in a cluster, remote), or None."""

    def all():
        """Every connected node."""

    def connected(client):
        """A node socket was admitted here."""

    def disconnected(client):
        """A node socket here went away."""

    def invoke(node, command, params, timeout_ms, idempotency_key, extra):
        """Fires with the node's result dict or fails with GatewayError."""

    def result(node_id, invoke_id, outcome):
        """A node's answer; False when nothing waited for it."""


class IAuthRateLimiter(Interface):
    """Failed-auth counting and lockouts."""

    def configure(*, exempt_loopback, max_attempts=None, window_ms=None, lockout_ms=None):
        """New limits."""

    def retry_after_ms(address, kind):
        """Milliseconds left on a lockout, or None."""

    def record_failure(address, kind):
        """Count a failure."""

    def record_success(address, kind):
        """Forget the failures of a key."""


class ISessionLeases(Interface):
    """Who may run a session's agent now: one process, or (cluster) one instance at a time."""

    def hold(session_key):
        """Fires when this process holds the session's lease (cancel to stop waiting)."""

    def release(session_key):
        """The session's run ended here: let the next one (here or elsewhere) run."""


class IIdempotencyCache(Interface):
    """Idempotency keys and the outcome of the first request that used each."""

    def get(key):
        """The stored value, or None."""

    def put(key, value):
        """Remember a value for the TTL."""

    def claim(key, fingerprint):
        """Take a key for this process before doing its request.

        Fires with None when this process may go ahead (in a single process: always; the local
        ``get`` already answered replays), or with the record of the process that took the key
        first (a dict: ``owner``, ``fp`` the fingerprint it was taken with, ``done`` and, once
        done, ``ok`` with ``result`` or ``error``, the error shape).
        """

    def complete(key, fingerprint, result=None, error=None):
        """The outcome of a request this process claimed, for replays elsewhere."""

    def abandon(key):
        """A request this process claimed did not start: free the key (a retry anywhere does it
        again) and fail, retryable, whoever waits for it."""

    def wait(key, record, timeout_s):
        """Fires with the finished record of a key another process holds (fails UNAVAILABLE,
        retryable, when that process dies or the wait times out)."""

