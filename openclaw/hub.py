"""The shape of the gateway hub, for the modules that work through it.

Connections, methods, services and the HTTP app need the hub's parts (settings, clock, stores,
live state) and a few of its actions (admit a client, broadcast, resolve a session key), not the
class that holds them. They type against :class:`GatewayHub`, a ``typing.Protocol`` declared
here, in a module that imports nothing that imports it back; only the composition root
(:mod:`openclaw.tap`) and its tests know the concrete ``openclaw.gateway.Gateway``. That keeps
the import graph acyclic, type-only imports included.

Parts whose classes themselves work through the hub (the handshake, the method registry, the
metrics, the heartbeat) would import this module back: for them this module declares the little
of each that is used through the hub (:class:`Admitter`, :class:`MethodTable`,
:class:`MetricsSink`, :class:`Heartbeat`). The parts that differ between a single process and a
cluster are typed by their seams (:mod:`openclaw.seams`). Those members are read-only properties
here, so the hub may hold a more specific class than the one declared.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from collections.abc import Callable, Mapping

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime

    from .agents.catalog import Catalog
    from .agents.dedupe import IdempotencyCache
    from .agents.runs import RunManager
    from .approvals.policy_file import ExecApprovalsFile
    from .approvals.service import ExecApprovals
    from .connection.limits import PreauthLimiter, RefusalLogBudget
    from .protocol.validation import ProtocolValidators
    from .seams import IAuthRateLimiter, INodeRegistry, IPresence, ISessionStore
    from .services.event_loop import EventLoopMonitor
    from .services.log_file import GatewayLogFile
    from .services.node_pairing import NodePairingService
    from .services.pairing import DevicePairingService
    from .services.reload import ConfigReloader
    from .settings import GatewaySettings
    from .state.clients import ClientRegistry, ConnectedClient
    from .state.diagnostics import StabilityRecord
    from .state.health import HealthMonitor
    from .state.process import ProcessMemory
    from .state.status_cache import StatusCache
    from .stores.sqlite import Executor


class Admitter(Protocol):
    """The handshake (``connection.handshake.Handshake``): admits a ``connect`` request."""

    # params: the connect request's, already checked against its schema by the caller.
    def admit(self, info: Any, params: Any) -> Deferred[Any]: ...


class MethodTable(Protocol):
    """The method registry (``methods.registry.MethodRegistry``) as the hub's users call it."""

    def get(self, name: str) -> object | None: ...

    def run(self, context: Any) -> Any: ...


class MetricsSink(Protocol):
    """The Prometheus metrics (``state.metrics.GatewayMetrics``)."""

    def request_done(self, method: str, outcome: str, seconds: float) -> None: ...

    def events_delivered(self, event: str, sent: int, dropped: int) -> None: ...

    def auth_failed(self, kind: str) -> None: ...

    def render(self) -> bytes: ...


class Heartbeat(Protocol):
    """The heartbeat service (``services.heartbeat.HeartbeatService``), as its methods use it."""

    enabled: bool

    @property
    def last(self) -> dict[str, Any] | None: ...

    def summary(self) -> dict[str, Any]: ...

    def run_once(self) -> Deferred[dict[str, Any]]: ...


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
    process_memory: ProcessMemory
    stability: StabilityRecord
    catalog: Catalog
    health: HealthMonitor
    event_loop: EventLoopMonitor
    pairing: DevicePairingService
    sessions_loaded: bool
    dedupe: IdempotencyCache[Any]  # shared by methods: each key prefix has its own value shape
    runs: RunManager
    log_file_path: str
    node_pairing: NodePairingService
    exec_approvals: ExecApprovals
    exec_approvals_file: ExecApprovalsFile
    events: list[str]
    status_cache: StatusCache

    @property
    def extra_health(self) -> Callable[[], dict[str, Any]] | None: ...

    def node_id_for(self, client: ConnectedClient, /) -> str: ...

    # Read-only: the hub may hold a more specific class (or, for the seams, either kind).
    @property
    def rate_limiter(self) -> IAuthRateLimiter: ...

    @property
    def presence(self) -> IPresence: ...

    @property
    def sessions(self) -> ISessionStore: ...

    @property
    def nodes(self) -> INodeRegistry: ...

    @property
    def heartbeat(self) -> Heartbeat | None: ...

    @property
    def log_file(self) -> GatewayLogFile | None: ...

    @property
    def config_control(self) -> ConfigReloader | None: ...

    @property
    def handshake(self) -> Admitter: ...

    @property
    def methods(self) -> MethodTable: ...

    @property
    def metrics(self) -> MetricsSink: ...

    @property
    def file_executor(self) -> Executor: ...

    def apply_settings(self, settings: GatewaySettings, actions: tuple[str, ...]) -> None: ...

    def current_config(self) -> Mapping[str, Any]: ...

    def now_ms(self) -> int: ...

    def uptime_ms(self) -> int: ...

    def failing_checks(self) -> list[str]: ...

    def config_reload_state(self) -> dict[str, Any]: ...

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
