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
from openclaw.stores import devices
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase

TOKEN = "test-token-123"


def make_settings(state_dir: str, **overrides: Any) -> GatewaySettings:
    auth = overrides.pop("auth", None) or AuthSettings(mode="token", token=TOKEN)
    overrides.setdefault("config_path", None)
    return GatewaySettings(auth=auth, state_dir=state_dir, **overrides)


def make_gateway(testcase: Any, clock: Any = None, state_dir: str | None = None, **overrides: Any) -> Gateway:
    """A gateway whose device store runs inline (synchronously) in a fresh temp directory."""
    state_dir = state_dir or tempfile.mkdtemp(prefix="openclaw-test-")
    settings = make_settings(state_dir, **overrides)
    store = devices.DeviceStore(
        SQLiteDatabase(os.path.join(state_dir, "devices.sqlite"), devices.MIGRATIONS, InlineExecutor())
    )
    gateway = Gateway(settings, clock if clock is not None else Clock(), store)
    gateway.pairing.startService()
    testcase.addCleanup(lambda: gateway.pairing.stopService() if gateway.pairing.running else None)
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
    site = GatewaySite(GatewayRootResource(WebSocketResource(factory), GatewayHttpApp(gateway).resource()))
    port = global_reactor.listenTCP(0, site, interface="127.0.0.1")

    @inlineCallbacks
    def stop():
        yield port.stopListening()
        if websocket.running:
            yield websocket.stopService()

    testcase.addCleanup(stop)
    return succeed(RunningGateway(gateway=gateway, factory=factory, websocket=websocket, port=port))
