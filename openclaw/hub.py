"""The shape of the gateway hub, for the modules that work through it.

Connections, methods, services and the HTTP app need the hub's parts (settings, clock, stores,
live state) and a few of its actions (admit a client, broadcast, resolve a session key), not the
class that holds them. They type against :class:`GatewayHub`, a ``typing.Protocol`` declared
here, in a module that imports nothing that imports it back; only the composition root
(:mod:`openclaw.tap`) and its tests know the concrete ``openclaw.gateway.Gateway``. That keeps
the import graph acyclic, type-only imports included.

Parts whose classes themselves work through the hub (the handshake, the method registry, the
metrics) are ``Any`` here for that reason.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from .agents.catalog import Catalog
    from .agents.dedupe import IdempotencyCache
    from .approvals.policy_file import ExecApprovalsFile
    from .approvals.service import ExecApprovals
    from .connection.limits import PreauthLimiter, RefusalLogBudget
    from .protocol.validation import ProtocolValidators
    from .services.event_loop import EventLoopMonitor
    from .services.node_pairing import NodePairingService
    from .services.pairing import DevicePairingService
    from .settings import GatewaySettings
    from .state.clients import ClientRegistry, ConnectedClient
    from .state.diagnostics import StabilityRecord
    from .state.health import HealthMonitor
    from .state.process import ProcessMemory


class GatewayHub(Protocol):
    """What the gateway's collaborators may use of the hub (``openclaw.gateway.Gateway``)."""

    settings: GatewaySettings
    clock: IReactorTime
    version: str
    boot_id: str
    instance_id: str
    accepting: bool
    tls_fingerprint: str | None
    validators: ProtocolValidators
    clients: ClientRegistry
    preauth: PreauthLimiter
    refusal_log: RefusalLogBudget
    rate_limiter: Any  # security.rate_limit.AuthRateLimiter or a cluster-wide one (seams)
    process_memory: ProcessMemory
    stability: StabilityRecord
    presence: Any  # seams.IPresence
    catalog: Catalog
    health: HealthMonitor
    event_loop: EventLoopMonitor
    pairing: DevicePairingService
    sessions: Any  # seams.ISessionStore
    sessions_loaded: bool
    dedupe: IdempotencyCache[Any]  # shared by methods: each key prefix has its own value shape
    runs: Any  # agents.runs.RunManager
    heartbeat: Any  # services.heartbeat.HeartbeatService, or None
    log_file: Any  # services.log_file.GatewayLogFile, or None
    log_file_path: str
    config_control: Any  # services.reload.ConfigReloader, or None
    node_pairing: NodePairingService
    nodes: Any  # seams.INodeRegistry
    exec_approvals: ExecApprovals
    exec_approvals_file: ExecApprovalsFile
    handshake: Any  # connection.handshake.Handshake
    methods: Any  # methods.registry.MethodRegistry
    events: list[str]
    metrics: Any  # state.metrics.GatewayMetrics
    file_executor: Any

    def node_id_for(self, client: ConnectedClient, /) -> str: ...

    def apply_settings(self, settings: GatewaySettings, actions: tuple[str, ...]) -> None: ...

    def current_config(self) -> Mapping[str, Any]: ...

    def now_ms(self) -> int: ...

    def uptime_ms(self) -> int: ...

    def failing_checks(self) -> list[str]: ...

    def session_defaults(self) -> dict[str, Any]: ...

    def session_key(self, raw: str, agent_id: str | None = None) -> str: ...

    def model_defaults(self, agent_id: str | None = None) -> dict[str, Any]: ...

    def state_version(self) -> dict[str, int]: ...

    def snapshot(self, client: ConnectedClient, *, encoded: bool = False) -> dict[str, Any]: ...

    def hello_ok(self, client: ConnectedClient, admission: Any) -> dict[str, Any]: ...

    def hello_ok_for_wire(self, client: ConnectedClient, admission: Any) -> dict[str, Any]: ...

    def client_admitted(self, client: ConnectedClient) -> None: ...

    def client_left(self, client: ConnectedClient) -> None: ...

    def broadcast_presence(self) -> None: ...

    def broadcast_health(self) -> None: ...

    def broadcast_event(self, event: str, payload: Mapping[str, Any]) -> None: ...

    def broadcast_tick(self) -> None: ...

    def sessions_changed(self, session_key: str, reason: str, **extra: Any) -> None: ...

    def reset_session(self, session_key: str, reason: str = "reset", expect: Mapping[str, Any] | None = None) -> Any: ...
