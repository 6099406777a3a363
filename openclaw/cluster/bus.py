"""The cluster bus on Redis: event fan-out, shared presence and node registry, invoke routing,
store change notices, and instance liveness.

Channels (``<prefix>`` is the schema name and a colon):

- ``<prefix>events``: every broadcast that is not about one instance alone, already encoded.
  Each instance delivers what others publish to its own connections, with the same scope gating
  and its own per-connection ``seq`` (a message lost while Redis was away shows up as nothing
  more than a gap, which clients already handle).
- ``<prefix>control``: presence and node entries coming and going, store change notices,
  an instance's hello and bye.
- ``<prefix>inst:<id>``: what is addressed to one instance (invokes for its nodes, decisions
  on the exec approvals it holds, and the results of what it routed).

Keys: ``<prefix>instance:<id>`` (the heartbeat, with a TTL), the ``<prefix>instances`` set, and
the ``<prefix>presence:<id>`` / ``<prefix>nodes:<id>`` / ``<prefix>approvals:<id>`` (its pending
exec approvals) / ``<prefix>approvers:<id>`` (its approval clients) hashes peers read when they
(re)sync. An instance whose heartbeat key has expired is dead: its peers drop its presence
entries, nodes and approvals, and fail what they routed to it with UNAVAILABLE.
"""
from __future__ import annotations

import uuid
from typing import Any
from collections.abc import Callable, Generator, Mapping

import orjson
import txredisapi
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ..protocol.errors import INVALID_REQUEST, UNAVAILABLE, GatewayError
from ..seams import IEventRelay
from .options import ClusterOptions
from .redis import RedisLink, RedisUnavailable

MAX_ROUTED_INVOKES = 4096
INVOKE_GRACE_S = 5.0  # beyond the node's own timeout, for the answer to come back over the bus
FULL_RESYNC_EVERY_BEATS = 15
MAX_RECORDED_GAPS = 10
MAX_TRACKED_PEERS = 1024  # peers whose event numbering is followed (ids change on each start)
APPROVAL_ROUTE_TIMEOUT_S = 10.0  # a decision routed to the instance holding the approval
# The hashes each instance keeps of what it shares (besides presence and nodes).
SHARED_TABLES = ("approvals", "approvers")


def _hash(reply: Any) -> dict[str, Any]:
    """An HGETALL reply (a flat field, value, … list) of JSON values, as a dict."""
    items = list(reply or ())
    return {str(field): orjson.loads(value) for field, value in zip(items[::2], items[1::2], strict=False)}


def node_unavailable(message: str) -> GatewayError:
    return GatewayError(UNAVAILABLE, message, {"code": "NOT_CONNECTED"}, retryable=True)


def approval_unavailable(message: str) -> GatewayError:
    """The instance holding an approval could not be reached (it died, or Redis is away)."""
    return GatewayError(UNAVAILABLE, message, {"code": "APPROVAL_OWNER_UNAVAILABLE"}, retryable=True)


@implementer(IEventRelay)
class ClusterBus:
    _log = Logger()

    def __init__(self, reactor: Any, options: ClusterOptions):
        self._clock = reactor
        self.options = options
        self.instance_id = options.instance_id
        prefix = options.key_prefix
        self._prefix = prefix
        self.events_channel = f"{prefix}events"
        self.control_channel = f"{prefix}control"
        self.own_channel = self.instance_channel(self.instance_id)
        self.link = RedisLink(
            reactor,
            options.redis,
            [self.events_channel, self.control_channel, self.own_channel],
            self._received,
            self._bus_ready,
            self._bus_lost,
        )
        self.gateway: Any = None
        self.local_nodes: Any = None  # the ClusterNodeRegistry
        self.stores: dict[str, Any] = {}  # "devices"/"nodes" -> store with reload()
        self.session_store: Any = None
        self.leases: Any = None  # ClusterLeases
        self.rate_limiter: Any = None  # ClusterRateLimiter
        self.idempotency: Any = None  # ClusterIdempotencyCache
        self.config_sync: Any = None  # ClusterConfigSync
        self.approvals: Any = None  # ClusterExecApprovals
        self.remote_presence: dict[str, dict[str, dict[str, Any]]] = {}
        self.remote_selves: dict[str, dict[str, Any]] = {}  # each live peer's own presence entry
        self._drops: dict[str, int] = {}  # times each peer was dropped (a read begun before is void)
        self.remote_nodes: dict[str, dict[str, dict[str, Any]]] = {}
        self.live_instances: set[str] = set()
        # What this instance asked another to do (an invoke, an approval decision), by id:
        # (target instance, the answer, its timer, the error if the target goes away).
        self._routed: dict[str, tuple[str, Deferred[dict[str, Any]], Any, Callable[[str], GatewayError]]] = {}
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self._beats = 0
        self._lost_at_ms: int | None = None
        self.gaps: list[dict[str, Any]] = []
        self.relay_failures = 0
        self._relayed = 0  # this instance's relayed events, numbered for the receivers' gap check
        self._last_relayed: dict[str, int] = {}  # per peer: the number of its last event seen here
        self.missed_events = 0
        self._stopping = False
        self.started_at_ms = self._now_ms()

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def instance_channel(self, instance_id: str) -> str:
        return f"{self._prefix}inst:{instance_id}"

    def key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # -- wiring ------------------------------------------------------------------------------

    def attach(self, gateway: Any) -> None:
        """The gateway whose connections this bus serves (built with this bus's parts)."""
        self.gateway = gateway

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        d = self.link.start()

        def beating(_: Any) -> None:
            self._beat.start(self.options.heartbeat_every_s, now=False)

        return d.addCallback(beating)

    @inlineCallbacks
    def stop(self) -> Generator[Deferred[Any], Any, None]:
        """Say goodbye (peers drop this instance at once instead of after the TTL), then close."""
        self._stopping = True
        if self._beat.running:
            self._beat.stop()
        for _, _, timer, _ in list(self._routed.values()):
            if timer.active():
                timer.cancel()
        self._fail_routed(lambda target: True, "gateway instance stopping")
        if self.leases is not None:
            self.leases.stop()
        if self.link.connected:
            try:
                yield self._forget_instance(self.instance_id)
                yield self.publish(self.control_channel, {"k": "bye", "i": self.instance_id})
            except Exception:
                self._log.failure("saying goodbye to the cluster failed")
        yield self.link.stop()

    def _bus_ready(self) -> None:
        if self._lost_at_ms is not None:
            gap = {"from": self._lost_at_ms, "to": self._now_ms(), "ms": self._now_ms() - self._lost_at_ms}
            self.gaps = (self.gaps + [gap])[-MAX_RECORDED_GAPS:]
            self._log.warn("cluster bus back after {ms} ms; events in that time were not relayed", ms=gap["ms"])
            self._lost_at_ms = None
        self._announce().addErrback(self._announce_failed)

    def _announce_failed(self, failure: Any) -> None:
        """Redis went away mid-announce (it is done again on reconnect) or a real bug."""
        if failure.check(txredisapi.ConnectionError, RedisUnavailable):
            if not self._stopping:
                self._log.warn("announcing to the cluster interrupted: {error}", error=failure.getErrorMessage())
            return
        self._log.failure("announcing to the cluster failed", failure)

    def _bus_lost(self) -> None:
        self._lost_at_ms = self._now_ms()
        self._log.warn("cluster bus (Redis at {where}) lost; reconnecting", where=self.link.where)

    @inlineCallbacks
    def _announce(self) -> Any:
        """Write this instance's heartbeat and entries (Redis may have restarted empty), say
        hello, and read every peer."""
        yield self._write_heartbeat()
        yield self._rewrite_own_entries()
        yield self.publish(self.control_channel, {"k": "hello", "i": self.instance_id})
        yield self._sync_peers(full=True)
        if self.session_store is not None:
            yield self.session_store.refresh_summary()
        for store in self.stores.values():
            store.reload()
        if self.config_sync is not None:
            self.config_sync.received(None)  # the newest revision, in case a notice was missed

    def _write_heartbeat(self) -> Deferred[Any]:
        """Refresh this instance's key (its value is this gateway's presence entry); fires with
        the previous value, None when the key had expired."""
        ttl_ms = int(self.options.heartbeat_ttl_s * 1000)
        entry = self.gateway.presence.self_entry() if self.gateway is not None else {"instanceId": self.instance_id}
        value = orjson.dumps({**entry, "startedAtMs": self.started_at_ms})
        d = self.link.command("SET", self.key("instance", self.instance_id), value, "PX", ttl_ms, "GET")

        def member(previous: Any) -> Deferred[Any]:
            return self.link.command("SADD", self.key("instances"), self.instance_id).addCallback(lambda _: previous)

        return d.addCallback(member)

    @inlineCallbacks
    def _rewrite_own_entries(self) -> Any:
        gateway = self.gateway
        presence_key, nodes_key = self.key("presence", self.instance_id), self.key("nodes", self.instance_id)
        yield self.link.command("DEL", presence_key, nodes_key, *[self.key(table, self.instance_id) for table in SHARED_TABLES])
        if gateway is None:
            return
        for key, entry in gateway.presence.local_client_entries().items():
            yield self.link.command("HSET", presence_key, key, orjson.dumps(entry))
        for node_id, record in self.local_nodes.local_records().items():
            yield self.link.command("HSET", nodes_key, node_id, orjson.dumps(record))
        shared = self.approvals.local_entries() if self.approvals is not None else {}
        for table, entries in shared.items():
            for field, value in entries.items():
                yield self.link.command("HSET", self.key(table, self.instance_id), field, orjson.dumps(value))

    # -- heartbeat and liveness --------------------------------------------------------------

    @inlineCallbacks
    def _heartbeat(self) -> Any:
        try:
            previous = yield self._write_heartbeat()
            if previous is None:
                # The key had expired (this process stalled past the TTL, or Redis restarted):
                # peers may have dropped this instance, so announce everything again.
                self._log.warn("cluster heartbeat had lapsed; announcing this instance again")
                yield self._announce()
            self._beats += 1
            yield self._sync_peers(full=self._beats % FULL_RESYNC_EVERY_BEATS == 0)
        except Exception as exc:  # a beat must never kill the loop (twisted#3627)
            self._log.debug("cluster heartbeat skipped: {error}", error=exc)

    @inlineCallbacks
    def _sync_peers(self, full: bool) -> Any:
        """Find dead peers (heartbeat key gone) and read new (or, with ``full``, all) peers."""
        members = yield self.link.command("SMEMBERS", self.key("instances"))
        # Everyone this instance knows of, not just the set: a peer is written to the set after
        # its heartbeat key, and known to us only after that, so a missing key means expired.
        known = {str(member) for member in (members or ())} | set(self.remote_presence) | set(self.remote_nodes)
        peers = sorted(known - {self.instance_id})
        beats = (yield self.link.command("MGET", *[self.key("instance", peer) for peer in peers])) if peers else []
        selves = {peer: orjson.loads(beat) for peer, beat in zip(peers, beats, strict=False) if beat is not None}
        for dead in sorted(set(peers) - set(selves)):
            yield self._instance_died(dead)
        joined = set(selves) - set(self.remote_selves)
        self.remote_selves = selves
        for peer in sorted(selves):
            if full or peer not in self.live_instances:
                yield self._read_peer(peer)
        self.live_instances = set(selves)
        if joined:
            self._presence_changed()

    @inlineCallbacks
    def _read_peer(self, peer: str) -> Any:
        drops = self._drops.get(peer, 0)
        beat = yield self.link.command("GET", self.key("instance", peer))
        presence = yield self.link.command("HGETALL", self.key("presence", peer))
        nodes = yield self.link.command("HGETALL", self.key("nodes", peer))
        shared = {}
        for table in SHARED_TABLES if self.approvals is not None else ():
            shared[table] = _hash((yield self.link.command("HGETALL", self.key(table, peer))))
        if beat is None or self._drops.get(peer, 0) != drops:
            return  # gone already (or dropped while this read was under way): nothing to bring back
        self.remote_selves[peer] = orjson.loads(beat)
        self.remote_presence[peer] = _hash(presence)
        self.remote_nodes[peer] = _hash(nodes)
        if self.approvals is not None:
            self.approvals.peer_read(peer, shared["approvals"], shared["approvers"])
        self._presence_changed()

    @inlineCallbacks
    def _instance_died(self, peer: str) -> Any:
        """A peer stopped without a goodbye (or said one): forget it everywhere, once."""
        self._drop_peer(peer)
        try:
            if self.leases is not None:
                yield self.leases.release_dead(peer)
            yield self._forget_instance(peer)
        except (txredisapi.ConnectionError, RedisUnavailable) as exc:
            # Any live instance clears them on its next beat.
            if not self._stopping:
                self._log.warn("clearing the keys of instance {peer} interrupted: {error}", peer=peer, error=exc)
        except Exception:
            self._log.failure("clearing the keys of instance {peer} failed", peer=peer)

    def _drop_peer(self, peer: str) -> None:
        self._drops[peer] = self._drops.get(peer, 0) + 1
        had_clients = self.remote_presence.pop(peer, None) is not None
        had_self = self.remote_selves.pop(peer, None) is not None
        had_presence = had_clients or had_self
        nodes = self.remote_nodes.pop(peer, {})
        self.live_instances.discard(peer)
        self._fail_routed(lambda target: target == peer, f"gateway instance {peer} is gone")
        if self.approvals is not None:
            self.approvals.peer_gone(peer)
        if self.idempotency is not None:
            self.idempotency.owner_gone(peer)
        if had_presence or nodes:
            self._log.info("instance {peer} is gone: dropped its presence and {count} node(s)", peer=peer, count=len(nodes))
        if had_presence:
            self._presence_changed()

    def _forget_instance(self, peer: str) -> Deferred[Any]:
        d = self.link.command("SREM", self.key("instances"), peer)
        tables = ("presence", "nodes", *SHARED_TABLES, "instance")
        d.addCallback(lambda _: self.link.command("DEL", *[self.key(table, peer) for table in tables]))
        return d

    def _presence_changed(self) -> None:
        if self.gateway is not None:
            self.gateway.broadcast_presence()

    # -- publishing --------------------------------------------------------------------------

    def publish(self, channel: str, message: Mapping[str, Any]) -> Deferred[Any]:
        return self.link.command("PUBLISH", channel, orjson.dumps(message))

    def relay(self, event: str, payload_json: bytes, drop_if_slow: bool, topic: str | None) -> None:
        """IEventRelay: one broadcast, encoded once, to every other instance."""
        self._relayed += 1  # counted even when the publish fails: receivers then see a jump
        head = orjson.dumps({"i": self.instance_id, "n": self._relayed, "e": event, "d": drop_if_slow, "t": topic})
        message = head[:-1] + b',"p":' + payload_json + b"}"
        d = self.link.command("PUBLISH", self.events_channel, message)
        d.addErrback(self._relay_failed)

    def _relay_failed(self, failure: Any) -> None:
        self.relay_failures += 1

    def presence_changed(self, key: str, entry: dict[str, Any] | None) -> None:
        """A client here came or went: update this instance's hash and tell the peers.

        Both commands are issued at once on the one command connection, so Redis runs them in
        order, and before any event the caller broadcasts next (peers see the entry first).
        """
        self._share("presence", key, entry, {"k": "presence", "i": self.instance_id, "key": key, "entry": entry})

    def node_changed(self, node_id: str, record: dict[str, Any] | None) -> None:
        self._share("nodes", node_id, record, {"k": "node", "i": self.instance_id, "id": node_id, "node": record})

    def approval_changed(self, approval_id: str, record: dict[str, Any] | None, ended: dict[str, Any] | None = None) -> None:
        """An exec approval held here is pending (``record``) or has ended (``ended``)."""
        notice = {"k": "approval", "i": self.instance_id, "id": approval_id, "rec": record, "ended": ended}
        self._share("approvals", approval_id, record, notice)

    def approver_changed(self, conn_id: str, entry: dict[str, Any] | None) -> None:
        """An approval client connected here (``entry``: who it is, for visibility) or left."""
        self._share("approvers", conn_id, entry, {"k": "approver", "i": self.instance_id, "key": conn_id, "entry": entry})

    def _share(self, table: str, field: str, value: Any, notice: dict[str, Any]) -> None:
        hash_key = self.key(table, self.instance_id)
        if value is None:
            stored = self.link.command("HDEL", hash_key, field)
        else:
            stored = self.link.command("HSET", hash_key, field, orjson.dumps(value))
        told = self.publish(self.control_channel, notice)
        for d in (stored, told):
            d.addErrback(lambda failure: self._log.debug("{table} not shared: {error}", table=table, error=failure.getErrorMessage()))

    def store_changed(self, store: str, op: str, args: list[Any]) -> None:
        """A committed change to a memory-served store, for the peers to apply."""
        d = self.publish(self.control_channel, {"k": "store", "s": store, "op": op, "a": args, "i": self.instance_id})
        d.addErrback(lambda failure: self._log.debug("store change not shared: {error}", error=failure.getErrorMessage()))

    # -- receiving ---------------------------------------------------------------------------

    def _received(self, channel: str, message: Any) -> None:
        try:
            data = orjson.loads(message)
            if channel == self.events_channel:
                self._event(data)
            elif channel == self.control_channel:
                self._control(data)
            elif channel == self.own_channel:
                self._addressed(data)
        except Exception:
            self._log.failure("a cluster bus message on {channel} could not be handled", channel=channel)

    def _event(self, data: dict[str, Any]) -> None:
        if data.get("i") == self.instance_id or self.gateway is None:
            return
        event = data["e"]
        self._check_gap(data["i"], data.get("n"))
        self.gateway.clients.deliver_encoded(event, orjson.dumps(data.get("p")), drop_if_slow=bool(data.get("d")), topic=data.get("t"))
        if event == "sessions.changed" and self.session_store is not None:
            self.session_store.refresh_summary().addErrback(lambda failure: None)

    def _check_gap(self, origin: str, number: Any) -> None:
        """A peer's events are numbered: a jump means some never arrived (Redis was away, or
        dropped them); this instance's connections then see a ``seq`` gap."""
        if not isinstance(number, int):
            return
        # Kept when a peer is dropped: after a Redis restart a live peer may look dead for a
        # beat, and its next event must still be compared with the last one seen.
        last = self._last_relayed.pop(origin, None)
        self._last_relayed[origin] = number
        while len(self._last_relayed) > MAX_TRACKED_PEERS:
            self._last_relayed.pop(next(iter(self._last_relayed)))
        if last is not None and number > last + 1:  # (a smaller number: the peer restarted)
            self.missed_events += number - last - 1
            self._log.warn("{count} event(s) from instance {peer} never arrived; clients see a seq gap", count=number - last - 1, peer=origin)
            self.gateway.clients.skip_seq()

    def _control(self, data: dict[str, Any]) -> None:
        origin, kind = data.get("i"), data.get("k")
        if not isinstance(origin, str) or origin == self.instance_id:
            return  # ours, or not from an instance
        if kind == "presence":
            entries = self.remote_presence.setdefault(origin, {})
            if data.get("entry") is None:
                entries.pop(data["key"], None)
            else:
                entries[data["key"]] = data["entry"]
            self._presence_changed()
        elif kind == "node":
            nodes = self.remote_nodes.setdefault(origin, {})
            if data.get("node") is None:
                nodes.pop(data["id"], None)
            else:
                nodes[data["id"]] = data["node"]
        elif kind == "store":
            store = self.stores.get(str(data.get("s")))
            if store is not None:
                store.apply(data.get("op") or "", data.get("a") or [])
        elif kind == "hello":
            self._read_peer(origin).addErrback(lambda failure: None)
            self.live_instances.add(origin)
        elif kind == "bye":
            self._drop_peer(origin)
        elif kind == "config" and self.config_sync is not None:
            self.config_sync.received(int(data["rev"]))
        elif kind == "idem" and self.idempotency is not None:
            self.idempotency.completed(data["key"], data["rec"])
        elif kind == "lockout" and self.rate_limiter is not None:
            self.rate_limiter.lock(data["address"], data["kind"], int(data["untilMs"]))
        elif kind == "approval" and self.approvals is not None:
            self.approvals.approval_notice(origin, data["id"], data.get("rec"), data.get("ended"))
        elif kind == "approver" and self.approvals is not None:
            self.approvals.approver_notice(origin, data["key"], data.get("entry"))

    def _addressed(self, data: dict[str, Any]) -> None:
        kind = data.get("k")
        if kind == "invoke":
            self._serve(data, self._invoke_here)
        elif kind == "approval.resolve" and self.approvals is not None:
            approvals = self.approvals
            self._serve(data, lambda d: approvals.resolve_routed(d["approval"], d["decision"], d.get("who")))
        elif kind == "invoke.result":
            self._routed_result(data)

    # -- presence and nodes seen from here ---------------------------------------------------

    def remote_entries(self) -> list[dict[str, Any]]:
        """Presence entries of the other live instances (each one's own entry first)."""
        entries = []
        for peer in sorted(set(self.remote_selves) | set(self.remote_presence)):
            if peer in self.remote_selves:
                own = dict(self.remote_selves[peer])
                own.pop("startedAtMs", None)
                entries.append(own)
            entries.extend(self.remote_presence.get(peer, {}).values())
        return entries

    def remote_node(self, node_id: str) -> dict[str, Any] | None:
        for peer in sorted(self.remote_nodes):
            record = self.remote_nodes[peer].get(node_id)
            if record is not None:
                return record
        return None

    def all_remote_nodes(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for peer in sorted(self.remote_nodes):
            for node_id, record in self.remote_nodes[peer].items():
                seen.setdefault(node_id, record)
        return list(seen.values())

    # -- invoke routing ----------------------------------------------------------------------

    def route_invoke(
        self, target: str, node_id: str, command: str, params: Any, timeout_ms: int, idempotency_key: str, extra: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        """Ask instance ``target`` to invoke its node; fires with the node's result dict."""
        message = {
            "k": "invoke", "node": node_id, "command": command,
            "params": params, "timeoutMs": timeout_ms, "idem": idempotency_key, "extra": dict(extra),
        }
        timed_out = GatewayError(UNAVAILABLE, "node invoke timed out", {"nodeError": {"code": "TIMEOUT", "message": "node invoke timed out"}})
        return self.route(target, message, timeout_ms / 1000.0 + INVOKE_GRACE_S, timed_out, node_unavailable, f"node {node_id}")

    def route_approval_resolve(self, target: str, approval_id: str, decision: str, who: str | None) -> Deferred[dict[str, Any]]:
        """Ask instance ``target``, which holds the approval, to apply a decision made here."""
        message = {"k": "approval.resolve", "approval": approval_id, "decision": decision, "who": who}
        timed_out = approval_unavailable("deciding the approval timed out")
        return self.route(target, message, APPROVAL_ROUTE_TIMEOUT_S, timed_out, approval_unavailable, f"approval {approval_id}")

    def route(
        self, target: str, message: dict[str, Any], timeout_s: float, timed_out: GatewayError,
        unavailable: Callable[[str], GatewayError], subject: str,
    ) -> Deferred[dict[str, Any]]:
        """Send ``message`` to instance ``target``; fires with its answer (or fails with its
        error, ``timed_out``, or ``unavailable(why)`` when ``target`` cannot answer)."""
        if len(self._routed) >= MAX_ROUTED_INVOKES:
            raise GatewayError(UNAVAILABLE, "too many requests in flight to other instances", retryable=True)
        routed_id = str(uuid.uuid4())
        result: Deferred[dict[str, Any]] = Deferred()
        timer = self._clock.callLater(timeout_s, self._settle, routed_id, timed_out)
        self._routed[routed_id] = (target, result, timer, unavailable)

        def sent(receivers: Any) -> None:
            if not receivers:
                self._settle(routed_id, unavailable(f"the gateway instance holding {subject} is not listening"))

        def not_sent(failure: Any) -> None:
            self._settle(routed_id, unavailable(f"cluster bus unavailable: {failure.getErrorMessage()}"))

        full = {**message, "from": self.instance_id, "id": routed_id}
        self.publish(self.instance_channel(target), full).addCallbacks(sent, not_sent)
        return result

    def _routed_result(self, data: dict[str, Any]) -> None:
        if data.get("ok"):
            self._settle(data["id"], data.get("result") or {})
            return
        error = data.get("error") or {}
        self._settle(
            data["id"],
            GatewayError(error.get("code") or UNAVAILABLE, error.get("message") or "node invoke failed", error.get("details"), error.get("retryable")),
        )

    def _settle(self, invoke_id: str, outcome: Any) -> None:
        routed = self._routed.pop(invoke_id, None)
        if routed is None:
            return
        _, result, timer, _ = routed
        if timer.active():
            timer.cancel()
        if isinstance(outcome, Exception):
            result.errback(outcome)
        else:
            result.callback(outcome)

    def _fail_routed(self, which: Callable[[str], bool], why: str) -> None:
        for routed_id, (target, _, _, unavailable) in list(self._routed.items()):
            if which(target):
                self._settle(routed_id, unavailable(why))

    def _serve(self, data: dict[str, Any], handler: Callable[[dict[str, Any]], Any]) -> None:
        """Another instance's request (an invoke for a node connected here, a decision on an
        approval held here): run ``handler`` and publish its outcome back."""
        reply_to = data["from"]

        def answer(outcome: Any) -> None:
            if isinstance(outcome, dict):
                message = {"k": "invoke.result", "id": data["id"], "ok": True, "result": outcome}
            else:
                error = outcome.value if isinstance(outcome.value, GatewayError) else GatewayError(UNAVAILABLE, str(outcome.value))
                shape = error.to_shape()
                message = {"k": "invoke.result", "id": data["id"], "ok": False, "error": {**shape}}
            self.publish(self.instance_channel(reply_to), message).addErrback(lambda failure: None)

        maybeDeferred(handler, data).addBoth(answer)

    @inlineCallbacks
    def _invoke_here(self, data: dict[str, Any]) -> Any:
        """The same checks ``node.invoke`` makes for a local node, then the invoke itself.

        A refusal is checked again after re-reading the node's pairing record: an approval made
        on another instance a moment ago may not have reached this one's memory yet.
        """
        from ..nodes import policy as node_policy
        from ..state.nodes import node_metadata

        node = self.local_nodes.local(data["node"]) if self.local_nodes is not None else None
        if node is None:
            raise node_unavailable("node not connected")
        command = data["command"]
        store = self.stores.get("nodes")

        def refusal() -> Any:
            approved = store.paired(node.node_id) if store is not None else None
            config = self.gateway.current_config()
            return node_policy.refusal(config, node_metadata(node.client), approved.get("commands") if approved else None, command)

        refused = refusal()
        if refused is not None and store is not None:
            yield store.refresh(node.node_id)
            refused = refusal()
        if refused is not None:
            raise GatewayError(INVALID_REQUEST, refused[1], {"reason": refused[0], "command": command})
        result = yield self.local_nodes.invoke_here(node, command, data.get("params"), data["timeoutMs"], data["idem"], data.get("extra") or {})
        return result

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "cluster": {
                "instanceId": self.instance_id,
                "schema": self.options.schema,
                "instances": sorted({self.instance_id} | self.live_instances),
                "bus": {
                    "connected": self.link.connected,
                    "redis": self.link.where,
                    "gaps": list(self.gaps),
                    "relayFailures": self.relay_failures,
                    "missedEvents": self.missed_events,
                },
                "routedInvokes": len(self._routed),
                "sessionLeases": len(self.leases.held) if self.leases is not None else 0,
            }
        }
