"""Exec approvals across a cluster: asked on one instance, seen and decided on any.

A request stays held by the instance where it was asked (its timer, its waiter, the binding the
``system.run`` gate checks all live there, as on one gateway). What the instances share, the way
presence and nodes are shared (a Redis hash per instance plus a notice on the control channel,
re-read on every (re)sync, dropped with a dead instance):

- ``approvers``: each instance's connected approval clients, with just what decides whether
  one may see a request (admin or not, its device, its connection). The asking instance counts
  them, so ``no-approval-route`` means no approval client on any live instance may see it.
- ``approvals``: each instance's pending requests. Peers show ``exec.approval.requested`` to
  their own approval clients (same scope gating), list the requests in ``exec.approval.list``,
  and route a decision made on them to the holder over the holder's instance channel (as
  ``node.invoke`` is routed); the holder applies it with the single-process checks and
  announces the end (``exec.approval.resolved``) to everyone.

A peer keeps an ended request readable for the same grace period as the holder, so resolving
twice or after expiry answers as on one gateway. When the holder dies, its requests disappear
from the peers' lists and peers' ``waitDecision`` calls on them fail with UNAVAILABLE.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ..approvals.delivery import shows_exec_approvals
from ..approvals.records import RESOLVED_GRACE_MS, ApprovalRecord, not_found
from ..approvals.service import ExecApprovals
from ..security.scopes import ADMIN
from ..state.clients import ClientRegistry, ConnectedClient
from .bus import approval_unavailable

MAX_REMOTE_APPROVALS = 4096  # pending requests of other instances held here
MAX_REMOTE_ENDED = 1024  # ended ones kept readable for the grace period

_SHARED_FIELDS = (
    "id", "request", "created_at_ms", "expires_at_ms",
    "requested_by_conn_id", "requested_by_device_id", "requested_by_client_id",
)
_ENDED_FIELDS = ("decision", "resolved_at_ms", "resolved_by", "terminal_reason")


def record_json(record: ApprovalRecord, ended: bool = False) -> dict[str, Any]:
    fields = _SHARED_FIELDS + _ENDED_FIELDS if ended else _SHARED_FIELDS
    return {name: getattr(record, name) for name in fields}


def record_from_json(data: Mapping[str, Any]) -> ApprovalRecord:
    return ApprovalRecord(
        id=str(data["id"]),
        request=dict(data["request"]),
        created_at_ms=int(data["created_at_ms"]),
        expires_at_ms=int(data["expires_at_ms"]),
        requested_by_conn_id=data.get("requested_by_conn_id"),
        requested_by_device_id=data.get("requested_by_device_id"),
        requested_by_client_id=data.get("requested_by_client_id"),
    )


def _may_see(record: ApprovalRecord, approver: Mapping[str, Any]) -> bool:
    """:func:`openclaw.approvals.delivery.may_see` for an approval client on another instance."""
    if approver.get("admin"):
        return True
    if record.requested_by_device_id:
        return bool(record.requested_by_device_id == approver.get("deviceId"))
    if record.requested_by_conn_id:
        return False  # a connection of the asking instance, never one of another
    return not record.requested_by_client_id


class ClusterExecApprovals(ExecApprovals):
    def __init__(self, clock: IReactorTime, clients: ClientRegistry, bus: Any):
        super().__init__(clock, clients)
        self._clock = clock
        self._bus = bus
        bus.approvals = self
        self._shared: set[str] = set()  # ids of this instance's requests that peers know
        self._approvers: dict[str, dict[str, dict[str, Any]]] = {}  # peer -> conn id -> who
        self._remote: dict[str, tuple[str, ApprovalRecord]] = {}  # id -> (holder, pending record)
        self._announced: set[str] = set()  # remote ids already shown to this instance's clients
        self._remote_ended: dict[str, tuple[ApprovalRecord, IDelayedCall]] = {}

    # -- this instance's approval clients ------------------------------------------------------

    def client_joined(self, client: ConnectedClient) -> None:
        if shows_exec_approvals(client):
            self._bus.approver_changed(client.conn_id, _approver(client))

    def client_gone(self, client: ConnectedClient) -> None:
        if shows_exec_approvals(client):
            self._bus.approver_changed(client.conn_id, None)

    def local_entries(self) -> dict[str, dict[str, Any]]:
        """What this instance shares, for the bus to write again (Redis may have restarted)."""
        approvers = {client.conn_id: _approver(client) for client in self._clients if shows_exec_approvals(client)}
        approvals = {r.id: record_json(r) for r in self.records.pending() if r.id in self._shared}
        return {"approvals": approvals, "approvers": approvers}

    # -- requests held here ------------------------------------------------------------------

    def _announce_requested(self, record: ApprovalRecord, event: dict[str, Any], requester: ConnectedClient) -> int:
        here = super()._announce_requested(record, event, requester)
        elsewhere = sum(1 for peer in self._approvers.values() for who in peer.values() if _may_see(record, who))
        if here + elsewhere:
            self._shared.add(record.id)
            self._bus.approval_changed(record.id, record_json(record))
        return here + elsewhere

    def _announce_resolved(self, record: ApprovalRecord) -> None:
        super()._announce_resolved(record)
        if record.id in self._shared:
            self._shared.discard(record.id)
            self._bus.approval_changed(record.id, None, record_json(record, ended=True))

    def resolve_routed(self, approval_id: str, decision: str, who: str | None) -> Any:
        """A decision made on another instance (which checked the decider may see it)."""
        record = self.records.get(approval_id)
        if record is None:
            raise not_found()
        return self.decide_checked(record, decision, who)

    # -- requests held elsewhere ---------------------------------------------------------------

    def _lookup(self, approval_id: str) -> ApprovalRecord | None:
        local = self.records.get(approval_id)
        if local is not None:
            return local
        remote = self._remote.get(approval_id)
        if remote is not None:
            return remote[1]
        ended = self._remote_ended.get(approval_id)
        return ended[0] if ended is not None else None

    def _pending_records(self) -> list[ApprovalRecord]:
        now = self.records.now_ms()
        remote = [record for _, record in self._remote.values() if record.expires_at_ms > now]
        return sorted([*self.records.pending(), *remote], key=lambda r: r.created_at_ms)

    def _decide(self, record: ApprovalRecord, decision: str, who: str | None) -> Any:
        remote = self._remote.get(record.id)
        if remote is None or remote[1] is not record:
            return super()._decide(record, decision, who)
        return self._bus.route_approval_resolve(remote[0], record.id, decision, who)

    def approval_notice(self, peer: str, approval_id: str, shared: Mapping[str, Any] | None, ended: Mapping[str, Any] | None) -> None:
        if shared is not None:
            self._add_remote(peer, shared, announce=True)
        elif ended is not None:
            self._remote_end(approval_id, ended)

    def _add_remote(self, peer: str, shared: Mapping[str, Any], announce: bool) -> None:
        approval_id = str(shared["id"])
        if approval_id in self._remote_ended or self.records.get(approval_id) is not None:
            return  # ended already (a read that raced the end), or ours
        if approval_id not in self._remote:
            if len(self._remote) >= MAX_REMOTE_APPROVALS:
                return  # bounded: the holder still answers its own clients
            self._remote[approval_id] = (peer, record_from_json(shared))
        if announce and approval_id not in self._announced:
            self._announced.add(approval_id)
            record = self._remote[approval_id][1]
            event = {
                "approvalKind": "exec", "id": record.id, "request": record.request,
                "createdAtMs": record.created_at_ms, "expiresAtMs": record.expires_at_ms,
            }
            self._clients.broadcast("exec.approval.requested", event, drop_if_slow=True, only=self._reviewers(record, None))

    def _remote_end(self, approval_id: str, ended: Mapping[str, Any]) -> None:
        """The holder announced the end: show it, keep it readable, answer the waiters here."""
        if approval_id in self._remote_ended:
            return
        _, record = self._remote.pop(approval_id, (None, None))
        self._announced.discard(approval_id)
        if record is None:
            record = record_from_json(ended)
        for name in ("decision", "resolved_at_ms", "resolved_by", "terminal_reason"):
            setattr(record, name, ended.get(name))
        while len(self._remote_ended) >= MAX_REMOTE_ENDED:
            oldest = next(iter(self._remote_ended))
            self._forget_ended(oldest)
        timer = self._clock.callLater(RESOLVED_GRACE_MS / 1000.0, self._forget_ended, approval_id)
        self._remote_ended[approval_id] = (record, timer)
        self._remember(record)
        self._announce_resolved(record)  # to this instance's clients (the id is not ours to share)
        waiters, record.waiters = record.waiters, []
        for waiter in waiters:
            waiter.callback(record)

    def _forget_ended(self, approval_id: str) -> None:
        entry = self._remote_ended.pop(approval_id, None)
        if entry is not None and entry[1].active():
            entry[1].cancel()

    # -- peers coming and going ------------------------------------------------------------------

    def approver_notice(self, peer: str, conn_id: str, who: Mapping[str, Any] | None) -> None:
        approvers = self._approvers.setdefault(peer, {})
        if who is None:
            approvers.pop(conn_id, None)
        else:
            approvers[conn_id] = dict(who)

    def peer_read(self, peer: str, approvals: Mapping[str, Any], approvers: Mapping[str, Any]) -> None:
        """A (re)sync read a peer's hashes: its approval clients, and requests not known yet.

        A request missing from the read is not dropped here: its end notice does that (a read
        can race it); one whose notice was lost drops out of the list once it has expired.
        """
        self._approvers[peer] = {conn_id: dict(who) for conn_id, who in approvers.items()}
        for shared in approvals.values():
            self._add_remote(peer, shared, announce=False)
        now = self.records.now_ms()
        for approval_id, (holder, record) in list(self._remote.items()):
            if holder == peer and approval_id not in approvals and record.expires_at_ms <= now:
                self._drop_remote(approval_id, "the approval expired")

    def peer_gone(self, peer: str) -> None:
        """A dead (or departed) instance: its approval clients and its requests are gone."""
        self._approvers.pop(peer, None)
        for approval_id, (holder, _) in list(self._remote.items()):
            if holder == peer:
                self._drop_remote(approval_id, f"gateway instance {peer} holding the approval is gone")

    def _drop_remote(self, approval_id: str, why: str) -> None:
        _, record = self._remote.pop(approval_id)
        self._announced.discard(approval_id)
        waiters, record.waiters = record.waiters, []
        for waiter in waiters:
            waiter.errback(approval_unavailable(why))


def _approver(client: ConnectedClient) -> dict[str, Any]:
    return {"admin": ADMIN in client.scopes, "deviceId": client.device_id, "connId": client.conn_id}
