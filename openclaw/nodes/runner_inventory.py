"""The runner inventory a node host declares (``node.runnerInventory.update``): a closed format.

The reference node host declares, on every connect, whether it offers to host agent sessions
(``workerHost``) under the one worker-supervisor protocol it speaks. The reference gateway
accepts exactly these shapes and nothing else, and answers anything else with "invalid node
runner inventory" *before* it looks at the node's pairing, so a node host with a broken
declaration hears about it at once rather than after an operator approved it. The facts below
(feature names, the field set, the capacity bounds) are the reference's:

* ``{"protocolFeatures": []}``: the node speaks no supervisor protocol;
* ``{"protocolFeatures": ["node-worker-supervisor-v1" … "-v5"], ...}``: a retired protocol (the
  node host needs an update); at most one more key, ``workerRuns`` or ``workerHost``;
* ``{"protocolFeatures": ["node-worker-supervisor-v6"], "workerHost": {...}}``: the current one,
  where ``workerHost`` is ``{"enabled": false}`` or ``{"enabled": true, "capacity": {"total",
  "available"}}`` plus optional flags whose only value is ``1`` (``capturedExecPolicy``: ``true``).
"""
from __future__ import annotations

from typing import Any

CURRENT_FEATURE = "node-worker-supervisor-v6"
RETIRED_FEATURES = tuple(f"node-worker-supervisor-v{n}" for n in range(1, 6))
CAPACITY_MAX = 1024
ONE_FLAGS = ("bundlePrewarm", "bundleRetention", "bundleStatus", "portalStream", "environmentSession", "preparedWorkspace")
WORKER_HOST_KEYS = frozenset(("enabled", "capacity", "capturedExecPolicy", *ONE_FLAGS))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _capacity(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict) or set(value) != {"total", "available"}:
        return None
    total, available = value["total"], value["available"]
    if not (_is_int(total) and _is_int(available) and 1 <= total <= CAPACITY_MAX and 0 <= available <= total):
        return None
    return {"total": total, "available": available}


def _worker_host(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("enabled"), bool):
        return None
    if not value["enabled"]:
        return {"enabled": False} if set(value) == {"enabled"} else None
    capacity = _capacity(value.get("capacity"))
    if capacity is None or not set(value) <= WORKER_HOST_KEYS:
        return None
    if any(flag in value and value[flag] != 1 for flag in ONE_FLAGS) or value.get("capturedExecPolicy", True) is not True:
        return None
    if "bundleStatus" in value and "bundleRetention" not in value:
        return None
    flags = {key: value[key] for key in (*ONE_FLAGS, "capturedExecPolicy") if key in value}
    return {"enabled": True, "capacity": capacity, **flags}


def parse_declaration(params: Any) -> dict[str, Any] | None:
    """The declaration in its normal form, or ``None`` when it is not one the protocol allows."""
    if not isinstance(params, dict) or not isinstance(params.get("protocolFeatures"), list):
        return None
    features = params["protocolFeatures"]
    if not features:
        return {"protocolFeatures": []} if set(params) == {"protocolFeatures"} else None
    if len(features) != 1:
        return None
    feature = features[0]
    if feature in RETIRED_FEATURES:
        return {"protocolFeatures": [feature]} if len(params) <= 2 and set(params) <= {"protocolFeatures", "workerRuns", "workerHost"} else None
    if feature != CURRENT_FEATURE or len(params) != 2:
        return None
    worker_host = _worker_host(params.get("workerHost"))
    return {"protocolFeatures": [CURRENT_FEATURE], "workerHost": worker_host} if worker_host else None


def needs_update(declaration: dict[str, Any]) -> bool:
    """A retired supervisor protocol: the node host must be updated before it can host sessions."""
    features = declaration["protocolFeatures"]
    return len(features) == 1 and features[0] != CURRENT_FEATURE


def update_required_message(node_id: str) -> str:
    return (
        f"device worker node {node_id} requires an update before it can host sessions; "
        "run openclaw update, then reconnect it (for a headless node, run openclaw node restart)"
    )

