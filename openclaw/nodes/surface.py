"""The refusal for work on a node whose command surface was never approved.

In the reference a node has no *pairing generation* until an operator approves its surface, and
every piece of node work that needs one (``node.invoke`` of any command, ``node.event`` from the
node) answers ``UNAVAILABLE`` with ``details.code: "PAIRING_CHANGED"``, retryable: the node host
and the agent's exec tool retry on that code, and succeed once the surface is approved. We answer
with the same code and flags so those clients behave the same, but with a message that says what
is actually wrong and what to run, since nothing "changed" here.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..stores.nodes import NodeStore

PAIRING_CHANGED = "PAIRING_CHANGED"


def not_approved(pending: Mapping[str, Any] | None) -> GatewayError:
    """``pending`` is the node's open pairing request, if it has one."""
    if pending is not None:
        message = (
            "node command surface is awaiting operator approval; run "
            f"`openclaw nodes approve {pending['requestId']}` (see `openclaw nodes pending`)"
        )
        details: dict[str, Any] = {"code": PAIRING_CHANGED, "requestId": pending["requestId"]}
    else:
        message = "node command surface is not approved; reconnect the node to ask operators again"
        details = {"code": PAIRING_CHANGED}
    return GatewayError(UNAVAILABLE, message, details, retryable=True)


def refuse_unless_approved(store: NodeStore, node_id: str) -> None:
    """Raise :func:`not_approved` for a node that has no approved surface at all."""
    if store.paired(node_id) is None:
        raise not_approved(store.pending_for(node_id))


def runner_inventory_waits(pending: Mapping[str, Any]) -> GatewayError:
    """The reference's own words for ``node.runnerInventory.update`` (no code, not retryable:
    the node host retries it on its own), which its node host prints as they are."""
    return GatewayError(
        UNAVAILABLE,
        "node capability surface is awaiting operator approval; run "
        f"`openclaw nodes approve {pending['requestId']}` (see `openclaw nodes pending`), then this node retries automatically",
    )
