"""``last-heartbeat`` and ``set-heartbeats`` (protocol §9.7, spec §7).

Both talk to the :class:`~openclaw.services.heartbeat.HeartbeatService` the gateway exposes as
``gateway.heartbeat``; a gateway without one has had no heartbeat (``null``) and cannot switch
them (``UNAVAILABLE``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, READ
from .registry import MethodSpec, RequestContext

if TYPE_CHECKING:
    from ..services.heartbeat import HeartbeatService

INVALID_SET_HEARTBEATS = "invalid set-heartbeats params: enabled (boolean) required"


def _service(ctx: RequestContext) -> "HeartbeatService | None":
    return getattr(ctx.gateway, "heartbeat", None)


def last_heartbeat(ctx: RequestContext) -> dict[str, Any] | None:
    service = _service(ctx)
    return service.last if service is not None else None


def set_heartbeats(ctx: RequestContext) -> dict[str, Any]:
    # The schema already rejects this; checked again so direct callers get the same answer.
    enabled = ctx.params.get("enabled") if isinstance(ctx.params, dict) else None
    if not isinstance(enabled, bool):
        raise invalid_request(INVALID_SET_HEARTBEATS)
    service = _service(ctx)
    if service is None:
        raise GatewayError(UNAVAILABLE, "heartbeats are not available on this gateway")
    service.enabled = enabled
    return {"ok": True, "enabled": enabled}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("last-heartbeat", last_heartbeat, scope=READ),
        MethodSpec("set-heartbeats", set_heartbeats, scope=ADMIN),
    ]
