"""Build a gateway for tests: in memory with a Clock, or listening on a real loopback port."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import attrs
from autobahn.twisted.resource import WebSocketResource
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.task import Clock

from openclaw.connection.factory import GatewayWebSocketFactory
from openclaw.gateway import Gateway
from openclaw.http.app import GatewayHttpApp
from openclaw.http.site import GatewayRootResource, GatewaySite
from openclaw.security.shared_secret import AuthSettings
from openclaw.services.websocket import WebSocketService
from openclaw.settings import GatewaySettings
from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool

from openclaw.providers.client import ModelClient
from openclaw.stores import devices, nodes, sessions
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase
from openclaw.wiring import build_gateway

TOKEN = "test-token-123"


def make_settings(state_dir: str, **overrides: Any) -> GatewaySettings:
    auth = overrides.pop("auth", None) or AuthSettings(mode="token", token=TOKEN)
    overrides.setdefault("config_path", None)
    return GatewaySettings(auth=auth, state_dir=state_dir, **overrides)


def make_gateway(
    testcase: Any,
    clock: Any = None,
    state_dir: str | None = None,
    model_client: ModelClient | None = None,
    http: Any = None,
    **overrides: Any,
) -> Gateway:
    """A gateway whose stores run inline (synchronously) in a fresh temp directory.

    Built by :func:`openclaw.wiring.build_gateway`, the same function ``tap.build_tree`` uses.

    Model requests go through ``model_client``, or a ModelClient over ``http`` (a treq
    HTTPClient or StubTreq), or by default through treq on the real reactor.
    """
    state_dir = state_dir or tempfile.mkdtemp(prefix="openclaw-test-")
    settings = make_settings(state_dir, **overrides)
    clock = clock if clock is not None else Clock()
    store = devices.DeviceStore(
        SQLiteDatabase(os.path.join(state_dir, "devices.sqlite"), devices.MIGRATIONS, InlineExecutor())
    )
    session_store = sessions.SessionStore(
        SQLiteDatabase(os.path.join(state_dir, "sessions.sqlite"), sessions.MIGRATIONS, InlineExecutor()), state_dir
    )
    if model_client is None:
        if http is None:
            pool = HTTPConnectionPool(global_reactor, persistent=True)
            http = HTTPClient(Agent(global_reactor, pool=pool))
            testcase.addCleanup(pool.closeCachedConnections)
        model_client = ModelClient(http, clock)
    node_store = nodes.NodeStore(SQLiteDatabase(os.path.join(state_dir, "nodes.sqlite"), nodes.MIGRATIONS, InlineExecutor()))
    files = InlineExecutor()
    gateway = build_gateway(
        clock, settings, device_store=store, session_store=session_store, node_store=node_store,
        model_client=model_client, file_executor=files,
    )
    gateway.node_pairing.startService()
    testcase.addCleanup(lambda: gateway.node_pairing.stopService() if gateway.node_pairing.running else None)
    gateway.pairing.startService()
    testcase.addCleanup(lambda: gateway.pairing.stopService() if gateway.pairing.running else None)
    session_store.load()
    gateway.sessions_loaded = True

    def close_sessions() -> None:
        gateway.runs.stop_all()
        session_store.close()

    testcase.addCleanup(close_sessions)
    testcase.addCleanup(gateway.exec_approvals.records.clear)
    return gateway


@attrs.define
class RunningGateway:
    gateway: Gateway
    factory: GatewayWebSocketFactory
    websocket: WebSocketService
    port: Any

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port.getHost().port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"


def start_gateway(testcase: Any, clock: Any = None, **overrides: Any):
    """A gateway listening on 127.0.0.1:<random> with the real reactor; cleaned up after the test.

    ``clock`` defaults to the real reactor; pass a ``task.Clock`` to drive the gateway's own
    timers (handshake timeout, ticks) while the sockets stay real.
    """
    gateway = make_gateway(testcase, clock=clock if clock is not None else global_reactor, **overrides)
    factory = GatewayWebSocketFactory(gateway, reactor=global_reactor)
    websocket = WebSocketService(gateway, factory, global_reactor)
    websocket.startService()
    site = GatewaySite(
        GatewayRootResource(WebSocketResource(factory), GatewayHttpApp(gateway).resource()),
        max_unfinished_per_ip=gateway.settings.max_preauth_per_ip,
    )
    port = global_reactor.listenTCP(0, site, interface="127.0.0.1")

    @inlineCallbacks
    def stop():
        yield port.stopListening()
        if websocket.running:
            yield websocket.stopService()

    testcase.addCleanup(stop)
    return succeed(RunningGateway(gateway=gateway, factory=factory, websocket=websocket, port=port))
