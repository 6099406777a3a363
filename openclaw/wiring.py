"""Where the gateway's parts are built and connected: the one composition root for the hub.

``tap.build_tree`` (production: SQLite stores on worker threads, treq, the real reactor) and the
tests (``tests/support/gateway.py``: inline stores, ``task.Clock``) both build their gateway
through :func:`build_gateway`, so the two cannot drift. ``Gateway`` itself is a record of what it
is given; the callbacks between parts (run events, the event-loop monitor, delivery counts, auth
failures, health contributors) are connected here too.

Parts that read the hub's *current* settings or catalog (both change on a hot reload) get a
small function that reads them from the hub when called, not a copy taken at build time.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable, Mapping

from .agents.catalog import Catalog
from .agents.dedupe import IdempotencyCache
from .agents.runs import RunManager
from .approvals.policy_file import ExecApprovalsFile
from .approvals.service import ExecApprovals
from .connection.limits import PreauthLimiter, RefusalLogBudget
from .gateway import Gateway, configure_rate_limiter
from .methods import default_methods
from .protocol.validation import ProtocolValidators
from .parts import GatewayParts, local_parts
from .security.rate_limit import AuthRateLimiter
from .services.event_loop import EventLoopMonitor
from .services.log_file import default_log_path
from .services.node_pairing import NodePairingService
from .services.pairing import DevicePairingService
from .settings import GatewaySettings
from .state.clients import ClientRegistry
from .state.diagnostics import StabilityRecord
from .state.health import HealthMonitor
from .state.process import ProcessMemory


def build_gateway(
    clock: Any,
    settings: GatewaySettings,
    *,
    device_store: Any,
    session_store: Any,
    node_store: Any,
    model_client: Any,
    file_executor: Any,
    parts: GatewayParts | None = None,
    log_file: Any = None,
    config_control: Any = None,
    make_heartbeat: Callable[[Gateway], Any] | None = None,
    tls_fingerprint: str | None = None,
) -> Gateway:
    """A gateway hub on ``clock`` with the given stores, model client and file executor.

    ``parts`` chooses the single-process or cluster implementations of the seams
    (:mod:`openclaw.seams`); ``make_heartbeat`` builds the heartbeat service from the hub.
    """
    parts = parts if parts is not None else local_parts()
    hub = _HubReader()
    clients = ClientRegistry(relay=parts.relay)
    gateway = Gateway(
        settings=settings,
        clock=clock,
        instance_id=parts.instance_id,
        validators=ProtocolValidators(),
        clients=clients,
        preauth=PreauthLimiter(settings.max_preauth_per_ip),
        refusal_log=RefusalLogBudget(clock),
        rate_limiter=parts.rate_limiter(clock) if parts.rate_limiter is not None else AuthRateLimiter(clock),
        **_live_state(clock, settings, parts),
        pairing=DevicePairingService(
            device_store, clock, clients, auto_approve_local=hub.auto_approve_local
        ),
        sessions=session_store,
        dedupe=parts.dedupe(clock) if parts.dedupe is not None else IdempotencyCache(clock),
        runs=RunManager(
            clock, session_store, hub.catalog, model_client, hub.run_event, hub.sessions_changed, leases=parts.leases
        ),
        node_pairing=NodePairingService(node_store, clock, clients.broadcast),
        nodes=parts.nodes(clock),
        exec_approvals=parts.approvals(clock, clients) if parts.approvals is not None else ExecApprovals(clock, clients),
        exec_approvals_file=ExecApprovalsFile(settings.state_dir, file_executor),
        methods=default_methods(file_executor),
        file_executor=file_executor,
        log_file_path=default_log_path(settings.state_dir),
        log_file=log_file,
        config_control=config_control,
        make_heartbeat=make_heartbeat,
        tls_fingerprint=tls_fingerprint,
        extra_health=parts.health,
    )
    hub.gateway = gateway
    _connect(gateway, parts)
    return gateway


class _HubReader:
    """For parts built before the hub: reads its current settings and catalog (a hot reload
    replaces both) and hands run events to it, when called."""

    gateway: Gateway

    def auto_approve_local(self) -> bool:
        return self.gateway.settings.auto_approve_local

    def catalog(self) -> Catalog:
        return self.gateway.catalog

    def run_event(self, event: str, payload: Mapping[str, Any]) -> None:
        self.gateway.run_event(event, payload)

    def sessions_changed(self, session_key: str, reason: str, **extra: Any) -> None:
        self.gateway.sessions_changed(session_key, reason, **extra)


def _live_state(clock: Any, settings: GatewaySettings, parts: GatewayParts) -> dict[str, Any]:
    """Presence, health, stability, the catalog: the in-memory state the hub reports from."""
    from . import __version__

    process_memory = ProcessMemory(clock)
    stability = StabilityRecord(clock, memory=process_memory.current)
    stability.record("gateway.started", version=__version__)
    presence = parts.presence(
        clock, version=__version__, instance_id=parts.instance_id, ip="127.0.0.1" if settings.bind == "loopback" else None
    )
    catalog = Catalog.from_config(settings.config, settings.provider_env)
    return {
        "process_memory": process_memory,
        "stability": stability,
        "presence": presence,
        "catalog": catalog,
        "health": HealthMonitor(clock, default_agent_id=catalog.default_agent_id),
        "event_loop": EventLoopMonitor(clock),
    }


def _connect(gateway: Gateway, parts: GatewayParts) -> None:
    """The callbacks between the hub's parts."""
    configure_rate_limiter(gateway.rate_limiter, gateway.settings)
    gateway.event_loop.on_change = gateway.event_loop_changed
    gateway.clients.on_delivery = gateway.metrics.events_delivered
    gateway.rate_limiter.on_failure = gateway.auth_failed
    gateway.health.add_contributor(gateway.core_health)
    if parts.health is not None:
        gateway.health.add_contributor(parts.health)
