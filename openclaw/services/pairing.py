"""Device pairing: who is approved, pending requests, silent local approval, and device tokens.

The handshake asks :meth:`DevicePairingService.ensure_access` whether a verified device may have
the role and scopes it asked for; an unknown device (or one asking for more) becomes a pending
request that an operator with ``operator.pairing`` approves or rejects. Local connections are
approved silently, as the reference does. Pending requests expire after five minutes.
"""
from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Generator, Iterable

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..protocol.constants import CLOSE_INVALIDATED, CLOSE_POLICY_VIOLATION, PAIRING_PENDING_TTL_MS
from ..protocol.errors import NOT_PAIRED, GatewayError, invalid_request
from ..security.device_identity import VerifiedDevice, normalise_metadata
from ..security.rate_limit import reported_client_ip
from ..security.scopes import ADMIN, first_missing_scope, scopes_cover
from ..stores.devices import DeviceStore, DeviceToken, PairedDevice, PendingPairing, new_device_token
from ..stores.sqlite import refuse_to_start_without

if TYPE_CHECKING:
    from ..state.clients import ClientRegistry

PRUNE_INTERVAL_S = 30.0
LAST_SEEN_WRITE_INTERVAL_MS = 60_000
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

REASON_MESSAGES = {
    "not-paired": "pairing required: device is not approved yet",
    "role-upgrade": "pairing required: device is asking for a higher role than currently approved",
    "scope-upgrade": "pairing required: device is asking for more scopes than currently approved",
    "metadata-upgrade": "pairing required: device identity changed and must be re-approved",
}
# Browser clients that pair silently on loopback even though they send an Origin header.
BROWSER_UI_CLIENT_IDS = frozenset({"openclaw-control-ui", "webchat-ui", "webchat"})
REMEDIATION_HINT = "Approve this device from an operator client: openclaw devices approve <requestId>"


@attrs.frozen
class PairingRequestContext:
    """What the handshake knows about the connecting device besides its key."""

    role: str
    scopes: tuple[str, ...]
    client: dict[str, Any]
    remote_ip: str | None
    is_local: bool
    has_origin: bool
    auth_method: str


class DevicePairingService(Service):
    _log = Logger()

    def __init__(
        self,
        store: DeviceStore,
        clock: IReactorTime,
        clients: ClientRegistry,
        *,
        auto_approve_local: Callable[[], bool] = lambda: True,
        pending_ttl_ms: int = PAIRING_PENDING_TTL_MS,
    ):
        self.store = store
        self._clock = clock
        self._clients = clients
        self._auto_approve_local = auto_approve_local
        self._pending_ttl_ms = pending_ttl_ms
        self._pruner = LoopingCall(self._prune_safely)
        self._pruner.clock = clock
        self.loaded = False

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def startService(self) -> Deferred[None]:
        super().startService()
        d = self.store.load()
        d.addCallback(self._loaded)
        d.addErrback(refuse_to_start_without("device store", self.store.path))
        return d

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._pruner.running:
            self._pruner.stop()
        return self.store.close()

    def _loaded(self, _: object) -> None:
        self.loaded = True
        self._pruner.start(PRUNE_INTERVAL_S, now=True)

    # -- expiry ------------------------------------------------------------------------------

    def _prune_safely(self) -> Deferred[list[str]] | None:
        try:
            return self.prune_expired()
        except Exception:
            self._log.failure("pruning pending pairing requests failed")
            return None

    def prune_expired(self) -> Deferred[list[str]]:
        cutoff = self._now_ms() - self._pending_ttl_ms
        expired = [request for request in self.store.all_pending() if request.last_activity_ms < cutoff]
        d = self.store.remove_pending([request.request_id for request in expired])

        def announce(result: list[str]) -> list[str]:
            # Approval dialogs open on other operators' screens close when their request lapses.
            for request in expired:
                self._resolved(request, "rejected", reason="expired")
            return result

        return d.addCallback(announce)

    def list_pending(self) -> list[PendingPairing]:
        cutoff = self._now_ms() - self._pending_ttl_ms
        return [request for request in self.store.all_pending() if request.last_activity_ms >= cutoff]

    # -- the handshake's question ------------------------------------------------------------

    def upgrade_reason(self, device: VerifiedDevice, context: PairingRequestContext) -> str | None:
        paired = self.store.paired(device.device_id)
        if paired is None or paired.public_key != device.public_key:
            return "not-paired"
        if context.role not in paired.roles:
            return "role-upgrade"
        if context.scopes and not scopes_cover(context.scopes, paired.scopes):
            return "scope-upgrade"
        for pinned, presented in (
            (paired.platform, context.client.get("platform")),
            (paired.device_family, context.client.get("deviceFamily")),
        ):
            if pinned and presented and normalise_metadata(pinned) != normalise_metadata(presented):
                return "metadata-upgrade"
        return None

    def _may_approve_silently(self, reason: str, context: PairingRequestContext, paired: PairedDevice | None) -> bool:
        if not context.is_local or not self._auto_approve_local():
            return False
        if context.has_origin and context.client.get("id") not in BROWSER_UI_CLIENT_IDS:
            # A page from some other site may script a loopback WebSocket; only the gateway's own
            # Control UI / webchat (whose origin the handshake already checked) pairs silently.
            return False
        if paired is not None and context.role != "operator" and reason == "role-upgrade":
            return False
        if reason == "scope-upgrade":
            return context.auth_method in ("none", "token", "password")
        if reason == "metadata-upgrade":
            return context.auth_method in ("token", "password")
        return True

    @inlineCallbacks
    def ensure_access(self, device: VerifiedDevice, context: PairingRequestContext) -> Generator[Deferred[Any], Any, PairedDevice]:
        """Fire with the paired record when the device may connect; fail with ``NOT_PAIRED`` otherwise."""
        reason = self.upgrade_reason(device, context)
        paired = self.store.paired(device.device_id)
        if reason is None:
            assert paired is not None  # upgrade_reason says "not-paired" for an unknown device
            self._seen(paired)
            return paired
        request, created = yield self._open_request(device, context, reason, paired)
        if self._may_approve_silently(reason, context, paired):
            approved: PairedDevice = yield self._approve(request, silent=True)
            return approved
        if created:
            self._clients.broadcast("device.pair.requested", request.to_wire())
        raise self._pairing_required(request, paired)

    def _seen(self, paired: PairedDevice) -> None:
        """Record the connect; written at most once a minute per device, without waiting on it."""
        now = self._now_ms()
        previous = paired.last_seen_at_ms or 0
        paired.last_seen_at_ms = now
        paired.last_seen_reason = "connect"
        if now - previous >= LAST_SEEN_WRITE_INTERVAL_MS:
            self.store.put_paired(paired).addErrback(
                lambda failure: self._log.failure("could not record last-seen time", failure)
            )

    def _log_last_used_failure(self, failure: Failure) -> None:
        self._log.failure("could not record a device token's last-used time", failure)

    def _pairing_required(self, request: PendingPairing, paired: PairedDevice | None) -> GatewayError:
        message = REASON_MESSAGES[request.reason]
        details: dict[str, Any] = {
            "code": "PAIRING_REQUIRED",
            "reason": request.reason,
            "requestId": request.request_id,
            "remediationHint": REMEDIATION_HINT,
            "deviceId": request.device_id,
            "requestedRole": request.role,
            "requestedScopes": list(request.scopes),
        }
        if paired is not None:
            details["approvedRoles"] = list(paired.roles)
            details["approvedScopes"] = list(paired.scopes)
        details.update({"recommendedNextStep": "wait_then_retry", "retryable": True, "pauseReconnect": False})
        close_reason = message
        if REQUEST_ID_PATTERN.match(request.request_id):
            close_reason = f"{message} (requestId: {request.request_id})"
        return GatewayError(NOT_PAIRED, message, details, close_code=CLOSE_POLICY_VIOLATION, close_reason=close_reason)

    @inlineCallbacks
    def _open_request(
        self, device: VerifiedDevice, context: PairingRequestContext, reason: str, paired: PairedDevice | None
    ) -> Generator[Deferred[Any], Any, tuple[PendingPairing, bool]]:
        now = self._now_ms()
        existing = self.store.pending_for_device(device.device_id)
        if (
            existing is not None
            and existing.public_key == device.public_key
            and existing.role == context.role
            and list(existing.scopes) == list(context.scopes)
            and existing.last_activity_ms >= now - self._pending_ttl_ms
        ):
            existing.refreshed_at_ms = now
            yield self.store.put_pending(existing)
            return (existing, False)
        if existing is not None:
            yield self.store.remove_pending([existing.request_id])
            self._resolved(existing, "rejected")
        client = context.client
        request = PendingPairing(
            request_id=str(uuid.uuid4()),
            device_id=device.device_id,
            public_key=device.public_key,
            role=context.role,
            roles=sorted(set(paired.roles if paired else ()) | {context.role}),
            scopes=list(context.scopes),
            ts=now,
            reason=reason,
            display_name=client.get("displayName"),
            platform=client.get("platform"),
            device_family=client.get("deviceFamily"),
            client_id=client.get("id"),
            client_mode=client.get("mode"),
            remote_ip=reported_client_ip(context.remote_ip),
            silent=self._may_approve_silently(reason, context, paired),
            is_repair=paired is not None,
        )
        yield self.store.put_pending(request)
        return (request, True)

    def _resolved(self, request: PendingPairing, decision: str, reason: str | None = None) -> None:
        payload = {"requestId": request.request_id, "deviceId": request.device_id, "decision": decision, "ts": self._now_ms()}
        if reason is not None:
            payload["reason"] = reason
        self._clients.broadcast("device.pair.resolved", payload)

    @inlineCallbacks
    def _approve(self, request: PendingPairing, *, silent: bool = False) -> Generator[Deferred[Any], Any, PairedDevice]:
        now = self._now_ms()
        previous = self.store.paired(request.device_id)
        # The same key re-pairing keeps what it was granted; a new key starts afresh.
        kept = previous if previous is not None and previous.public_key == request.public_key else None
        device = PairedDevice(
            device_id=request.device_id,
            public_key=request.public_key,
            roles=sorted(set(kept.roles if kept is not None else ()) | {request.role}),
            scopes=_merge(kept.scopes if kept is not None else [], request.scopes),
            created_at_ms=kept.created_at_ms if kept is not None else now,
            approved_at_ms=now,
            display_name=request.display_name or (kept.display_name if kept is not None else None),
            operator_label=kept.operator_label if kept is not None else None,
            platform=request.platform,
            device_family=request.device_family,
            client_id=request.client_id,
            client_mode=request.client_mode,
            remote_ip=request.remote_ip,
            last_seen_at_ms=now,
            last_seen_reason="silent-pairing" if silent else "approved",
        )
        if kept is None and previous is not None:
            yield self.store.remove_paired(previous.device_id)
        yield self.store.put_paired(device)
        yield self.store.remove_pending([request.request_id])
        self._resolved(request, "approved")
        self._log.info(
            "device {device_id} paired as {role} ({how})",
            device_id=device.device_id,
            role=request.role,
            how="silently, local" if silent else "by an operator",
        )
        return device

    # -- operator actions --------------------------------------------------------------------

    def approve(self, request_id: str, approver_scopes: Iterable[str]) -> Deferred[PairedDevice]:
        """Approve a pending request, never granting more than the approver holds itself."""

        def checked(request: PendingPairing) -> PendingPairing:
            refuse_beyond_approver(request, frozenset(approver_scopes))
            return request

        return maybeDeferred(self._live_request, request_id).addCallback(checked).addCallback(self._approve)

    @inlineCallbacks
    def reject(self, request_id: str) -> Generator[Deferred[Any], Any, PendingPairing]:
        request = self._live_request(request_id)
        yield self.store.remove_pending([request.request_id])
        self._resolved(request, "rejected")
        return request

    @inlineCallbacks
    def remove(self, device_id: str) -> Generator[Deferred[Any], Any, PairedDevice]:
        removed: PairedDevice | None = yield self.store.remove_paired(device_id)
        if removed is None:
            raise invalid_request(f"unknown deviceId: {device_id}")
        self._clients.broadcast(
            "device.pair.resolved",
            {"requestId": "", "deviceId": device_id, "decision": "removed", "ts": self._now_ms()},
        )
        for client in self._clients.by_device(device_id):
            client.sink.close_with(CLOSE_INVALIDATED, "client invalidated: device removed")
        return removed

    @inlineCallbacks
    def remove_role(self, device_id: str, role: str) -> Generator[Deferred[Any], Any, bool]:
        """Take one role from a paired device (``node.pair.remove`` takes ``node``), as the reference.

        The device is forgotten when that was its only role; its token for the role goes, and its
        connections in that role are closed (a node host reconnects and asks again).
        """
        device = self.store.paired(device_id)
        if device is None or role not in device.roles:
            return False
        if device.roles == [role]:
            yield self.store.remove_paired(device_id)
        else:
            device.roles = [r for r in device.roles if r != role]
            yield self.store.put_paired(device)
            yield self.store.remove_token(device_id, role)
        for client in self._clients.by_device(device_id):
            if client.role == role:
                client.sink.close_with(CLOSE_INVALIDATED, "device removed")
        return True

    @inlineCallbacks
    def rename(self, device_id: str, label: str) -> Generator[Deferred[Any], Any, PairedDevice]:
        device = self.store.paired(device_id)
        if device is None:
            raise invalid_request(f"unknown deviceId: {device_id}")
        device.operator_label = label
        yield self.store.put_paired(device)
        return device

    def _live_request(self, request_id: str) -> PendingPairing:
        request = self.store.pending(request_id)
        if request is None or request.last_activity_ms < self._now_ms() - self._pending_ttl_ms:
            raise invalid_request(f"unknown requestId: {request_id}")
        return request

    # -- tokens ------------------------------------------------------------------------------

    def issue_token(self, device: PairedDevice, role: str) -> Deferred[DeviceToken]:
        """The device's token for ``role``: reused when it exists, minted otherwise."""
        existing = self.store.token(device.device_id, role)
        scopes = list(device.scopes) if role == "operator" else []
        now = self._now_ms()
        if existing is not None:
            stale = now - (existing.last_used_at_ms or 0) >= LAST_SEEN_WRITE_INTERVAL_MS
            existing.last_used_at_ms = now
            if existing.scopes != scopes:
                existing.scopes = scopes
                return self.store.put_token(existing)  # a real change: hello-ok waits for the disk
            if stale:
                # Only the last-used time moved: written behind, the handshake does not wait on the disk.
                self.store.put_token(existing).addErrback(self._log_last_used_failure)
            return succeed(existing)
        token = DeviceToken(device_id=device.device_id, role=role, token=new_device_token(), scopes=scopes, created_at_ms=now, last_used_at_ms=now)
        return self.store.put_token(token)

    @inlineCallbacks
    def rotate_token(self, device_id: str, role: str, scopes: list[str] | None) -> Generator[Deferred[Any], Any, DeviceToken]:
        device = self.store.paired(device_id)
        if device is None or role not in device.roles:
            raise invalid_request(f"unknown device role: {device_id}/{role}")
        granted = list(device.scopes) if role == "operator" else []
        if scopes is not None:
            if not scopes_cover(scopes, granted):
                raise invalid_request("scopes exceed the device's approved scopes")
            granted = list(scopes)
        now = self._now_ms()
        previous = self.store.token(device_id, role)
        token = DeviceToken(
            device_id=device_id,
            role=role,
            token=new_device_token(),
            scopes=granted,
            created_at_ms=previous.created_at_ms if previous else now,
            rotated_at_ms=now,
        )
        yield self.store.put_token(token)
        return token

    @inlineCallbacks
    def revoke_token(self, device_id: str, role: str) -> Generator[Deferred[Any], Any, DeviceToken]:
        removed: DeviceToken | None = yield self.store.remove_token(device_id, role)
        if removed is None:
            raise invalid_request(f"no token for {device_id}/{role}")
        return removed


def refuse_beyond_approver(request: PendingPairing, approver_scopes: frozenset[str]) -> None:
    """An approver without admin grants only the operator role and only scopes it holds.

    The reference's refusals: INVALID_REQUEST "device pairing approval denied" for other roles,
    "missing scope: <scope>" naming the first requested scope the approver lacks.
    """
    if ADMIN in approver_scopes:
        return
    if request.role != "operator":
        raise invalid_request("device pairing approval denied")
    missing = first_missing_scope(request.scopes, approver_scopes)
    if missing is not None:
        raise invalid_request(f"missing scope: {missing}")


def _merge(first: list[str], second: list[str] | tuple[str, ...]) -> list[str]:
    merged = list(first)
    for scope in second:
        if scope not in merged:
            merged.append(scope)
    return merged
