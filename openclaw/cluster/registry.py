"""Presence and the node registry seen cluster-wide.

Each instance keeps its own connections exactly as a single gateway does (the classes below
extend the single-process ones) and shares what it has through the bus; what other instances
share is merged in when this instance lists presence or nodes. A node connected elsewhere is a
:class:`RemoteNode`, and invoking it routes the request to the instance holding its socket.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..seams import INodeRegistry, IPresence
from ..state.nodes import ConnectedNode, NodeRegistry
from ..state.presence import MAX_LISTED_ENTRIES, PresenceTracker


@implementer(IPresence)
class ClusterPresence(PresenceTracker):
    def __init__(self, clock: IReactorTime, bus: Any, **kwargs: Any):
        super().__init__(clock, **kwargs)
        self._bus = bus

    def local_client_entries(self) -> dict[str, dict[str, Any]]:
        return {key: entry for key, (_, entry) in self._clients.items()}

    def client_connected(self, key: str, conn_id: str, entry: dict[str, Any]) -> None:
        super().client_connected(key, conn_id, entry)
        self._bus.presence_changed(key, self._clients[key][1])

    def client_disconnected(self, key: str, conn_id: str) -> bool:
        removed = super().client_disconnected(key, conn_id)
        if removed:
            self._bus.presence_changed(key, None)
        return removed

    def entries(self) -> list[dict[str, Any]]:
        """This gateway, its clients, then every other instance and its clients (one entry per
        key: a client that moved to another instance is listed once, newest wins)."""
        local = super().entries()
        merged: dict[str, dict[str, Any]] = {}
        for entry in self._bus.remote_entries():
            key = entry.get("instanceId") if entry.get("mode") == "gateway" else _entry_key(entry)
            current = merged.get(key)
            if current is None or entry.get("ts", 0) >= current.get("ts", 0):
                merged[key] = entry
        own_keys = {_entry_key(entry) for entry in local[1:]}
        remote = [entry for key, entry in merged.items() if key not in own_keys]
        return (local + remote)[:MAX_LISTED_ENTRIES]


def _entry_key(entry: Mapping[str, Any]) -> str:
    return entry.get("instanceId") or entry.get("deviceId") or entry.get("host") or ""


@attrs.define(eq=False)
class RemoteClient:
    """What node methods read of a node's connection, for a node connected elsewhere."""

    client: dict[str, Any]
    caps: tuple[str, ...]
    commands: tuple[str, ...]
    permissions: dict[str, bool]
    remote_ip: str | None
    device_id: str | None
    path_env: str | None = None

    @property
    def client_id(self) -> str:
        return str(self.client.get("id", ""))


@attrs.define(eq=False)
class RemoteNode:
    node_id: str
    instance_id: str
    client: RemoteClient
    connected_at_ms: int
    last_seen_at_ms: int
    published: dict[str, Any] = attrs.field(factory=dict)
    last_seen_reason: str = "connect"
    # node.invoke leaves the command policy to the instance holding the node's socket.
    routed = True

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RemoteNode:
        client = RemoteClient(
            dict(record.get("client") or {}),
            tuple(record.get("caps") or ()),
            tuple(record.get("commands") or ()),
            dict(record.get("permissions") or {}),
            record.get("remoteIp"),
            record.get("deviceId"),
            record.get("pathEnv"),
        )
        return cls(
            record["nodeId"], record["instanceId"], client, record.get("connectedAtMs", 0), record.get("lastSeenAtMs", 0),
            dict(record.get("published") or {}), record.get("lastSeenReason") or "connect",
        )


@implementer(INodeRegistry)
class ClusterNodeRegistry(NodeRegistry):
    def __init__(self, clock: IReactorTime, bus: Any):
        super().__init__(clock, self._changed)
        self._bus = bus
        bus.local_nodes = self

    def _changed(self, node_id: str, connected: bool) -> None:
        """Share a node coming or going (before anything the caller broadcasts next)."""
        node = self._nodes.get(node_id) if connected else None
        self._bus.node_changed(node_id, self.record(node) if node is not None else None)

    def record(self, node: ConnectedNode) -> dict[str, Any]:
        client = node.client
        return {
            "nodeId": node.node_id,
            "instanceId": self._bus.instance_id,
            "client": {
                k: v
                for k, v in client.client.items()
                if k in ("id", "displayName", "platform", "version", "coreVersion", "uiVersion", "deviceFamily", "modelIdentifier", "mode", "instanceId")
            },
            "caps": list(client.caps),
            "commands": list(client.commands),
            "permissions": dict(client.permissions),
            "remoteIp": client.remote_ip,
            "deviceId": client.device_id,
            "connectedAtMs": node.connected_at_ms,
            "lastSeenAtMs": node.last_seen_at_ms,
            "lastSeenReason": node.last_seen_reason,
            "published": dict(node.published),
            "pathEnv": getattr(client, "path_env", None),
        }

    def local_records(self) -> dict[str, dict[str, Any]]:
        return {node_id: self.record(node) for node_id, node in self._nodes.items()}

    def local(self, node_id: str) -> ConnectedNode | None:
        return self._nodes.get(node_id)

    def get(self, node_id: str) -> Any:
        node = self._nodes.get(node_id)
        if node is not None:
            return node
        record = self._bus.remote_node(node_id)
        return RemoteNode.from_record(record) if record is not None else None

    def all(self) -> list[Any]:
        remote = [RemoteNode.from_record(r) for r in self._bus.all_remote_nodes() if r["nodeId"] not in self._nodes]
        return [*self._nodes.values(), *remote]

    def invoke(self, node: Any, command: str, params: Any, timeout_ms: int, idempotency_key: str, extra: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        if isinstance(node, RemoteNode):
            routed: Deferred[dict[str, Any]] = self._bus.route_invoke(
                node.instance_id, node.node_id, command, params, timeout_ms, idempotency_key, extra
            )
            return routed
        return super().invoke(node, command, params, timeout_ms, idempotency_key, extra)

    def invoke_here(self, node: ConnectedNode, command: str, params: Any, timeout_ms: int, idempotency_key: str, extra: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        """An invoke another instance routed to a node connected here."""
        return super().invoke(node, command, params, timeout_ms, idempotency_key, extra)
