"""Connected clients and event fan-out with per-connection ``seq`` and scope gating (§6.2, §6.3).

A broadcast encodes its payload once; each recipient then gets a hand-assembled frame carrying its
own ``seq``. ``seq`` counts every event addressed to a client, including droppable ones that its
full outbound buffer had to discard, so the client can see the gap.
"""
from __future__ import annotations

from typing import Any, Protocol
from collections.abc import Callable, Collection, Iterator

import attrs
import orjson

from ..security.scopes import may_receive_event


class EventSink(Protocol):
    """What a connection offers the registry: hand it a finished frame."""

    def deliver_frame(self, frame: bytes, *, droppable: bool) -> bool: ...

    def close_with(self, code: int, reason: str) -> None: ...


EPHEMERAL_CLIENT_MODES = frozenset({"cli", "backend", "probe"})

# Events about one instance only, never relayed to other instances: each instance sends its own
# tick, health and shutdown, and builds its own (cluster-wide) presence list.
LOCAL_EVENTS = frozenset({"connect.challenge", "tick", "health", "presence", "shutdown", "heartbeat"})


@attrs.define(eq=False)
class ConnectedClient:
    """One admitted connection: who it is and what it may see."""

    conn_id: str
    role: str
    scopes: frozenset[str]
    client: dict[str, Any]
    sink: EventSink = attrs.field(repr=False)
    connected_at_ms: int
    remote_ip: str | None = None
    device_id: str | None = None
    auth_method: str = "none"
    protocol: int = 4
    caps: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    permissions: dict[str, bool] = attrs.field(factory=dict)
    # A node's PATH as it reported it (``connect.pathEnv``), shown in node.describe.
    path_env: str | None = None
    seq: int = 0
    # Opt-in event streams (``sessions.subscribe``); the reference only sends those to subscribers.
    subscriptions: set[str] = attrs.field(factory=set)
    _event_access: dict[str, bool] = attrs.field(factory=dict, repr=False)

    @property
    def client_id(self) -> str:
        return str(self.client.get("id", ""))

    @property
    def mode(self) -> str:
        return str(self.client.get("mode", ""))

    @property
    def instance_id(self) -> str | None:
        return self.client.get("instanceId")

    @property
    def in_presence(self) -> bool:
        """Short-lived control-plane sockets (CLI calls, backends, probes) are not "online".

        As in the reference: they get no presence entry and their comings and goings broadcast
        nothing, so a thousand ``openclaw gateway call`` runs cost no presence traffic at all.
        """
        return self.mode.strip().lower() not in EPHEMERAL_CLIENT_MODES

    def may_receive(self, event: str) -> bool:
        allowed = self._event_access.get(event)
        if allowed is None:
            allowed = self._event_access[event] = may_receive_event(event, self.role, self.scopes)
        return allowed

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def event_frame(name_json: bytes, payload_json: bytes, seq: int | None, state_version_json: bytes | None) -> bytes:
    """``{"type":"event","event":…,"payload":…,"seq":N,"stateVersion":…}`` in the reference's key order."""
    parts = [b'{"type":"event","event":', name_json, b',"payload":', payload_json]
    if seq is not None:
        parts += [b',"seq":', str(seq).encode("ascii")]
    if state_version_json is not None:
        parts += [b',"stateVersion":', state_version_json]
    parts.append(b"}")
    return b"".join(parts)


class ClientRegistry:
    """Every admitted connection, and the broadcaster that serves them."""

    # Called once per broadcast with (event, sent, dropped): the metrics hook.
    on_delivery: Any = None

    def __init__(self, relay: Any = None) -> None:
        self._clients: dict[str, ConnectedClient] = {}
        # Kept as clients come and go (a client's role never changes): ``status`` reads the counts
        # on every call, and walking every connection for them made it O(connections).
        self._operators = 0
        # An IEventRelay (cluster mode): broadcasts also reach the other instances' connections.
        self._relay = relay

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ConnectedClient]:
        return iter(list(self._clients.values()))

    def add(self, client: ConnectedClient) -> None:
        replaced = self._clients.get(client.conn_id)
        if replaced is not None:
            self._operators -= replaced.role == "operator"
        self._clients[client.conn_id] = client
        self._operators += client.role == "operator"

    def remove(self, conn_id: str) -> ConnectedClient | None:
        client = self._clients.pop(conn_id, None)
        if client is not None:
            self._operators -= client.role == "operator"
        return client

    def get(self, conn_id: str) -> ConnectedClient | None:
        return self._clients.get(conn_id)

    def by_device(self, device_id: str) -> list[ConnectedClient]:
        return [client for client in self._clients.values() if client.device_id == device_id]

    def counts(self) -> dict[str, int]:
        return {"total": len(self._clients), "operators": self._operators, "nodes": len(self._clients) - self._operators}

    def broadcast(
        self,
        event: str,
        payload: Any,
        *,
        drop_if_slow: bool = False,
        state_version: dict[str, int] | None = None,
        topic: str | None = None,
        only: Callable[[ConnectedClient], bool] | None = None,
    ) -> int:
        """Send ``event`` to every client allowed to see it (and, with ``topic``, subscribed to
        it; with ``only``, picked by it); returns how many were addressed here.

        With a relay, events that are not about this instance alone (:data:`LOCAL_EVENTS`) are
        also handed to it, already encoded, for the other instances' connections. Broadcasts
        picked by ``only`` (a predicate on this instance's connections) stay on this instance.
        """
        if self._relay is not None and event not in LOCAL_EVENTS and only is None:
            payload_json = orjson.dumps(payload)
            self._relay.relay(event, payload_json, drop_if_slow, topic)
            return self.deliver_encoded(event, payload_json, drop_if_slow=drop_if_slow, topic=topic)
        recipients: Collection[ConnectedClient] = self._clients.values()
        if topic is not None:
            recipients = [client for client in recipients if topic in client.subscriptions]
        if only is not None:
            recipients = [client for client in recipients if only(client)]
        if (topic is not None or only is not None) and not recipients:
            return 0  # nothing to encode
        return self._deliver(event, recipients, orjson.dumps(payload), drop_if_slow, state_version)

    def skip_seq(self) -> None:
        """Events meant for these connections were lost on the way (a cluster bus message that
        never arrived): advance every connection's ``seq`` so its next event shows the gap, which
        clients already treat as "refresh what you show"."""
        for client in self._clients.values():
            client.next_seq()

    def deliver_encoded(
        self, event: str, payload_json: bytes, *, drop_if_slow: bool = False, topic: str | None = None
    ) -> int:
        """Deliver an already encoded event to this instance's connections only (what a relay
        received from another instance); ``seq`` is this instance's, per connection."""
        recipients: Collection[ConnectedClient] = self._clients.values()
        if topic is not None:
            recipients = [client for client in recipients if topic in client.subscriptions]
        return self._deliver(event, recipients, payload_json, drop_if_slow, None)

    def _deliver(
        self, event: str, recipients: Collection[ConnectedClient], payload_json: bytes, drop_if_slow: bool, state_version: dict[str, int] | None
    ) -> int:
        name_json = orjson.dumps(event)
        version_json = orjson.dumps(state_version) if state_version is not None else None
        # event_frame's bytes, with everything around the seq joined once for all recipients.
        head = b"".join((b'{"type":"event","event":', name_json, b',"payload":', payload_json, b',"seq":'))
        tail = b"".join((b',"stateVersion":', version_json, b"}")) if version_json is not None else b"}"
        addressed = delivered = 0
        for client in list(recipients):
            if not client.may_receive(event):
                continue
            addressed += 1
            frame = b"".join((head, b"%d" % client.next_seq(), tail))
            if client.sink.deliver_frame(frame, droppable=drop_if_slow):
                delivered += 1
        if self.on_delivery is not None and addressed:
            self.on_delivery(event, delivered, addressed - delivered)
        return addressed
