"""Node pairing: a node's capability surface (caps, commands, permissions) needs an operator's yes.

A node connecting with a surface that is not approved (new, or declaring more than was
approved) gets a pending request, broadcast as ``node.pair.requested``. As in the reference, a
loopback node's *device* may be paired silently, but its command surface always waits for an
operator (``openclaw nodes approve``): device pairing alone must not grant commands. The request
carries only the declared commands the platform allowlist lets a node ask for
(``openclaw.nodes.policy``). Approving needs more scope
the more the node can do: no commands → ``operator.pairing``; ordinary commands → also
``operator.write``; dangerous ones (``system.run`` …) → also ``operator.admin``. As in the
reference, a request created by a node's connect waits until an operator answers it (the node is
connected and retrying; a lapsed request would leave it stuck until it reconnects); requests
from the explicit ``node.pair.request`` flow carry ``expiresAtMs`` and lapse after five minutes. The brief's explicit ``node.pair.request`` / ``node.pair.verify`` flow
uses the same records.
"""
from __future__ import annotations

import secrets
import uuid
from typing import Any
from collections.abc import Callable, Iterable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..protocol.errors import GatewayError, invalid_request
from ..security.scopes import ADMIN, PAIRING, WRITE, first_missing_scope
from ..security.shared_secret import constant_time_equal
from ..stores.nodes import NodeStore
from ..stores.sqlite import refuse_to_start_without

PENDING_TTL_MS = 5 * 60 * 1000
PRUNE_INTERVAL_S = 60.0
# Commands that let an operator run code or touch the host: approving them needs admin.
ADMIN_COMMANDS = frozenset(
    (
        "system.run",
        "system.run.prepare",
        "system.which",
        "browser.proxy",
        "browser.proxy.upload.v1",
        "fs.listDir",
        "system.execApprovals.get",
        "system.execApprovals.set",
    )
)
METADATA_FIELDS = (
    "displayName",
    "platform",
    "version",
    "coreVersion",
    "uiVersion",
    "deviceFamily",
    "modelIdentifier",
    "remoteIp",
    "clientId",
    "clientMode",
)


def normalize_list(values: Iterable[Any] | None) -> list[str]:
    """Trimmed, de-duplicated, sorted: how the reference lists caps and commands."""
    return sorted({str(value).strip() for value in values or () if str(value).strip()})


def approval_scopes(commands: Iterable[str]) -> list[str]:
    commands = list(commands)
    if not commands:
        return [PAIRING]
    if any(command in ADMIN_COMMANDS for command in commands):
        return [PAIRING, ADMIN]
    return [PAIRING, WRITE]


class NodePairingService(Service):
    _log = Logger()

    def __init__(self, store: NodeStore, clock: IReactorTime, broadcast: Callable[..., Any]):
        self.store = store
        self._clock = clock
        self._broadcast = broadcast
        self._pruner = LoopingCall(self.prune_expired)
        self._pruner.clock = clock
        self.loaded = False

    def startService(self) -> Deferred[None]:
        super().startService()

        def loaded(_: Any) -> None:
            self.loaded = True
            self._pruner.start(PRUNE_INTERVAL_S, now=True).addErrback(self._pruner_stopped)

        return self.store.load().addCallbacks(loaded, refuse_to_start_without("node store", self.store.path))

    def _pruner_stopped(self, failure: Failure) -> None:
        self._log.failure("node pairing pruner stopped", failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._pruner.running:
            self._pruner.stop()
        return self.store.close()

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- requests ------------------------------------------------------------------------------

    def surface_approved(self, node_id: str, commands: Iterable[str], caps: Iterable[str]) -> bool:
        paired = self.store.paired(node_id)
        if paired is None:
            return False
        return set(normalize_list(commands)) <= set(paired.get("commands", ())) and set(normalize_list(caps)) <= set(
            paired.get("caps", ())
        )

    @inlineCallbacks
    def node_connected(self, metadata: Mapping[str, Any], *, local: bool) -> Any:
        """A node connected: note when, and ask operators for any surface not yet approved."""
        node_id = metadata["nodeId"]
        paired = self.store.paired(node_id)
        if paired is not None:
            yield self.store.put_paired({**paired, "lastConnectedAtMs": self._now_ms()})
        if self.surface_approved(node_id, metadata.get("commands") or (), metadata.get("caps") or ()):
            return None
        result = yield self.request(metadata, local=local)
        return result

    @inlineCallbacks
    def request(self, metadata: Mapping[str, Any], *, silent: bool = False, local: bool = False, lapses: bool = False) -> Any:
        """Create (or return the existing) pending request; fires with ``(request, created)``.

        ``local`` marks the request ``silent`` (same host), which approves nothing by itself.
        """
        node_id = metadata["nodeId"]
        existing = self.store.pending_for(node_id)
        if existing is not None and existing.get("commands") == normalize_list(metadata.get("commands")):
            return existing, False
        if existing is not None:
            yield self._resolve(existing, "rejected", reason="superseded")
        request: dict[str, Any] = {
            "requestId": str(uuid.uuid4()),
            "nodeId": node_id,
            "caps": normalize_list(metadata.get("caps")),
            "commands": normalize_list(metadata.get("commands")),
            "isRepair": self.store.paired(node_id) is not None,
            "ts": self._now_ms(),
        }
        for field in METADATA_FIELDS:
            if metadata.get(field) is not None:
                request[field] = metadata[field]
        if metadata.get("permissions"):
            request["permissions"] = dict(metadata["permissions"])
        request["requiredApproveScopes"] = approval_scopes(request["commands"])
        if lapses:
            request["expiresAtMs"] = request["ts"] + PENDING_TTL_MS
        if silent or local:
            request["silent"] = True
        yield self.store.put_pending(request)
        self._broadcast("node.pair.requested", request)
        return request, True

    def _lapsed(self, request: Mapping[str, Any]) -> bool:
        return request.get("expiresAtMs") is not None and request["expiresAtMs"] <= self._now_ms()

    def list(self) -> dict[str, Any]:
        pending = sorted((r for r in self.store.all_pending() if not self._lapsed(r)), key=lambda r: -r["ts"])
        paired = sorted(self.store.all_paired(), key=lambda r: -r.get("approvedAtMs", 0))
        return {"pending": pending, "paired": [self.public(record) for record in paired]}

    @staticmethod
    def public(record: Mapping[str, Any]) -> dict[str, Any]:
        """A paired record without its token."""
        return {key: value for key, value in record.items() if key != "token"}

    def _live_pending(self, request_id: str) -> dict[str, Any]:
        request = self.store.pending(request_id)
        if request is None or self._lapsed(request):
            raise invalid_request("unknown requestId")
        return request

    def approve(self, request_id: str, approver_scopes: Iterable[str]) -> Deferred[dict[str, Any]]:
        request = self._live_pending(request_id)
        required = approval_scopes(request.get("commands", ()))
        missing = first_missing_scope(required, approver_scopes)
        if missing is not None:
            raise GatewayError(
                "FORBIDDEN",
                f"missing scope: {missing}",
                {"code": "MISSING_SCOPE", "missingScope": missing, "requiredScopes": required},
            )
        return self._approve(request)

    @inlineCallbacks
    def _approve(self, request: dict[str, Any], silent: bool = False) -> Any:
        now = self._now_ms()
        previous = self.store.paired(request["nodeId"]) or {}
        node = {
            key: value
            for key, value in request.items()
            if key not in ("requestId", "ts", "isRepair", "silent", "requiredApproveScopes", "expiresAtMs")
        }
        node.update(
            {
                "token": secrets.token_urlsafe(32),
                "createdAtMs": previous.get("createdAtMs", now),
                "approvedAtMs": now,
            }
        )
        if previous.get("displayName") and previous.get("renamed"):
            node["displayName"], node["renamed"] = previous["displayName"], True
        yield self.store.put_paired(node)
        yield self.store.remove_pending([request["requestId"]])
        self._broadcast(
            "node.pair.resolved",
            {"requestId": request["requestId"], "nodeId": request["nodeId"], "decision": "approved", "ts": now},
        )
        if not silent:
            self._log.info("node {node_id} pairing approved", node_id=request["nodeId"])
        return {"requestId": request["requestId"], "node": node}

    @inlineCallbacks
    def reject(self, request_id: str) -> Any:
        request = self._live_pending(request_id)
        yield self._resolve(request, "rejected")
        return {"requestId": request_id, "nodeId": request["nodeId"]}

    @inlineCallbacks
    def _resolve(self, request: Mapping[str, Any], decision: str, reason: str | None = None) -> Any:
        yield self.store.remove_pending([request["requestId"]])
        payload = {"requestId": request["requestId"], "nodeId": request["nodeId"], "decision": decision, "ts": self._now_ms()}
        if reason:
            payload["reason"] = reason
        self._broadcast("node.pair.resolved", payload)

    @inlineCallbacks
    def remove(self, node_id: str, *, device_paired: bool = False) -> Any:
        """Forget the node's approved surface and announce the removal; ``device_paired`` says the
        node is known through its device even if its surface was never approved."""
        if self.store.paired(node_id) is not None:
            yield self.store.remove_paired(node_id)
        elif not device_paired:
            raise invalid_request("unknown nodeId")
        self._broadcast("node.pair.resolved", {"requestId": "", "nodeId": node_id, "decision": "removed", "ts": self._now_ms()})
        return {"nodeId": node_id, "removedAtMs": self._now_ms()}

    @inlineCallbacks
    def rename(self, node_id: str, display_name: str) -> Any:
        name = display_name.strip()
        if not name:
            raise invalid_request("displayName required")
        record = self.store.paired(node_id)
        if record is None:
            raise invalid_request("unknown nodeId")
        yield self.store.put_paired({**record, "displayName": name, "renamed": True})
        return {"nodeId": node_id, "displayName": name}

    def verify(self, node_id: str, token: str) -> dict[str, Any]:
        record = self.store.paired(node_id)
        if record is None or not token or not constant_time_equal(token, record.get("token")):
            return {"ok": False}
        return {"ok": True, "node": self.public(record)}

    @inlineCallbacks
    def prune_expired(self) -> Any:
        for request in [r for r in self.store.all_pending() if self._lapsed(r)]:
            yield self._resolve(request, "rejected", reason="expired")
