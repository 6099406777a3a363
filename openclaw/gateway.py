"""The gateway hub: the shared context that connections, methods and services work through.

It owns no sockets and no timers; services in the tree drive it and connections call into it.
Keeping it free of the reactor (only an injected clock) is what lets the whole protocol be tested
with ``task.Clock`` and in-memory transports.
"""
from __future__ import annotations

import os
import uuid
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from . import __version__
from .connection.handshake import Admission, Handshake
from .connection.limits import PreauthLimiter
from .methods import devices, system
from .methods.registry import MethodRegistry
from .protocol.constants import ATTACHMENTS_MAX_BYTES, ATTACHMENTS_MAX_IMAGE_BYTES, SERVER_CAPABILITIES
from .protocol.validation import ProtocolValidators
from .security.rate_limit import AuthRateLimiter
from .security.scopes import ADMIN
from .services.event_loop import EventLoopMonitor
from .services.pairing import DevicePairingService
from .settings import GatewaySettings
from .state.clients import ClientRegistry, ConnectedClient
from .state.health import HealthMonitor
from .state.presence import PresenceTracker
from .stores.devices import DeviceStore

DEFAULT_AGENT_ID = "main"
MAIN_KEY = "main"

# Events this gateway emits; hello-ok advertises exactly these.
CORE_EVENTS = (
    "connect.challenge",
    "presence",
    "tick",
    "health",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
)


class Gateway:
    _log = Logger()

    def __init__(self, settings: GatewaySettings, clock: IReactorTime, device_store: DeviceStore):
        self.settings = settings
        self.clock = clock
        self.version = __version__
        self.boot_id = str(uuid.uuid4())
        self.instance_id = str(uuid.uuid4())
        self.started_at_ms = self.now_ms()
        self.accepting = True
        self.validators = ProtocolValidators()
        self.clients = ClientRegistry()
        self.preauth = PreauthLimiter(settings.max_preauth_per_ip)
        self.rate_limiter = AuthRateLimiter(clock, exempt_loopback=settings.rate_limit_exempt_loopback)
        self.presence = PresenceTracker(
            clock, version=self.version, instance_id=self.instance_id, ip="127.0.0.1" if settings.bind == "loopback" else None
        )
        self.health = HealthMonitor(clock, default_agent_id=DEFAULT_AGENT_ID)
        self.event_loop = EventLoopMonitor(clock)
        self.pairing = DevicePairingService(
            device_store, clock, self.clients, auto_approve_local=lambda: self.settings.auto_approve_local
        )
        self.handshake = Handshake(self)
        self.methods = MethodRegistry()
        self.events: list[str] = list(CORE_EVENTS)
        self.methods.add_all(system.methods())
        self.methods.add_all(devices.methods())
        self.health.add_contributor(self._core_health)

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
        return failing

    # -- snapshots ---------------------------------------------------------------------------

    def session_defaults(self) -> dict[str, Any]:
        return {
            "defaultAgentId": DEFAULT_AGENT_ID,
            "mainKey": MAIN_KEY,
            "mainSessionKey": f"agent:{DEFAULT_AGENT_ID}:{MAIN_KEY}",
            "scope": "per-sender",
        }

    def _core_health(self) -> dict[str, Any]:
        sessions = {"path": os.path.join(self.settings.state_dir, "sessions.sqlite"), "count": 0, "recent": []}
        return {
            "heartbeatSeconds": 0,
            "agents": [
                {
                    "agentId": DEFAULT_AGENT_ID,
                    "isDefault": True,
                    "heartbeat": {"enabled": False, "every": "off", "everyMs": 0},
                    "sessions": sessions,
                }
            ],
            "sessions": sessions,
            "eventLoop": self.event_loop.summary(),
        }

    def state_version(self) -> dict[str, int]:
        return {"presence": self.presence.version, "health": self.health.version}

    def snapshot(self, client: ConnectedClient) -> dict[str, Any]:
        snapshot: dict[str, Any] = {
            "presence": self.presence.entries(),
            "health": self.health.current(),
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
        auth: dict[str, Any] = {"method": admission.auth_method, "role": client.role, "scopes": list(admission.scopes)}
        if admission.device_token is not None:
            auth["deviceToken"] = admission.device_token.token
            auth["issuedAtMs"] = admission.device_token.issued_at_ms
        return {
            "type": "hello-ok",
            "protocol": admission.protocol,
            "server": {"version": self.version, "bootId": self.boot_id, "connId": client.conn_id},
            "features": {
                "methods": self.methods.advertised(),
                "events": list(self.events),
                "capabilities": list(SERVER_CAPABILITIES),
            },
            "snapshot": self.snapshot(client),
            "auth": auth,
            "policy": {
                "maxPayload": self.settings.max_payload,
                "maxBufferedBytes": self.settings.max_buffered_bytes,
                "tickIntervalMs": self.settings.tick_interval_ms,
                "attachments": {"maxBytes": ATTACHMENTS_MAX_BYTES, "maxImageBytes": ATTACHMENTS_MAX_IMAGE_BYTES},
            },
        }

    # -- connection lifecycle ----------------------------------------------------------------

    @staticmethod
    def presence_key(client: ConnectedClient) -> str:
        return client.instance_id or client.device_id or client.conn_id

    def client_admitted(self, client: ConnectedClient) -> None:
        self.clients.add(client)
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
        self._log.info(
            "{role} {client_id} connected from {ip} (conn {conn_id}, auth {auth})",
            role=client.role,
            client_id=client.client_id,
            ip=client.remote_ip,
            conn_id=client.conn_id,
            auth=client.auth_method,
        )

    def client_left(self, client: ConnectedClient) -> None:
        if self.clients.remove(client.conn_id) is None:
            return
        self.presence.client_disconnected(self.presence_key(client), client.conn_id)
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

    def broadcast_tick(self) -> None:
        self.clients.broadcast("tick", {"ts": self.now_ms()}, drop_if_slow=True)
