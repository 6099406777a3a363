"""Hot reload, part by part: each part's own reconfigure step, run in one declared order.

A hot config change (:mod:`openclaw.config.reload_plan` names the actions it needs) is applied by
the parts it concerns, each through its own step: the catalog is rebuilt, the auth rate limiter
takes its new limits, the heartbeat re-reads its interval, the log file its level. The hub lists
the steps (``Gateway.reconfigure_steps``) in the order ``reload_plan.ACTION_ORDER`` declares, and
:func:`run_steps` runs those the plan asks for. A new hot-reloadable part is one more entry in
that list, not one more branch in the hub.
"""
from __future__ import annotations

from typing import TYPE_CHECKING
from collections.abc import Callable, Iterable

import attrs

if TYPE_CHECKING:
    from ..settings import GatewaySettings


@attrs.frozen
class ReconfigureStep:
    """One part's step: run when the reload plan's actions include ``action``."""

    action: str  # a reload_plan action (RELOAD_CATALOG, RELOAD_RATE_LIMIT, ...)
    part: str  # what it reconfigures, for the stability record and tests
    apply: Callable[[GatewaySettings], None]


def run_steps(steps: Iterable[ReconfigureStep], settings: GatewaySettings, actions: tuple[str, ...]) -> list[str]:
    """Run, in the steps' order, those that ``actions`` ask for; the parts reconfigured."""
    done = []
    for step in steps:
        if step.action in actions:
            step.apply(settings)
            done.append(step.part)
    return done
