"""The gateway hub: the shared context that connections, methods and services work through.

It owns no sockets and no timers; services in the tree drive it and connections call into it.
Keeping it free of the reactor (only an injected clock) is what lets the whole protocol be tested
with ``task.Clock`` and in-memory transports.
"""
from __future__ import annotations

import uuid
from typing import Any
from collections.abc import Callable, Mapping

import attrs
import orjson
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from . import __version__
from .agents.catalog import Catalog
from .agents.dedupe import IdempotencyCache
from .agents.runs import RunManager
from .config import reload_plan as plan_actions
from .connection.handshake import Admission, Handshake
from .connection.limits import PreauthLimiter, RefusalLogBudget
from .approvals.policy_file import ExecApprovalsFile
from .approvals.service import ExecApprovals
from .methods.registry import MethodRegistry
from .protocol.constants import (
    ATTACHMENTS_MAX_BYTES, ATTACHMENTS_MAX_IMAGE_BYTES, SERVER_CAPABILITIES, SESSIONS_TOPIC, messages_topic,
)
from .protocol.errors import invalid_request
from .protocol.validation import ProtocolValidators
from .security.rate_limit import is_loopback
from .security.scopes import ADMIN
from .services.event_loop import EventLoopMonitor
from .services.pairing import DevicePairingService
from .services.reconfigure import ReconfigureStep, run_steps
from .sessions.keys import agent_id_of, canonical_session_key, main_session_key
from .settings import GatewaySettings
from .state.clients import ClientRegistry, ConnectedClient
from .state.diagnostics import StabilityRecord
from .state.health import HealthMonitor
from .state.process import ProcessMemory
from .state.status_cache import StatusCache
from .services.node_pairing import NodePairingService
from .state.metrics import GatewayMetrics
from .nodes import policy as node_policy
from .state.nodes import node_id_of, node_metadata
from .stores.sessions import SessionStore

# Client modes the reference CLI uses for one-shot RPC connections (logged at debug, not info).
ONE_SHOT_CLIENT_MODES = ("backend", "probe")

# Events this gateway emits; hello-ok advertises exactly these.
CORE_EVENTS = (
    "connect.challenge",
    "presence",
    "tick",
    "health",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
    "agent",
    "chat",
    "sessions.changed",
    "session.message",
    "config.changed",
    "heartbeat",
    "node.pair.requested",
    "node.pair.resolved",
    "node.hostStats",
    "exec.approval.requested",
    "exec.approval.resolved",
)


def _fresh(value: Any) -> Any:
    """A deep copy of plain JSON data, so a caller of ``hello_ok`` cannot alter the cached parts."""
    return orjson.loads(orjson.dumps(value))


def configure_rate_limiter(limiter: Any, settings: GatewaySettings) -> None:
    """Apply ``gateway.auth.rateLimit`` (at build and on a hot reload)."""
    limiter.configure(
        exempt_loopback=settings.rate_limit_exempt_loopback,
        max_attempts=settings.rate_limit.get("maxAttempts"),
        window_ms=settings.rate_limit.get("windowMs"),
        lockout_ms=settings.rate_limit.get("lockoutMs"),
    )


def _new_boot_id() -> str:
    return str(uuid.uuid4())


@attrs.define(eq=False, slots=False, kw_only=True)
class Gateway:
    """The hub: a record of the parts the composition root (:mod:`openclaw.wiring`) gives it.

    It builds nothing itself except the two views that are about the hub as a whole (the
    handshake and the metrics) and, when the root asks for one, the heartbeat service
    (``make_heartbeat``), which works through the hub too. The rest of its fields are runtime
    flags: ``accepting`` (the WebSocket service), ``sessions_loaded`` (the agents service).
    """

    _log = Logger()

    settings: GatewaySettings
    clock: IReactorTime
    instance_id: str
    validators: ProtocolValidators
    clients: ClientRegistry
    preauth: PreauthLimiter
    # Refused connects are logged, a few lines per address per minute (connection.limits).
    refusal_log: RefusalLogBudget
    rate_limiter: Any  # IRateLimiter: AuthRateLimiter, or the cluster's shared one
    process_memory: ProcessMemory
    # What `openclaw gateway stability` reads: runs, event-loop trouble, reloads, refusals.
    stability: StabilityRecord
    presence: Any  # IPresence
    catalog: Catalog
    health: HealthMonitor
    event_loop: EventLoopMonitor
    pairing: DevicePairingService
    sessions: SessionStore
    dedupe: IdempotencyCache[Any]  # shared by methods: each key prefix has its own value shape
    runs: RunManager
    node_pairing: NodePairingService
    nodes: Any  # INodeRegistry
    exec_approvals: ExecApprovals
    exec_approvals_file: ExecApprovalsFile
    # The method table (openclaw.methods.default_methods).
    methods: MethodRegistry
    # File reads (logs.tail, the Control UI's files) go through this executor: a worker thread in production.
    file_executor: Any
    log_file_path: str
    log_file: Any = None  # the log file service (services.log_file), when the tree has one
    config_control: Any = None  # the reload service, for the config.* methods, when there is one
    # "sha256:AA:..." of the served certificate when the listener uses TLS.
    tls_fingerprint: str | None = None
    make_heartbeat: Callable[[Gateway], Any] | None = attrs.field(default=None, repr=False)
    # The parts' own health section (cluster mode: instances, bus), which ``status`` shows too.
    extra_health: Callable[[], dict[str, Any]] | None = attrs.field(default=None, repr=False)
    version: str = __version__
    boot_id: str = attrs.field(factory=_new_boot_id)
    events: list[str] = attrs.field(factory=lambda: list(CORE_EVENTS))
    accepting: bool = True
    sessions_loaded: bool = False
    started_at_ms: int = attrs.field(init=False)
    handshake: Handshake = attrs.field(init=False)
    metrics: GatewayMetrics = attrs.field(init=False)
    heartbeat: Any = attrs.field(init=False)  # services.heartbeat.HeartbeatService, or None
    # ``status``'s answer, encoded once per change of what it shows (methods.system).
    status_cache: StatusCache = attrs.field(init=False, factory=StatusCache)
    # hello-ok's parts that every client gets: {"features" | "policy": (key, data, its JSON)}.
    _hello_cache: dict[str, tuple[Any, dict[str, Any], orjson.Fragment]] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.started_at_ms = self.now_ms()
        self.handshake = Handshake(self)
        self.metrics = GatewayMetrics(self)
        self.heartbeat = self.make_heartbeat(self) if self.make_heartbeat is not None else None

    def apply_settings(self, settings: GatewaySettings, actions: tuple[str, ...]) -> None:
        """Take a hot-reloaded config into use: each part the planner's ``actions`` name
        reconfigures itself, in the declared order (:meth:`reconfigure_steps`)."""
        self.settings = settings
        self.stability.record("config.reloaded", action=",".join(actions) or "none")
        run_steps(self.reconfigure_steps(), settings, actions)
        self.health.refresh()

    def reconfigure_steps(self) -> tuple[ReconfigureStep, ...]:
        """The parts' hot-reload steps, in ``reload_plan.ACTION_ORDER``.

        The catalog comes first: it is built before anything else changes, so a config that
        cannot load leaves the old catalog (and the other parts) as they were.
        """
        steps = [
            ReconfigureStep(plan_actions.RELOAD_CATALOG, "catalog", self._reload_catalog),
            ReconfigureStep(plan_actions.RELOAD_RATE_LIMIT, "rate-limiter", self._reconfigure_rate_limiter),
        ]
        if self.heartbeat is not None:
            steps.append(ReconfigureStep(plan_actions.RESTART_HEARTBEAT, "heartbeat", self.heartbeat.reconfigure))
        if self.log_file is not None:
            steps.append(ReconfigureStep(plan_actions.RELOAD_LOGGING, "log-file", self.log_file.reconfigure))
        return tuple(steps)

    def _reload_catalog(self, settings: GatewaySettings) -> None:
        self.catalog = Catalog.from_config(settings.config, settings.provider_env)

    def _reconfigure_rate_limiter(self, settings: GatewaySettings) -> None:
        configure_rate_limiter(self.rate_limiter, settings)

    def current_config(self) -> Mapping[str, Any]:
        """The config as it is now; HTTP enable flags are read from here on every request."""
        return self.settings.config

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def uptime_ms(self) -> int:
        return max(0, self.now_ms() - self.started_at_ms)

    def failing_checks(self) -> list[str]:
        """Names of readiness checks that fail (``/readyz``)."""
        failing = []
        if not self.accepting:
            failing.append("shutting-down")
        if not self.pairing.loaded:
            failing.append("device-store")
        if not self.sessions_loaded:
            failing.append("session-store")
        if not self.node_pairing.loaded:
            failing.append("node-store")
        return failing

    # -- snapshots ---------------------------------------------------------------------------

    def session_defaults(self) -> dict[str, Any]:
        agent_id = self.catalog.default_agent_id
        return {
            "defaultAgentId": agent_id,
            "mainKey": self.catalog.main_key,
            "mainSessionKey": main_session_key(agent_id, self.catalog.main_key),
            "scope": self.catalog.scope,
        }

    def session_key(self, raw: str, agent_id: str | None = None) -> str:
        """The canonical store key for a key a client sent (protocol §10)."""
        try:
            return canonical_session_key(
                raw, agent_id=agent_id, default_agent_id=self.catalog.default_agent_id, main_key=self.catalog.main_key
            )
        except ValueError as exc:
            raise invalid_request(str(exc)) from None

    def model_defaults(self, agent_id: str | None = None) -> dict[str, Any]:
        """``{modelProvider, model, contextTokens}`` an agent's runs use unless a session overrides."""
        refs = self.catalog.candidates(agent_id)
        target = self.catalog.resolve(refs[0]) if refs else None
        if target is None:
            return {"modelProvider": None, "model": None, "contextTokens": None}
        return {
            "modelProvider": target.provider.id,
            "model": target.model.id,
            "contextTokens": target.model.context_window,
        }

    def core_health(self) -> dict[str, Any]:
        summary = self.sessions.summary(self.now_ms())
        sessions = {"path": self.sessions.path, "count": summary.count, "recent": summary.recent}
        default_id = self.catalog.default_agent_id
        heartbeat_state: dict[str, Any] = (
            self.heartbeat.summary() if self.heartbeat is not None else {"enabled": False, "every": "off", "everyMs": 0}
        )
        return {
            "heartbeatSeconds": (heartbeat_state.get("everyMs") or 0) // 1000 if heartbeat_state.get("enabled") else 0,
            "agents": [
                {
                    "agentId": entry.id,
                    "isDefault": entry.id == default_id,
                    "heartbeat": heartbeat_state if entry.id == default_id else {"enabled": False, "every": "off", "everyMs": 0},
                    "sessions": sessions
                    if entry.id == default_id
                    else {"path": self.sessions.path, "count": 0, "recent": []},
                }
                for entry in self.catalog.agents
            ],
            "sessions": sessions,
            "runs": {"active": self.runs.active_count, "queued": self.runs.queued_count},
            "configReload": self.config_reload_state(),
            "eventLoop": self.event_loop.summary(),
        }

    def config_reload_state(self) -> dict[str, Any]:
        control = self.config_control
        if control is None:
            return {"mode": "off", "watching": False}
        return {
            "mode": self.settings.reload_mode,
            "watching": True,
            "path": control.path,
            "hash": control.snapshot.hash,
            "lastDecision": control.last_decision,
        }

    def state_version(self) -> dict[str, int]:
        return {"presence": self.presence.version, "health": self.health.version}

    def snapshot(self, client: ConnectedClient, *, encoded: bool = False) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "presence": self.presence.entries(),
            # Encoded once per health snapshot (rebuilt at most every 2 s), not on every connect.
            "health": self.health.current_json() if encoded else self.health.current(),
            "stateVersion": self.state_version(),
            "uptimeMs": self.uptime_ms(),
            "sessionDefaults": self.session_defaults(),
            "authMode": self.settings.auth.mode,
            "suspension": {"phase": "accepting" if self.accepting else "draining"},
        }
        if ADMIN in client.scopes:
            snapshot["stateDir"] = self.settings.state_dir
            if self.settings.config_path:
                snapshot["configPath"] = self.settings.config_path
        return snapshot

    def hello_ok(self, client: ConnectedClient, admission: Admission) -> dict[str, Any]:
        """hello-ok as plain data (what tests and tools inspect)."""
        return self._hello(client, admission, encoded=False)

    def hello_ok_for_wire(self, client: ConnectedClient, admission: Admission) -> dict[str, Any]:
        """hello-ok for ``orjson.dumps``: the same bytes as :meth:`hello_ok`, but the parts every
        client gets (features, policy, the health snapshot) are pre-encoded ``orjson.Fragment``s."""
        return self._hello(client, admission, encoded=True)

    def _hello(self, client: ConnectedClient, admission: Admission, *, encoded: bool) -> dict[str, Any]:
        auth: dict[str, Any] = {"method": admission.auth_method, "role": client.role, "scopes": list(admission.scopes)}
        if admission.device_token is not None:
            auth["deviceToken"] = admission.device_token.token
            auth["issuedAtMs"] = admission.device_token.issued_at_ms
        features, policy = self._hello_features(), self._hello_policy()
        return {
            "type": "hello-ok",
            "protocol": admission.protocol,
            "server": {"version": self.version, "bootId": self.boot_id, "connId": client.conn_id},
            "features": features[1] if encoded else features[0],
            "snapshot": self.snapshot(client, encoded=encoded),
            "auth": auth,
            "policy": policy[1] if encoded else policy[0],
        }

    def _hello_features(self) -> tuple[dict[str, Any], orjson.Fragment]:
        """hello-ok's ``features``, the same for every client: built and encoded once, again only
        when the method registry or the event list changes (the key), so one entry is all it holds."""
        key = (self.methods.version, tuple(self.events))
        cached = self._hello_cache.get("features")
        if cached is None or cached[0] != key:
            features = {
                "methods": self.methods.advertised(),
                "events": list(self.events),
                "capabilities": list(SERVER_CAPABILITIES),
            }
            cached = self._hello_cache["features"] = (key, features, orjson.Fragment(orjson.dumps(features)))
        return _fresh(cached[1]), cached[2]

    def _hello_policy(self) -> tuple[dict[str, Any], orjson.Fragment]:
        """hello-ok's ``policy``, encoded once per value of the settings it shows (a reload may change them)."""
        settings = self.settings
        key = (settings.max_payload, settings.max_buffered_bytes, settings.tick_interval_ms)
        cached = self._hello_cache.get("policy")
        if cached is None or cached[0] != key:
            policy = {
                "maxPayload": key[0],
                "maxBufferedBytes": key[1],
                "tickIntervalMs": key[2],
                "attachments": {"maxBytes": ATTACHMENTS_MAX_BYTES, "maxImageBytes": ATTACHMENTS_MAX_IMAGE_BYTES},
            }
            cached = self._hello_cache["policy"] = (key, policy, orjson.Fragment(orjson.dumps(policy)))
        return _fresh(cached[1]), cached[2]

    # -- connection lifecycle ----------------------------------------------------------------

    @staticmethod
    def presence_key(client: ConnectedClient) -> str:
        return client.instance_id or client.device_id or client.conn_id

    def client_admitted(self, client: ConnectedClient) -> None:
        self.clients.add(client)
        self.exec_approvals.client_joined(client)
        if client.in_presence:
            self._enter_presence(client)
        if client.role == "node":
            self._node_connected(client)
        # The reference CLI opens a short "backend"/"probe" connection per RPC: `openclaw logs
        # --follow` polls once a second, so logging those at info would make the log it follows
        # grow by a line per poll. They go to debug; interactive clients and nodes stay at info.
        emit = self._log.debug if client.mode in ONE_SHOT_CLIENT_MODES else self._log.info
        # Formatted here, once: every observer (twistd's text log, our JSON file) formats each
        # event again, and Twisted's formatter is string.Formatter in pure Python (~10 µs per
        # field-laden line each time), half a handshake's server time. A literal format costs it
        # almost nothing; the facts stay in the event as fields for the JSON observers.
        line = f"{client.role} {client.client_id} connected from {client.remote_ip} (conn {client.conn_id}, auth {client.auth_method})"
        emit(
            line.replace("{", "{{").replace("}", "}}"),
            role=client.role,
            client_id=client.client_id,
            ip=client.remote_ip,
            conn_id=client.conn_id,
            auth=client.auth_method,
        )

    def _enter_presence(self, client: ConnectedClient) -> None:
        info = client.client
        self.presence.client_connected(
            self.presence_key(client),
            client.conn_id,
            {
                "host": info.get("displayName") or info.get("id"),
                "clientId": info.get("id"),
                "ip": client.remote_ip,
                "version": info.get("version"),
                "platform": info.get("platform"),
                "deviceFamily": info.get("deviceFamily"),
                "modelIdentifier": info.get("modelIdentifier"),
                "timeZone": info.get("timeZone"),
                "mode": info.get("mode"),
                "instanceId": info.get("instanceId"),
                "deviceId": client.device_id,
                "roles": [client.role],
                "scopes": sorted(client.scopes),
                "onlineSince": client.connected_at_ms,
            },
        )
        self.broadcast_presence()

    def client_left(self, client: ConnectedClient) -> None:
        if self.clients.remove(client.conn_id) is None:
            return
        self.runs.connection_lost(client.conn_id)
        self.exec_approvals.client_gone(client)
        if client.role == "node":
            self.nodes.disconnected(client)
        if client.in_presence and self.presence.client_disconnected(self.presence_key(client), client.conn_id):
            self.broadcast_presence()

    def broadcast_presence(self) -> None:
        self.presence.bump()
        self.clients.broadcast(
            "presence",
            {"presence": self.presence.entries()},
            drop_if_slow=True,
            state_version=self.state_version(),
        )

    def broadcast_health(self) -> None:
        snapshot, _ = self.health.refresh()
        self.clients.broadcast("health", snapshot, state_version=self.state_version())

    # -- nodes -------------------------------------------------------------------------------

    node_id_for = staticmethod(node_id_of)

    def _node_connected(self, client: ConnectedClient) -> None:
        """Register the node; a command surface not yet approved becomes a pairing request."""
        self.nodes.connected(client)
        metadata = node_metadata(client)
        metadata["commands"] = node_policy.requestable(self.current_config(), metadata)
        d = self.node_pairing.node_connected(metadata, local=is_loopback(client.remote_ip))
        d.addErrback(lambda failure: self._log.failure("node pairing for {node} failed", failure, node=metadata["nodeId"]))

    def broadcast_event(self, event: str, payload: Mapping[str, Any]) -> None:
        self.clients.broadcast(event, payload)
        if event == "chat" and payload.get("state") == "final" and isinstance(payload.get("message"), Mapping):
            self._session_message(payload["sessionKey"], payload["runId"], payload["message"])

    def _session_message(self, session_key: str, run_id: str, message: Mapping[str, Any]) -> None:
        """``session.message`` to connections watching this transcript (sessions.messages.subscribe).

        The message names its run, so a UI that streamed the run replaces its draft instead of
        showing the answer twice.
        """
        self.clients.broadcast(
            "session.message",
            {"sessionKey": session_key, "agentId": agent_id_of(session_key), "message": {**message, "__openclaw": {"runId": run_id}}},
            topic=messages_topic(session_key),
        )

    def run_event(self, event: str, payload: Mapping[str, Any]) -> None:
        """Run events go to clients; their lifecycle also goes to the stability record."""
        if event == "agent":
            self.stability.run_event(payload)
        self.broadcast_event(event, payload)

    def auth_failed(self, kind: str) -> None:
        self.metrics.auth_failed(kind)
        self.stability.record("auth.failed", level="warn", reason=kind)

    def event_loop_changed(self, degraded: bool, p99_ms: float) -> None:
        self.stability.record(
            "eventLoop.degraded" if degraded else "eventLoop.recovered", level="warn" if degraded else None,
            reason="event-loop-delay" if degraded else None, delayP99Ms=round(p99_ms, 1),
        )

    def sessions_changed(self, session_key: str, reason: str, **extra: Any) -> None:
        """Tell session lists a row changed (created, patched, reset, deleted, run started/ended)."""
        payload: dict[str, Any] = {"sessionKey": session_key, "agentId": agent_id_of(session_key), "reason": reason}
        payload.update(extra)
        payload["ts"] = self.now_ms()
        self.clients.broadcast("sessions.changed", payload, topic=SESSIONS_TOPIC)

    def reset_session(self, session_key: str, reason: str = "reset", expect: Mapping[str, Any] | None = None) -> Any:
        """Abort anything running in the session, then start it over with a new sessionId."""
        self.runs.abort(session_key, reason="session-reset")
        d = self.sessions.reset(session_key, self.now_ms(), reason=reason, expect=expect)

        def announce(entry: dict[str, Any]) -> dict[str, Any]:
            self.sessions_changed(session_key, reason=reason)
            return entry

        return d.addCallback(announce)

    def broadcast_tick(self) -> None:
        self.clients.broadcast("tick", {"ts": self.now_ms()}, drop_if_slow=True)
