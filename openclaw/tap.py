"""``twistd openclaw``: command-line options and the service tree.

``makeService`` returns a named ``MultiService``; an application embedding the gateway adds that
same tree to its own service. Start order is the order below (state first: pairing, agents; listeners last) and
Twisted stops in reverse, so the port closes first and the state is written last.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import treq.client
from autobahn.twisted.resource import WebSocketResource
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.python import usage
from twisted.web.client import Agent, HTTPConnectionPool

from .config.loader import ConfigError
from .connection.factory import GatewayWebSocketFactory
from .gateway import Gateway
from .http.app import GatewayHttpApp
from .http.site import GatewayRootResource, GatewaySite
from .protocol.constants import DEFAULT_PORT
from .providers.client import ModelClient
from .services.agents import AgentService
from .services.maintenance import PeriodicBroadcast
from .services.websocket import WebSocketService
from .settings import GatewaySettings, resolve_settings
from .stores import devices, sessions
from .stores.sqlite import SQLiteDatabase

DEVICE_DB_NAME = "devices.sqlite"
SESSION_DB_NAME = "sessions.sqlite"
UPSTREAM_CONNECT_TIMEOUT_S = 10


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the OpenClaw gateway: WebSocket control plane and HTTP API on one port. "
        "Settings come from the command line, then the environment (OPENCLAW_GATEWAY_TOKEN, "
        "OPENCLAW_GATEWAY_PASSWORD, OPENCLAW_GATEWAY_PORT, OPENCLAW_CONFIG_PATH, OPENCLAW_STATE_DIR), "
        "then the JSON5 config file."
    )
    optParameters = [
        ["port", "p", None, f"TCP port for WebSocket and HTTP [default: {DEFAULT_PORT}]", int],
        ["bind", "b", None, "loopback (127.0.0.1 and ::1), lan (0.0.0.0), or an interface address"],
        ["auth", None, None, "auth mode: none, token or password [default: token if a token is set]"],
        ["token", "t", None, "shared gateway token (or OPENCLAW_GATEWAY_TOKEN)"],
        ["password", None, None, "shared gateway password (or OPENCLAW_GATEWAY_PASSWORD)"],
        ["state-dir", None, None, "state directory [default: ~/.openclaw or OPENCLAW_STATE_DIR]"],
        ["config", "c", None, "JSON5 config file [default: <state-dir>/openclaw.json or OPENCLAW_CONFIG_PATH]"],
    ]

    def postOptions(self) -> None:
        try:
            self["settings"] = resolve_settings(self)
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None


def _settings_from(options: Mapping[str, Any]) -> GatewaySettings:
    settings = options.get("settings") if hasattr(options, "get") else None
    if isinstance(settings, GatewaySettings):
        return settings
    return resolve_settings(options)


def _endpoint(reactor: Any, port: int, interface: str) -> Any:
    if ":" in interface:
        return TCP6ServerEndpoint(reactor, port, interface=interface)
    return TCP4ServerEndpoint(reactor, port, interface=interface)


def makeService(options: Mapping[str, Any], reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor
    settings = _settings_from(options)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)

    store = devices.DeviceStore(
        SQLiteDatabase.threaded(reactor, os.path.join(settings.state_dir, DEVICE_DB_NAME), devices.MIGRATIONS)
    )
    session_store = sessions.SessionStore(
        SQLiteDatabase.threaded(reactor, os.path.join(settings.state_dir, SESSION_DB_NAME), sessions.MIGRATIONS),
        settings.state_dir,
    )
    pool = HTTPConnectionPool(reactor, persistent=True)
    http = treq.client.HTTPClient(Agent(reactor, pool=pool, connectTimeout=UPSTREAM_CONNECT_TIMEOUT_S))
    gateway = Gateway(settings, reactor, store, session_store, ModelClient(http, reactor))

    root = MultiService()
    root.setName("openclaw")
    root.gateway = gateway  # what an embedding application talks to

    gateway.pairing.setName("pairing")
    gateway.pairing.setServiceParent(root)
    agents = AgentService(gateway, pool)
    agents.setName("agents")
    agents.setServiceParent(root)
    gateway.event_loop.setName("event-loop")
    gateway.event_loop.setServiceParent(root)
    tick = PeriodicBroadcast(reactor, settings.tick_interval_ms / 1000.0, gateway.broadcast_tick, what="tick")
    tick.setName("tick")
    tick.setServiceParent(root)
    health = PeriodicBroadcast(
        reactor, settings.health_refresh_interval_ms / 1000.0, gateway.broadcast_health, what="health refresh"
    )
    health.setName("health")
    health.setServiceParent(root)

    factory = GatewayWebSocketFactory(gateway, reactor=reactor)
    websocket = WebSocketService(gateway, factory, reactor)
    websocket.setName("websocket")
    websocket.setServiceParent(root)

    site = GatewaySite(
        GatewayRootResource(WebSocketResource(factory), GatewayHttpApp(gateway).resource()),
        reactor=reactor,
    )
    listeners = MultiService()
    listeners.setName("listeners")
    for index, interface in enumerate(settings.interfaces):
        listener = StreamServerEndpointService(_endpoint(reactor, settings.port, interface), site)
        # The first address must bind or start-up fails; extra ones (::1) only log when missing.
        listener._raiseSynchronously = index == 0
        listener.setName(interface)
        listener.setServiceParent(listeners)
    listeners.setServiceParent(root)
    return root
