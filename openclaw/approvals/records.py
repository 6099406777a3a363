"""Exec approval records: held in memory, bounded, expiring, tied to the client that asked.

An approval is asked for (``exec.approval.request``), shown to approval clients, and decided
once (``allow-once``, ``allow-always``, ``deny``) or left to expire. The record is what lets
``node.invoke system.run`` carry ``approved: true``: the gateway forwards that flag only when a
record with that id exists, was decided by an operator, is bound to that node and that device,
and (for ``allow-once``) has not been used yet. Like the reference, pending approvals do not
survive a restart: a lost approval is simply asked for again.

Decided records stay readable for a short grace period (``waitDecision`` after the fact, the
``system.run`` that follows the decision); then they are dropped. A request that ended at once
because no approval client could see it (``no-approval-route``) is a denial, not an expiry, and
stays readable until its own expiry time, as in the reference: a later ``approvals resolve`` says
it was already denied, and a ``system.run`` naming it is refused for what it is (another
client's approval, no approval) rather than as an unknown id. The number of records is
bounded; when every slot holds a pending request, new requests are refused rather than evicting
a request somebody is looking at.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable, Iterator

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request

DECISIONS = ("allow-once", "allow-always", "deny")
DEFAULT_TIMEOUT_MS = 120_000
MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000
# How long a decided (or expired) record stays readable.
RESOLVED_GRACE_MS = 15_000
MAX_RECORDS = 512

# Why a record reached its end (``terminalReason`` in ``waitDecision``).
BY_USER = "user"
BY_TIMEOUT = "timeout"
NO_ROUTE = "no-approval-route"


@attrs.define(eq=False)
class ApprovalRecord:
    id: str
    request: dict[str, Any]
    created_at_ms: int
    expires_at_ms: int
    requested_by_conn_id: str | None = None
    requested_by_device_id: str | None = None
    requested_by_client_id: str | None = None
    decision: str | None = None
    resolved_at_ms: int | None = None
    resolved_by: str | None = None
    terminal_reason: str | None = None
    consumed: bool = False
    timer: IDelayedCall | None = attrs.field(default=None, repr=False)
    waiters: list[Deferred[ApprovalRecord]] = attrs.field(factory=list, repr=False)

    @property
    def pending(self) -> bool:
        return self.terminal_reason is None

    def wait_response(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "decision": self.decision,
            "createdAtMs": self.created_at_ms,
            "expiresAtMs": self.expires_at_ms,
            "terminalReason": self.terminal_reason,
        }


def not_found() -> GatewayError:
    return invalid_request(
        "unknown or expired approval id",
        {
            "reason": "APPROVAL_NOT_FOUND",
            "remediation": "Re-request the action; pending approvals are cleared after expiry or restart.",
        },
    )


class ApprovalRecords:
    """The records and their timers; what callers see happens through ``on_terminal``."""

    def __init__(
        self,
        clock: IReactorTime,
        on_terminal: Callable[[ApprovalRecord], None] = lambda record: None,
        *,
        max_records: int = MAX_RECORDS,
        grace_ms: int = RESOLVED_GRACE_MS,
    ):
        self._clock = clock
        self._on_terminal = on_terminal
        self._max = max_records
        self._grace_ms = grace_ms
        self._records: dict[str, ApprovalRecord] = {}

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def __iter__(self) -> Iterator[ApprovalRecord]:
        return iter(list(self._records.values()))

    def pending(self) -> list[ApprovalRecord]:
        return sorted((r for r in self._records.values() if r.pending), key=lambda r: r.created_at_ms)

    def get(self, approval_id: str) -> ApprovalRecord | None:
        return self._records.get(approval_id)

    def register(self, record: ApprovalRecord) -> ApprovalRecord:
        """Hold ``record`` until it is decided or its ``expires_at_ms`` passes."""
        if record.id in self._records:
            raise invalid_request("approval id already in use", {"reason": "APPROVAL_ID_IN_USE"})
        if len(self._records) >= self._max and not self._evict_one_decided():
            raise GatewayError(UNAVAILABLE, "too many pending exec approvals", {"code": "APPROVALS_FULL"}, retryable=True)
        self._records[record.id] = record
        delay_s = max(0, record.expires_at_ms - self.now_ms()) / 1000.0
        record.timer = self._clock.callLater(delay_s, self._expired, record.id)
        return record

    def _evict_one_decided(self) -> bool:
        decided = [r for r in self._records.values() if not r.pending]
        if not decided:
            return False
        self._drop(min(decided, key=lambda r: r.resolved_at_ms or 0).id)
        return True

    def resolve(self, record: ApprovalRecord, decision: str, resolved_by: str | None) -> None:
        """An operator decided; fires every waiter."""
        self._finish(record, decision, BY_USER, resolved_by)

    def expire(self, record: ApprovalRecord, reason: str) -> None:
        self._finish(record, None, reason, None)

    def _expired(self, approval_id: str) -> None:
        record = self._records.get(approval_id)
        if record is not None and record.pending:
            record.timer = None
            self._finish(record, None, BY_TIMEOUT, None)

    def _finish(self, record: ApprovalRecord, decision: str | None, reason: str, resolved_by: str | None) -> None:
        if not record.pending:
            return
        record.decision, record.terminal_reason, record.resolved_by = decision, reason, resolved_by
        record.resolved_at_ms = self.now_ms()
        if record.timer is not None and record.timer.active():
            record.timer.cancel()
        keep_ms = max(self._grace_ms, record.expires_at_ms - record.resolved_at_ms) if reason == NO_ROUTE else self._grace_ms
        record.timer = self._clock.callLater(keep_ms / 1000.0, self._drop, record.id)
        waiters, record.waiters = record.waiters, []
        self._on_terminal(record)
        for waiter in waiters:
            waiter.callback(record)

    def _drop(self, approval_id: str) -> None:
        record = self._records.pop(approval_id, None)
        if record is not None and record.timer is not None and record.timer.active():
            record.timer.cancel()

    def wait(self, record: ApprovalRecord) -> Deferred[ApprovalRecord]:
        """Fires with the record once it is decided or expired."""
        if not record.pending:
            return succeed(record)

        def forget(cancelled: Deferred[ApprovalRecord]) -> None:
            if cancelled in record.waiters:
                record.waiters.remove(cancelled)

        d: Deferred[ApprovalRecord] = Deferred(forget)
        record.waiters.append(d)
        return d

    def consume_allow_once(self, record: ApprovalRecord) -> bool:
        """An ``allow-once`` decision lets exactly one run through."""
        if record.decision != "allow-once" or record.consumed:
            return False
        record.consumed = True
        return True

    def clear(self) -> None:
        """Stop every timer (gateway shutdown); waiters hear nothing more."""
        for record in list(self._records.values()):
            self._drop(record.id)
