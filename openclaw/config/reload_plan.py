"""What a config change needs: applied in place, a restart of the service tree, or nothing.

One rule table decides, by the most specific matching prefix (``path == prefix`` or
``path`` under ``prefix.``). A key this gateway does not act on (accepted because the reference
accepts it, see :mod:`.accepted`) needs nothing. A used path no rule matches needs a restart: an
unknown change is never assumed safe.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import attrs

from .accepted import is_accepted, node_for
from .overrides import masking

HOT = "hot"
LISTED_PATHS = 50  # paths named in one log line or lastDecision: a huge config.set changes thousands
RESTART = "restart"
NONE = "none"

# Hot actions, in the order they are applied.
RELOAD_SETTINGS = "reload-settings"  # swap the settings object (read on next use)
RELOAD_CATALOG = "reload-catalog"  # rebuild agents/models; running turns keep their model
RESTART_HEARTBEAT = "restart-heartbeat"
RELOAD_RATE_LIMIT = "reload-rate-limit"
RELOAD_HOOKS = "reload-hooks"
RELOAD_LOGGING = "reload-logging"
ACTION_ORDER = (RELOAD_SETTINGS, RELOAD_CATALOG, RELOAD_RATE_LIMIT, RESTART_HEARTBEAT, RELOAD_HOOKS, RELOAD_LOGGING)

RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("gateway.remote", NONE, ()),
    ("gateway.reload", NONE, ()),
    ("gateway.http.endpoints", HOT, ()),
    ("gateway.http.securityHeaders", HOT, ()),
    ("gateway.controlUi", HOT, ()),  # enabled and allowedOrigins are read per request
    ("gateway.controlUi.basePath", RESTART, ()),
    ("gateway.controlUi.root", RESTART, ()),
    ("gateway.nodes", HOT, ()),
    ("gateway.tools", HOT, ()),
    ("gateway.trustedProxies", HOT, ()),
    ("gateway.metrics", HOT, ()),
    ("gateway.auth.rateLimit", HOT, (RELOAD_RATE_LIMIT,)),
    ("gateway", RESTART, ()),  # port, bind, auth mode and secrets, TLS, mode, …
    ("models", HOT, (RELOAD_CATALOG, RESTART_HEARTBEAT)),
    ("agents", HOT, (RELOAD_CATALOG, RESTART_HEARTBEAT)),
    ("agents.defaults.heartbeat", HOT, (RESTART_HEARTBEAT,)),
    ("session", HOT, (RELOAD_CATALOG,)),
    ("env", HOT, (RELOAD_CATALOG,)),  # env.vars may hold provider keys
    ("hooks", HOT, (RELOAD_HOOKS,)),
    ("logging", HOT, (RELOAD_LOGGING,)),
    ("$schema", NONE, ()),
)
_NOT_USED_RULE = ("", NONE, ())


def _matches(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def rule_for(path: str) -> tuple[str, str, tuple[str, ...]] | None:
    """The most specific rule for ``path``, or None (which means restart).

    A key this gateway does not act on (but accepts, as the reference does) needs nothing,
    whatever section it is in."""
    if path != "<root>" and node_for(path) is None and is_accepted(path):
        return _NOT_USED_RULE
    best = None
    for rule in RULES:
        if _matches(path, rule[0]) and (best is None or len(rule[0]) > len(best[0])):
            best = rule
    return best


def classify(path: str) -> str:
    rule = rule_for(path)
    return rule[1] if rule is not None else RESTART


_ABSENT = object()


def diff_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose value differs; objects recurse, arrays and scalars compare whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changed: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else str(key)
            before = old.get(key, _ABSENT)
            after = new.get(key, _ABSENT)
            if before is _ABSENT or after is _ABSENT:
                # An added or removed object counts by its leaves, so adding
                # gateway.http.endpoints is as hot as changing it.
                present = after if before is _ABSENT else before
                leaves = diff_paths({}, present, path) if isinstance(present, Mapping) and present else []
                changed.extend(leaves or [path])
            else:
                changed.extend(diff_paths(before, after, path))
        return changed
    if old != new:
        return [prefix or "<root>"]
    return []


@attrs.frozen
class ReloadPlan:
    changed_paths: tuple[str, ...]
    restart: bool
    restart_reasons: tuple[str, ...]
    hot_paths: tuple[str, ...]
    noop_paths: tuple[str, ...]
    actions: tuple[str, ...]
    # Changed paths an override masks, with what masks them: ``(("gateway.port", "--port"),)``.
    masked: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changed_paths

    @property
    def only_masked(self) -> bool:
        """Every change is to a key the command line or environment overrides."""
        return bool(self.masked) and len(self.masked) == len(self.changed_paths)

    def summary(self) -> dict[str, Any]:
        """For ``lastDecision`` (sent in every ``health``): each list holds at most 50 paths,
        and ``changedPathCount`` says how many there were when that cut one."""
        summary: dict[str, Any] = {
            "changedPaths": list(self.changed_paths[:LISTED_PATHS]),
            "restartGateway": self.restart,
            "restartReasons": list(self.restart_reasons[:LISTED_PATHS]),
            "hotReasons": list(self.hot_paths[:LISTED_PATHS]),
            "noopPaths": list(self.noop_paths[:LISTED_PATHS]),
            "actions": list(self.actions),
        }
        if len(self.changed_paths) > LISTED_PATHS:
            summary["changedPathCount"] = len(self.changed_paths)
        if self.masked:
            summary["maskedPaths"] = {path: source for path, source in self.masked[:LISTED_PATHS]}
        return summary


def listing(paths: Any, limit: int = LISTED_PATHS) -> str:
    """``a, b, c`` for a log line, cut after ``limit`` paths (``…, and 120 more``)."""
    paths = list(paths)
    text = ", ".join(paths[:limit])
    return text + f", and {len(paths) - limit} more" if len(paths) > limit else text


def plan(old: Mapping[str, Any], new: Mapping[str, Any], masked: Mapping[str, str] | None = None) -> ReloadPlan:
    """What the change from ``old`` to ``new`` needs.

    ``masked`` (see :func:`.overrides.masked_paths`) lists keys the command line or environment
    overrides: the effective settings do not change with them, so they neither restart nor apply.
    """
    changed = diff_paths(old, new)
    restart_reasons, hot, noop, hidden = [], [], [], []
    actions: set[str] = set()
    for path in changed:
        source = masking(path, masked or {})
        if source is not None:
            hidden.append((path, source))
            continue
        rule = rule_for(path)
        if rule is None or rule[1] == RESTART:
            restart_reasons.append(path)
        elif rule[1] == HOT:
            hot.append(path)
            actions.add(RELOAD_SETTINGS)
            actions.update(rule[2])
        else:
            noop.append(path)
    if (noop or hidden) and not actions:
        actions.add(RELOAD_SETTINGS)  # keep the running copy equal to the file
    return ReloadPlan(
        changed_paths=tuple(changed),
        restart=bool(restart_reasons),
        restart_reasons=tuple(restart_reasons),
        hot_paths=tuple(hot),
        noop_paths=tuple(noop),
        actions=tuple(action for action in ACTION_ORDER if action in actions),
        masked=tuple(hidden),
    )
