"""Connected nodes and the invokes in flight to them.

An invoke is a ``node.invoke.request`` event sent straight to the node's socket (no ``seq``) and
a Deferred waiting for the node's ``node.invoke.result``; it ends exactly once: with the
result, on its timeout (the node is told with ``node.invoke.cancel``), or when the node's socket
goes away (every pending invoke fails at once with UNAVAILABLE).
"""
from __future__ import annotations

import uuid
from typing import Any
from collections.abc import Callable, Mapping

import attrs
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from zope.interface import implementer

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..seams import INodeRegistry
from ..security.rate_limit import reported_client_ip
from .clients import ConnectedClient

DEFAULT_INVOKE_TIMEOUT_MS = 30_000
MAX_PENDING_INVOKES_PER_NODE = 1024


def node_id_of(client: ConnectedClient) -> str:
    """``connect.device.id`` when the node has a device identity, else ``client.id``."""
    return client.device_id or client.client_id


def node_metadata(client: ConnectedClient) -> dict[str, Any]:
    """What a node's connect says about it, in the pairing records' field names."""
    info = client.client
    return {
        "nodeId": node_id_of(client),
        "displayName": info.get("displayName"),
        "platform": info.get("platform"),
        "version": info.get("version"),
        "coreVersion": info.get("coreVersion"),
        "uiVersion": info.get("uiVersion"),
        "deviceFamily": info.get("deviceFamily"),
        "modelIdentifier": info.get("modelIdentifier"),
        "clientId": info.get("id"),
        "clientMode": info.get("mode"),
        "remoteIp": reported_client_ip(client.remote_ip),
        "caps": list(client.caps),
        "commands": list(client.commands),
        "permissions": client.permissions,
    }


@attrs.define(eq=False)
class PendingInvoke:
    invoke_id: str
    node_id: str
    command: str
    result: Deferred[dict[str, Any]]
    timer: IDelayedCall | None = None


@attrs.define(eq=False)
class ConnectedNode:
    node_id: str
    client: ConnectedClient
    connected_at_ms: int
    last_seen_at_ms: int
    invokes: dict[str, PendingInvoke] = attrs.field(factory=dict)
    # What the node published about itself (hostStats, skills, pluginTools, runnerInventory).
    published: dict[str, Any] = attrs.field(factory=dict)
    last_seen_reason: str = "connect"

    def send_event(self, event: str, payload: Mapping[str, Any]) -> bool:
        """Node-directed events carry no ``seq`` (protocol §6.2)."""
        frame = orjson.dumps({"type": "event", "event": event, "payload": payload})
        return self.client.sink.deliver_frame(frame, droppable=False)


@implementer(INodeRegistry)
class NodeRegistry:
    def __init__(self, clock: IReactorTime, on_change: Callable[[str, bool], None] = lambda node_id, connected: None):
        self._clock = clock
        self._on_change = on_change
        self._nodes: dict[str, ConnectedNode] = {}

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def get(self, node_id: str) -> ConnectedNode | None:
        return self._nodes.get(node_id)

    def all(self) -> list[ConnectedNode]:
        return list(self._nodes.values())

    def connected(self, client: ConnectedClient) -> ConnectedNode:
        """Register a node socket; an older socket of the same node is replaced and closed."""
        node_id = node_id_of(client)
        previous = self._nodes.get(node_id)
        now = self._now_ms()
        node = self._nodes[node_id] = ConnectedNode(node_id, client, now, now)
        if previous is not None and previous.client is not client:
            self._fail_all(previous, "node reconnected")
            previous.client.sink.close_with(1000, "replaced by a newer connection")
        self._on_change(node_id, True)
        return node

    def disconnected(self, client: ConnectedClient) -> None:
        node_id = node_id_of(client)
        node = self._nodes.get(node_id)
        if node is None or node.client is not client:
            return
        del self._nodes[node_id]
        self._fail_all(node, "node disconnected")
        self._on_change(node_id, False)

    def _fail_all(self, node: ConnectedNode, why: str) -> None:
        for invoke in list(node.invokes.values()):
            self._finish(node, invoke, GatewayError(UNAVAILABLE, f"{why} ({invoke.command})", {"code": "NOT_CONNECTED"}))

    def invoke(self, node: ConnectedNode, command: str, params: Any, timeout_ms: int, idempotency_key: str, extra: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        """Send the request to the node; fires with the node's result dict or fails with GatewayError."""
        if len(node.invokes) >= MAX_PENDING_INVOKES_PER_NODE:
            raise GatewayError(UNAVAILABLE, "too many invokes in flight to this node", retryable=True)
        invoke_id = str(uuid.uuid4())
        pending = PendingInvoke(invoke_id, node.node_id, command, Deferred())
        payload: dict[str, Any] = {
            "id": invoke_id,
            "nodeId": node.node_id,
            "command": command,
            "paramsJSON": orjson.dumps(params).decode() if params is not None else None,
            "timeoutMs": timeout_ms,
            "idempotencyKey": idempotency_key,
            **extra,
        }
        node.invokes[invoke_id] = pending
        if not node.send_event("node.invoke.request", payload):
            del node.invokes[invoke_id]
            raise GatewayError(UNAVAILABLE, "failed to send invoke to node")
        pending.timer = self._clock.callLater(timeout_ms / 1000.0, self._timed_out, node, pending)
        return pending.result

    def _timed_out(self, node: ConnectedNode, pending: PendingInvoke) -> None:
        pending.timer = None
        node.send_event("node.invoke.cancel", {"invokeId": pending.invoke_id, "nodeId": node.node_id})
        self._finish(
            node,
            pending,
            GatewayError(
                UNAVAILABLE,
                "TIMEOUT: node invoke timed out",
                {"nodeError": {"code": "TIMEOUT", "message": "node invoke timed out"}, "nodeCommandDispatched": True},
            ),
        )

    def result(self, node_id: str, invoke_id: str, outcome: Mapping[str, Any]) -> bool:
        """A ``node.invoke.result`` from the node; False when nothing was waiting for it."""
        node = self._nodes.get(node_id)
        pending = node.invokes.get(invoke_id) if node is not None else None
        if node is None or pending is None:
            return False
        node.last_seen_at_ms = self._now_ms()
        self._finish(node, pending, outcome)
        return True

    def _finish(self, node: ConnectedNode, pending: PendingInvoke, outcome: Any) -> None:
        if node.invokes.pop(pending.invoke_id, None) is None:
            return
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if isinstance(outcome, Exception):
            pending.result.errback(outcome)
        else:
            pending.result.callback(outcome)
