"""RPC methods, one module per family; ``registry`` gates and dispatches them.

:func:`default_methods` is the gateway's method table, built by the composition root
(:mod:`openclaw.tap`) and handed to the ``Gateway``: the hub registers nothing itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import MethodRegistry


def default_methods(file_executor: Any) -> MethodRegistry:
    """Every method family this gateway serves; ``file_executor`` runs ``logs.tail``'s reads.

    The families are imported here, not at package import, so ``import openclaw.methods.chat``
    alone does not pull in every other family.
    """
    from . import absent, absent_workspace, agent, approvals, chat, chat_views, config, devices, diagnostics, heartbeat, inventory
    from . import logs, node_side, nodes, operator_pages, session_views, sessions, system, themes
    from .registry import MethodRegistry

    registry = MethodRegistry()
    for family in (
        system, devices, sessions, chat, chat_views, session_views, operator_pages, agent, config, heartbeat,
        nodes, node_side, diagnostics, inventory, approvals, absent, absent_workspace, themes,
    ):
        registry.add_all(family.methods())
    registry.add_all(logs.methods(file_executor))
    return registry
