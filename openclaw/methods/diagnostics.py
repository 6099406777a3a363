"""Operator read-outs the reference CLI asks for: ``diagnostics.stability`` and ``usage.cost``.

Both answer with this gateway's own records, never invented numbers: the stability ring
(``state/diagnostics.py``) and the usage ledger the session store keeps for answered runs
(``stores/usage.py``), priced with the per-million-token costs the config declares.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ..security.scopes import READ
from ..stores.usage import configured_prices
from .registry import MethodSpec, RequestContext

DEFAULT_USAGE_DAYS = 30


def _params(ctx: RequestContext) -> dict[str, Any]:
    return ctx.params if isinstance(ctx.params, dict) else {}


def stability(ctx: RequestContext) -> dict[str, Any]:
    params = _params(ctx)
    return ctx.gateway.stability.snapshot(params.get("limit"), params.get("type"), params.get("sinceSeq"))


def usage_cost(ctx: RequestContext) -> Deferred[dict[str, Any]]:
    params = _params(ctx)
    days = params.get("days", DEFAULT_USAGE_DAYS)
    agent_id = None if params.get("allAgents") else params.get("agentId")
    gateway = ctx.gateway
    prices = configured_prices(gateway.current_config())
    cost: Deferred[dict[str, Any]] = gateway.sessions.usage_cost(gateway.now_ms(), days, prices, agent_id)
    return cost


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("diagnostics.stability", stability, scope=READ),
        MethodSpec("usage.cost", usage_cost, scope=READ),
    ]
