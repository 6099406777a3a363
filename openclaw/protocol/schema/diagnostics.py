"""Params of the operator read-outs the reference CLI calls: ``diagnostics.stability``,
``usage.cost``, ``wake``, ``commands.list``, ``channels.status`` and ``skills.status``.

``usage.cost`` and ``commands.list`` stay open: the reference CLI and TUI add filters over
releases, and an unknown filter must not turn a read into an error.
"""
from .common import BOOLEAN, NON_EMPTY, enum, integer, obj, string

DIAGNOSTIC_METHOD_PARAMS = {
    "diagnostics.stability": obj({"limit": integer(1, 1000), "type": NON_EMPTY, "sinceSeq": integer(0)}),
    "usage.cost": obj({"days": integer(1, 366), "agentId": NON_EMPTY, "allAgents": BOOLEAN}, closed=False),
    "wake": obj(
        {"mode": enum("now", "next-heartbeat"), "text": string(1, 10_000), "sessionKey": NON_EMPTY, "agentId": NON_EMPTY},
        ("text",),
        closed=False,
    ),
    "commands.list": obj({"agentId": NON_EMPTY, "scope": NON_EMPTY, "includeArgs": BOOLEAN}, closed=False),
    "channels.status": obj({"probe": BOOLEAN, "timeoutMs": integer(0)}),
    "skills.status": obj({"agentId": NON_EMPTY}),
}
