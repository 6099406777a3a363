"""``last-heartbeat``, ``set-heartbeats`` and ``wake`` (protocol §9.3, §9.7, spec §7).

Both talk to the :class:`~openclaw.services.heartbeat.HeartbeatService` the gateway exposes as
``gateway.heartbeat``; a gateway without one has had no heartbeat (``null``) and cannot switch
them (``UNAVAILABLE``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, READ, WRITE
from .registry import MethodSpec, RequestContext

if TYPE_CHECKING:
    from ..services.heartbeat import HeartbeatService

_log = Logger()
INVALID_SET_HEARTBEATS = "invalid set-heartbeats params: enabled (boolean) required"


def _service(ctx: RequestContext) -> HeartbeatService | None:
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


def wake(ctx: RequestContext) -> dict[str, Any]:
    """Queue a system event text (``status`` lists it); ``mode: "now"`` also runs a heartbeat now."""
    params = ctx.params if isinstance(ctx.params, dict) else {}
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise invalid_request("invalid wake params: text (non-empty string) required")
    ctx.gateway.presence.queue_system_text(text)
    service = _service(ctx)
    if params.get("mode") == "now" and service is not None:
        # Its outcome reaches clients as the heartbeat event; a crash is logged, not answered.
        service.run_once().addErrback(lambda failure: _log.failure("heartbeat for wake failed", failure))
    return {"ok": True}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("wake", wake, scope=WRITE),
        MethodSpec("last-heartbeat", last_heartbeat, scope=READ),
        MethodSpec("set-heartbeats", set_heartbeats, scope=ADMIN),
    ]
