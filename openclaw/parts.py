"""Which implementation of each seam a gateway gets: :class:`GatewayParts`.

A composition root (:mod:`openclaw.wiring`, and :mod:`openclaw.cluster.wiring` for cluster mode)
chooses here: the record carries the factories for the parts that differ between a single process
and a cluster, and :func:`local_parts` gives the single-process defaults (in-memory presence and
node registry, no relay), so the default gateway needs nothing new. It is apart from
:mod:`openclaw.seams` because the defaults are concrete classes that themselves declare the seams:
in one module the two would import each other.
"""
from __future__ import annotations

import uuid
from typing import Any
from collections.abc import Callable

import attrs

from .state.nodes import NodeRegistry
from .state.presence import PresenceTracker


def _new_instance_id() -> str:
    return str(uuid.uuid4())


@attrs.frozen
class GatewayParts:
    """The parts a composition root picks for a gateway (single-process or cluster).

    ``presence`` is called as ``presence(clock, version=, instance_id=, ip=)`` and ``nodes`` as
    ``nodes(clock)``. ``relay`` is None in a single process: events only reach this process's
    connections. ``health`` contributes a section to ``health`` (the cluster's instance list,
    bus state).
    """

    instance_id: str = attrs.field(factory=_new_instance_id)
    presence: Callable[..., Any] = PresenceTracker  # -> seams.IPresence
    nodes: Callable[..., Any] = NodeRegistry  # -> seams.INodeRegistry
    relay: Any = None
    health: Callable[[], dict[str, Any]] | None = None
    leases: Any = None  # an ISessionLeases; None: every session may run here at once
    rate_limiter: Callable[[Any], Any] | None = None  # clock -> IAuthRateLimiter; None: in-memory
    dedupe: Callable[[Any], Any] | None = None  # clock -> IIdempotencyCache; None: in-memory
    # (clock, clients) -> ExecApprovals; None: this instance's own (approvals stay in this process)
    approvals: Callable[[Any, Any], Any] | None = None


def local_parts() -> GatewayParts:
    """The single-process parts: in-memory presence and node registry, no relay."""
    return GatewayParts()
