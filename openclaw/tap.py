"""``twistd openclaw``: command-line options and the service tree.

``makeService`` returns a named ``MultiService``; an application embedding the gateway adds that
same tree to its own service. Start order is the order below (state first: pairing, agents; listeners last) and
Twisted stops in reverse, so the port closes first and the state is written last.
"""
from __future__ import annotations

from functools import partial

import os
from typing import Any
from collections.abc import Callable, Mapping

import treq.client
from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger, LogLevel
from twisted.python import usage
from twisted.web.client import Agent

from .banner import log_banner
from .config.accepted import unused_paths
from .config.loader import ConfigError, lookup
from .config.overrides import masked_paths
from .config.reload_plan import listing
from .connection.factory import GatewayWebSocketFactory
from .gateway import Gateway
from .wiring import build_gateway
from .http.app import GatewayHttpApp
from .http.site import GatewayRootResource, GatewaySite
from .protocol.constants import DEFAULT_PORT
from .providers.client import ModelClient
from .providers.pool import QuietConnectionPool
from .services.agents import AgentService
from .services.heartbeat import HeartbeatService
from .services.listener import EndpointListener
from .services.log_file import GatewayLogFile, default_log_path, log_level_name
from .services.maintenance import PeriodicBroadcast
from .services.reload import ConfigReloader
from .services.runtime import ExecutorService, GatewayRuntime, OrderedMultiService, exit_status_at_exit
from .services.websocket import WebSocketService
from .settings import GatewaySettings, read_config, resolve_settings
from .stores import devices, nodes, sessions
from .stores.preflight import GatewayStartError, check_state
from .stores.sqlite import InlineExecutor, SQLiteDatabase, ThreadExecutor
from .tls import certificates as tls_certificates
from .tls import server as tls_server

DEVICE_DB_NAME = "devices.sqlite"
SESSION_DB_NAME = "sessions.sqlite"
NODE_DB_NAME = "nodes.sqlite"
UPSTREAM_CONNECT_TIMEOUT_S = 10
# Opened and loaded inline before the reactor runs (stores.preflight): (name in messages, file, opener).
STORES = (
    ("device store", DEVICE_DB_NAME, lambda path: devices.DeviceStore(_inline(path, devices.MIGRATIONS))),
    (
        "session store",
        SESSION_DB_NAME,
        lambda path: sessions.SessionStore(_inline(path, sessions.MIGRATIONS), os.path.dirname(path)),
    ),
    ("node store", NODE_DB_NAME, lambda path: nodes.NodeStore(_inline(path, nodes.MIGRATIONS))),
)


def _inline(path: str, migrations: Any) -> SQLiteDatabase:
    return SQLiteDatabase(path, migrations, InlineExecutor())
_log = Logger(namespace="openclaw.tap")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the OpenClaw gateway: WebSocket control plane and HTTP API on one port. "
        "Settings come from the command line, then the environment (OPENCLAW_GATEWAY_TOKEN, "
        "OPENCLAW_GATEWAY_PASSWORD, OPENCLAW_GATEWAY_PORT, OPENCLAW_CONFIG_PATH, OPENCLAW_STATE_DIR, "
        "OPENCLAW_CONTROL_UI_ROOT), "
        "then the JSON5 config file."
    )
    optParameters = [
        ["port", "p", None, f"TCP port for WebSocket and HTTP [default: {DEFAULT_PORT}]", int],
        ["bind", "b", None, "loopback (127.0.0.1 and ::1), lan (0.0.0.0), or an interface address"],
        ["auth", None, None, "auth mode: none, token or password [default: token if a token is set]"],
        ["token", "t", None, "shared gateway token (or OPENCLAW_GATEWAY_TOKEN)"],
        ["password", None, None, "shared gateway password (or OPENCLAW_GATEWAY_PASSWORD)"],
        ["model", "m", None, "default model as provider/model, e.g. openai/gpt-4.1-mini [or agents.defaults.model]"],
        ["state-dir", None, None, "state directory [default: ~/.openclaw or OPENCLAW_STATE_DIR]"],
        ["config", "c", None, "JSON5 config file [default: <state-dir>/openclaw.json or OPENCLAW_CONFIG_PATH]"],
        ["tls-cert", None, None, "PEM certificate (chain) to serve TLS with; needs --tls-key [or gateway.tls.certPath]"],
        ["tls-key", None, None, "PEM private key for --tls-cert [or gateway.tls.keyPath]"],
        [
            "control-ui-root",
            None,
            None,
            "the built Control UI to serve (an installed openclaw package's dist/control-ui) "
            "[or OPENCLAW_CONTROL_UI_ROOT, gateway.controlUi.root]",
        ],
        ["cluster-postgres", None, None, "cluster mode: PostgreSQL connection string (or OPENCLAW_CLUSTER_POSTGRES); needs --cluster-redis"],
        ["cluster-redis", None, None, "cluster mode: redis://host:port/db (or OPENCLAW_CLUSTER_REDIS); needs --cluster-postgres"],
        ["cluster-schema", None, None, "cluster mode: PostgreSQL schema and Redis key prefix [default: openclaw]"],
        ["cluster-instance-id", None, None, "cluster mode: this instance's id [default: host-pid-random]"],
    ]
    optFlags = [
        ["reuse-port", None, "listen with SO_REUSEPORT so several gateway processes share the port"],
    ]

    def postOptions(self) -> None:
        try:
            # Read once: makeService hands this same snapshot to the reloader, so what runs and
            # what the reloader compares edits against cannot come from two different reads.
            self["config-snapshot"] = snapshot = read_config(self)
            self["settings"] = settings = resolve_settings(self, snapshot=snapshot)
            _pidfile_in_state_dir(getattr(self, "parent", None), settings.state_dir)
            if settings.tls_enabled:
                _tls_material(settings)  # a bad certificate file is a usage error, not a traceback
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        self["cluster"] = _cluster_options(self, os.environ)


def _cluster_options(options: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Cluster options (None in the default single-process mode); only then is cluster code imported."""
    if not any(options.get(name) for name in ("cluster-postgres", "cluster-redis")) and not any(
        env.get(name) for name in ("OPENCLAW_CLUSTER_POSTGRES", "OPENCLAW_CLUSTER_REDIS")
    ):
        return None
    from .cluster.options import ClusterConfigError, cluster_options

    try:
        return cluster_options(options, env)
    except ClusterConfigError as exc:
        raise usage.UsageError(str(exc)) from None


TWISTD_DEFAULT_PIDFILE = "twistd.pid"


def _pidfile_in_state_dir(twistd_options: Any, state_dir: str) -> None:
    """Move twistd's default ``./twistd.pid`` to ``<state-dir>/twistd.pid``.

    The default litters whatever directory the gateway was started from and makes a second
    gateway started there (with another state dir) refuse to run. In the state dir it guards
    what it should: two gateways sharing one state. ``--pidfile=PATH`` (other than the bare
    default name) and ``--pidfile=`` (none) are left alone. Runs at option parsing, before twistd
    checks or writes the file, so the directory is created here.
    """
    if twistd_options is None or twistd_options.get("pidfile") != TWISTD_DEFAULT_PIDFILE:
        return
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    twistd_options["pidfile"] = os.path.join(state_dir, TWISTD_DEFAULT_PIDFILE)


def _settings_from(options: Mapping[str, Any], env: Mapping[str, str]) -> tuple[GatewaySettings, Any]:
    """The settings and the config snapshot they were resolved from (one read of the file)."""
    settings, snapshot = options.get("settings"), options.get("config-snapshot")
    if isinstance(settings, GatewaySettings) and snapshot is not None:
        return settings, snapshot
    snapshot = read_config(options, env)
    return resolve_settings(options, env, snapshot), snapshot


def _tls_material(settings: GatewaySettings) -> tuple[bytes, bytes, Any]:
    """Certificate and key PEM for the listener (read, or created once under ``<state-dir>/tls``)."""
    return tls_certificates.load_or_create_certificate(
        settings.state_dir, settings.tls_cert_path, settings.tls_key_path, auto_generate=settings.tls_auto_generate
    )


def _endpoint(reactor: Any, port: int, interface: str, reuse_port: bool = False) -> Any:
    if reuse_port:
        from .cluster.reuseport import ReusePortEndpoint

        return ReusePortEndpoint(reactor, port, interface)
    if ":" in interface:
        return TCP6ServerEndpoint(reactor, port, interface=interface)
    return TCP4ServerEndpoint(reactor, port, interface=interface)


def _log_level(config: Mapping[str, Any]) -> str:
    return log_level_name(lookup(config, "logging.level", "info"))


class Listeners(OrderedMultiService):
    """The port's listeners; ``on_started`` runs once they all listen (the TLS fingerprint line)."""

    def __init__(self, on_started: Callable[[], None] | None = None):
        super().__init__()
        self._on_started = on_started

    def startService(self) -> Deferred[None]:
        return super().startService().addCallback(self._started)

    def _started(self, _: None) -> None:
        if self._on_started is not None:
            self._on_started()


def build_tree(
    reactor: Any, settings: GatewaySettings, cluster: Any = None, reuse_port: bool = False, config_control: Any = None
) -> tuple[Gateway, list[Any]]:
    """A gateway and its services, in start order (state first, listeners last).

    With ``cluster`` (ClusterOptions) the stores live on PostgreSQL and presence, nodes and
    events are shared over Redis (openclaw/cluster); otherwise everything is local, as always.
    ``config_control`` is the reload service the config.* methods talk to, when there is one.
    """
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    cluster_wiring, stores = _stores(reactor, settings, cluster)
    pool = QuietConnectionPool(reactor, persistent=True)
    http = treq.client.HTTPClient(Agent(reactor, pool=pool, connectTimeout=UPSTREAM_CONNECT_TIMEOUT_S))
    files = ThreadExecutor(reactor, "files")
    log_file = GatewayLogFile(
        default_log_path(settings.state_dir), level=LogLevel.levelWithName(_log_level(settings.config)),
        executor=files, clock=reactor,
    )
    tls = _tls_material(settings) if settings.tls_enabled else None
    gateway = build_gateway(
        reactor, settings, **stores, model_client=ModelClient(http, reactor), file_executor=files,
        parts=cluster_wiring.parts if cluster_wiring is not None else None, log_file=log_file,
        config_control=config_control, make_heartbeat=partial(_heartbeat, reactor),
        tls_fingerprint=tls_certificates.fingerprint_sha256(tls[0]) if tls is not None else None,
    )
    if cluster_wiring is not None:
        cluster_wiring.attach(gateway, config_control)
    children = [
        named("files", ExecutorService(files)),
        named("log-file", log_file),
        *([named("cluster", cluster_wiring.service)] if cluster_wiring is not None else []),
        named("pairing", gateway.pairing),
        named("node-pairing", gateway.node_pairing),
        named("agents", AgentService(gateway, pool)),
        named("event-loop", gateway.event_loop),
        named("tick", PeriodicBroadcast(reactor, settings.tick_interval_ms / 1000.0, gateway.broadcast_tick, what="tick")),
        named(
            "health",
            PeriodicBroadcast(
                reactor, settings.health_refresh_interval_ms / 1000.0, gateway.broadcast_health, what="health refresh"
            ),
        ),
        named("heartbeat", gateway.heartbeat),
    ]
    factory = GatewayWebSocketFactory(gateway, reactor=reactor)
    children.append(named("websocket", WebSocketService(gateway, factory, reactor)))
    children.append(named("listeners", _listeners(reactor, gateway, factory, tls, reuse_port)))
    return gateway, children


def named(name: str, service: Any) -> Any:
    service.setName(name)
    return service


def _heartbeat(reactor: Any, gateway: Gateway) -> HeartbeatService:
    return HeartbeatService(gateway, reactor)


def _stores(reactor: Any, settings: GatewaySettings, cluster: Any) -> tuple[Any, dict[str, Any]]:
    """The device, session and node stores: SQLite files on worker threads, or the cluster's."""
    if cluster is not None:
        from .cluster.wiring import ClusterWiring

        wiring = ClusterWiring(reactor, cluster, settings.state_dir)
        return wiring, {
            "device_store": wiring.device_store, "session_store": wiring.session_store, "node_store": wiring.node_store
        }

    def database(name: str, migrations: Any) -> SQLiteDatabase:
        return SQLiteDatabase.threaded(reactor, os.path.join(settings.state_dir, name), migrations)

    return None, {
        "device_store": devices.DeviceStore(database(DEVICE_DB_NAME, devices.MIGRATIONS)),
        "session_store": sessions.SessionStore(database(SESSION_DB_NAME, sessions.MIGRATIONS), settings.state_dir),
        "node_store": nodes.NodeStore(database(NODE_DB_NAME, nodes.MIGRATIONS)),
    }


def _listeners(reactor: Any, gateway: Gateway, factory: Any, tls: Any, reuse_port: bool) -> Listeners:
    """The Site (TLS-wrapped when set) on every interface; the start-up lines once all listen."""
    settings = gateway.settings
    site = GatewaySite(
        GatewayRootResource(
            WebSocketResource(factory),
            GatewayHttpApp(gateway).resource(),
            lambda: gateway.settings.strict_transport_security,
        ),
        reactor=reactor,
        max_unfinished_per_ip=settings.max_preauth_per_ip,
    )
    served: Any = site
    announcements = [
        partial(log_banner, gateway),
        partial(_announce_unused, settings.config),
        partial(_announce_model_warnings, gateway),
    ]
    if tls is not None:
        cert_pem, key_pem, tls_files = tls
        # Logged once the listeners are up, so the log-file service (started earlier in the
        # tree) writes it to gateway.log as well as twistd's log.
        announcements.append(partial(_announce_fingerprint, gateway.tls_fingerprint, tls_files.cert_path))
        served = tls_server.wrap_factory(tls_server.server_options(cert_pem, key_pem), site)

    def announce_all() -> None:
        for announce in announcements:
            announce()

    listeners = Listeners(announce_all)
    for index, interface in enumerate(settings.interfaces):
        # The first address must bind or start-up fails; extra ones (::1) only log when missing.
        listener = EndpointListener(_endpoint(reactor, settings.port, interface, reuse_port), served, required=index == 0)
        listener.setName(interface)
        listener.setServiceParent(listeners)
    return listeners


def _announce_unused(config: Mapping[str, Any]) -> None:
    """One line naming the config keys accepted (the reference accepts them) but not acted on."""
    paths = unused_paths(config)
    if paths:
        _log.info("accepted, not used here: {paths}", paths=listing(paths))


def _announce_model_warnings(gateway: Gateway) -> None:
    """Models the config names that no run can use (no key, unknown provider): said once, here."""
    for warning in gateway.catalog.warnings:
        _log.warn("{text}", text=warning)


def _announce_fingerprint(fingerprint: str | None, cert_path: str) -> None:
    _log.info("TLS certificate SHA-256 fingerprint: {fingerprint} ({cert_path})", fingerprint=fingerprint, cert_path=cert_path)


def makeService(options: Mapping[str, Any], reactor: Any = None, env: Mapping[str, str] | None = None) -> GatewayRuntime:
    """The root service: ``reload`` plus the gateway tree (see :mod:`openclaw.services.runtime`).

    ``root.gateway`` is what an embedding application talks to (it changes on a restart). The
    state directory and the stores are checked first (:mod:`openclaw.stores.preflight`): a
    failure raises GatewayStartError, or under twistd exits with status 1.
    """
    install_signals = reactor is None
    if reactor is None:
        from twisted.internet import reactor
    env = dict(os.environ if env is None else env)
    settings, initial = _settings_from(options, env)
    cluster = options.get("cluster") if "cluster" in options else _cluster_options(options, env)
    reuse_port = bool(options.get("reuse-port"))
    try:
        # Cluster mode keeps its stores on PostgreSQL (checked when the cluster service starts).
        check_state(settings.state_dir, STORES if cluster is None else ())
    except GatewayStartError as exc:
        if not install_signals:
            raise  # an embedding application handles it
        # Under twistd: the message on stderr and exit status 1, before anything listens.
        raise SystemExit(f"openclaw: the gateway could not start: {exc}") from None
    reloader = None
    if settings.config_path:
        # Built first so each gateway tree is given it (the config.* methods talk to it); its
        # hot-apply and restart go to the root, which exists by the time a change is seen.
        reloader = ConfigReloader(
            reactor,
            ThreadExecutor(reactor, "config-file"),
            initial,
            settings_for=lambda snapshot: resolve_settings(options, env, snapshot),
            apply_hot=lambda settings, plan: root.apply_hot(settings, plan),
            restart=lambda reason: root.restart(reason),
            env=env,
            masked=masked_paths(options, env),
        )
    root = GatewayRuntime(
        reactor,
        settings,
        lambda current: build_tree(reactor, current, cluster, reuse_port, config_control=reloader),
        install_signals=install_signals,
        exit_with=exit_status_at_exit if install_signals else None,
        reloader=reloader,
    )
    return root
