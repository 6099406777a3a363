"""Method families this gateway does not have (cron, tasks, skills, talk, questions, …).

The reference's clients call these on load and on many pages. Answering ``unknown method`` (or a
misleading ``missing scope``) breaks them; inventing data would lie. So each read answers the
truthful empty state in the reference's shape, and each write answers one clear error in the
protocol's shape that names the feature as not available here. ``hello-ok`` advertises these
methods too: they are implemented, and what they say is true.

Add a family by appending ``empty_read``/``not_available`` specs to :func:`methods` and the params
schemas to ``protocol/schema/absent.py``.
"""
from __future__ import annotations

import copy
from typing import Any

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..security.scopes import ADMIN, READ
from .registry import MethodSpec, RequestContext

FEATURE_NOT_AVAILABLE = "FEATURE_NOT_AVAILABLE"


def feature_not_available(feature: str, method: str) -> GatewayError:
    """The error every write of an absent family answers: clear, final, in the protocol's shape."""
    return GatewayError(
        UNAVAILABLE,
        f"{feature} is not available on this gateway ({method})",
        {"code": FEATURE_NOT_AVAILABLE, "feature": feature, "method": method},
        retryable=False,
    )


def empty_read(name: str, result: Any, scope: str | None = READ) -> MethodSpec:
    """A read whose truthful answer here is always ``result`` (copied per call: callers may mutate)."""

    def handler(ctx: RequestContext) -> Any:
        return copy.deepcopy(result)

    handler.__name__ = f"empty_{name.replace('.', '_')}"
    return MethodSpec(name, handler, scope=scope)


def not_available(name: str, feature: str, scope: str | None = ADMIN) -> MethodSpec:
    """A write (or action) of a family this gateway does not have."""

    def handler(ctx: RequestContext) -> Any:
        raise feature_not_available(feature, name)

    handler.__name__ = f"unavailable_{name.replace('.', '_')}"
    return MethodSpec(name, handler, scope=scope)


def methods() -> list[MethodSpec]:
    return []
