"""What a node host publishes about itself: host stats, skills, plugin tools, runner inventory.

The reference's node host calls these right after it connects and again when something changes;
the gateway keeps the latest of each on the live node and shows it in ``node.describe`` /
``node.list`` (``hostStats``, ``nodePluginTools``); new host stats also go to ``operator.read``
holders as ``node.hostStats {nodeId, hostStats}``, as the reference sends them. Everything is bounded: a node cannot make
the gateway hold more than it would send in one frame, and lists are capped.

``node.event`` answers ``handled: true`` only for events the gateway acts on; other events are
acknowledged and dropped (the reference does not forward them to operators either).
"""
from __future__ import annotations

from typing import Any

import orjson

from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..nodes import runner_inventory
from ..nodes import surface as node_surface
from .registry import ROLE_NODE, MethodSpec, RequestContext

MAX_PUBLISHED_ITEMS = 256
HOST_STATS_FIELDS = ("cpuCount", "loadAverage", "memoryTotalBytes", "memoryFreeBytes", "diskTotalBytes", "diskAvailableBytes")


def _live(ctx: RequestContext) -> Any:
    node = ctx.gateway.nodes.get(ctx.gateway.node_id_for(ctx.client))
    if node is None or node.client is not ctx.client:
        raise GatewayError(UNAVAILABLE, "node connection is not current", {"code": "PAIRING_CHANGED"}, retryable=True)
    node.last_seen_at_ms = ctx.gateway.now_ms()
    return node


def _items(ctx: RequestContext, field: str) -> list[Any]:
    items = ctx.params.get(field) or []
    if len(items) > MAX_PUBLISHED_ITEMS:
        raise invalid_request(f"too many {field} (max {MAX_PUBLISHED_ITEMS})")
    return list(items)


def skills_update(ctx: RequestContext) -> dict[str, Any]:
    node = _live(ctx)
    node.published["skills"] = _items(ctx, "skills")
    return {"nodeId": node.node_id, "skills": node.published["skills"]}


def plugin_tools_update(ctx: RequestContext) -> dict[str, Any]:
    node = _live(ctx)
    node.published["pluginTools"] = _items(ctx, "tools")
    return {"nodeId": node.node_id, "tools": node.published["pluginTools"]}


def runner_inventory_update(ctx: RequestContext) -> dict[str, Any]:
    """As in the reference: the declaration is checked first, then the node's pairing.

    The node's offer to host sessions is kept, but ``sessionHost`` stays false: this gateway
    does not place agent sessions on nodes.
    """
    declaration = runner_inventory.parse_declaration(ctx.params)
    if declaration is None:
        raise invalid_request("invalid node runner inventory")
    node = _live(ctx)
    if runner_inventory.needs_update(declaration):
        raise invalid_request(runner_inventory.update_required_message(node.node_id))
    pending = ctx.gateway.node_pairing.store.pending_for(node.node_id)
    if pending is not None:
        raise node_surface.runner_inventory_waits(pending)
    node.published["runnerInventory"] = declaration
    return {"nodeId": node.node_id}


def _event_payload(params: dict[str, Any]) -> Any:
    if isinstance(params.get("payloadJSON"), str):
        try:
            return orjson.loads(params["payloadJSON"])
        except orjson.JSONDecodeError:
            raise invalid_request("payloadJSON is not valid JSON") from None
    return params.get("payload")


def node_event(ctx: RequestContext) -> dict[str, Any]:
    """Events from a node whose surface is not approved are refused, as in the reference: such a
    node must not reach operators (``node.hostStats`` goes to every ``operator.read`` holder)."""
    node = _live(ctx)
    node_surface.refuse_unless_approved(ctx.gateway.node_pairing.store, node.node_id)
    event = ctx.params["event"]
    if event == "node.host.stats":
        payload = _event_payload(ctx.params)
        if not isinstance(payload, dict):
            raise invalid_request("node.host.stats needs an object payload")
        stats = {key: payload[key] for key in HOST_STATS_FIELDS if key in payload}
        stats["updatedAtMs"] = ctx.gateway.now_ms()
        node.published["hostStats"] = stats
        ctx.gateway.clients.broadcast("node.hostStats", {"nodeId": node.node_id, "hostStats": stats}, drop_if_slow=True)
        return {"ok": True, "event": event, "handled": True, "reason": "updated"}
    return {"ok": True, "event": event, "handled": False, "reason": "unsupported-event"}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("node.event", node_event, role=ROLE_NODE, scope=None),
        MethodSpec("node.skills.update", skills_update, role=ROLE_NODE, scope=None),
        MethodSpec("node.pluginTools.update", plugin_tools_update, role=ROLE_NODE, scope=None),
        MethodSpec("node.runnerInventory.update", runner_inventory_update, role=ROLE_NODE, scope=None, advertised=False),
    ]
