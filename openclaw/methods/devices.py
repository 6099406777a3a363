"""Device pairing and device-token methods (protocol §9.6, §3.7)."""
from __future__ import annotations

from typing import Any
from collections.abc import Generator

from twisted.internet.defer import Deferred, inlineCallbacks

from ..protocol.constants import CLOSE_INVALIDATED
from ..protocol.errors import missing_scope
from ..security.scopes import ADMIN, PAIRING, scopes_cover
from .registry import MethodSpec, RequestContext


def pair_list(ctx: RequestContext) -> dict[str, Any]:
    pairing = ctx.gateway.pairing
    store = pairing.store
    return {
        "pending": [request.to_wire() for request in pairing.list_pending()],
        "paired": [device.to_wire(store.tokens_for(device.device_id)) for device in store.all_paired()],
    }


@inlineCallbacks
def pair_approve(ctx: RequestContext) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    device = yield ctx.gateway.pairing.approve(ctx.params["requestId"], ctx.client.scopes)
    return {"requestId": ctx.params["requestId"], "device": device.to_wire()}


@inlineCallbacks
def pair_reject(ctx: RequestContext) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    request = yield ctx.gateway.pairing.reject(ctx.params["requestId"])
    return {"requestId": request.request_id, "deviceId": request.device_id}


@inlineCallbacks
def pair_remove(ctx: RequestContext) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    device = yield ctx.gateway.pairing.remove(ctx.params["deviceId"])
    return {"deviceId": device.device_id, "removedAtMs": ctx.gateway.now_ms()}


@inlineCallbacks
def pair_rename(ctx: RequestContext) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    device = yield ctx.gateway.pairing.rename(ctx.params["deviceId"], ctx.params["label"])
    return {"deviceId": device.device_id, "label": device.operator_label}


def _check_token_authority(ctx: RequestContext) -> None:
    """Non-operator roles (node tokens) need admin; non-admins manage only their own device."""
    params = ctx.params
    is_admin = ADMIN in ctx.client.scopes
    if params["role"] != "operator" and not is_admin:
        raise missing_scope(ADMIN)
    if not is_admin and params["deviceId"] != ctx.client.device_id:
        raise missing_scope(ADMIN)
    requested = params.get("scopes")
    if requested is not None and not is_admin and not scopes_cover(requested, ctx.client.scopes):
        raise missing_scope(ADMIN)


@inlineCallbacks
def token_rotate(ctx: RequestContext) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    _check_token_authority(ctx)
    params = ctx.params
    token = yield ctx.gateway.pairing.rotate_token(params["deviceId"], params["role"], params.get("scopes"))
    same_device = ctx.client.device_id == params["deviceId"] and ctx.client.auth_method == "device-token"
    result = {
        "deviceId": token.device_id,
        "role": token.role,
        "scopes": list(token.scopes),
        "rotatedAtMs": token.rotated_at_ms,
        "tokenDelivery": "in-band" if same_device else "withheld-cross-device",
    }
    if same_device:
        result["token"] = token.token
    _retire_token_users(ctx, params["deviceId"], params["role"], "device token rotated")
    return result


@inlineCallbacks
def token_revoke(ctx: RequestContext) -> Generator[Deferred[Any], Any, dict[str, Any]]:
    _check_token_authority(ctx)
    params = ctx.params
    yield ctx.gateway.pairing.revoke_token(params["deviceId"], params["role"])
    _retire_token_users(ctx, params["deviceId"], params["role"], "device token revoked")
    return {"deviceId": params["deviceId"], "role": params["role"], "revokedAtMs": ctx.gateway.now_ms()}


def _retire_token_users(ctx: RequestContext, device_id: str, role: str, why: str) -> None:
    """Sockets that authenticated with the old token lose their session (close 4001)."""
    for client in ctx.gateway.clients.by_device(device_id):
        if client.role == role and client.auth_method == "device-token" and client.conn_id != ctx.client.conn_id:
            client.sink.close_with(CLOSE_INVALIDATED, f"client invalidated: {why}")


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("device.pair.list", pair_list, scope=PAIRING),
        MethodSpec("device.pair.approve", pair_approve, scope=PAIRING),
        MethodSpec("device.pair.reject", pair_reject, scope=PAIRING),
        MethodSpec("device.pair.remove", pair_remove, scope=PAIRING),
        MethodSpec("device.pair.rename", pair_rename, scope=PAIRING),
        MethodSpec("device.token.rotate", token_rotate, scope=PAIRING),
        MethodSpec("device.token.revoke", token_revoke, scope=PAIRING),
    ]
