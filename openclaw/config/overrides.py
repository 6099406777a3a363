"""Which config keys the command line or the environment overrides (they win over the file).

Mirrors the precedence in :func:`openclaw.settings.resolve_settings`: a key listed here has no
effect while the override is set, so the reload planner treats a change to it as ignored rather
than restarting the gateway onto the same settings.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

# (config path, command-line option, environment variable or None)
_OVERRIDABLE: tuple[tuple[str, str, str | None], ...] = (
    ("gateway.port", "port", "OPENCLAW_GATEWAY_PORT"),
    ("gateway.bind", "bind", None),
    ("gateway.auth.mode", "auth", None),
    ("gateway.auth.token", "token", "OPENCLAW_GATEWAY_TOKEN"),
    ("gateway.auth.password", "password", "OPENCLAW_GATEWAY_PASSWORD"),
    ("agents.defaults.model", "model", None),
)


def masked_paths(options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """``{config path (or prefix): what overrides it}``, e.g. ``{"gateway.port": "--port"}``."""
    masked: dict[str, str] = {}
    for path, option, variable in _OVERRIDABLE:
        if options.get(option) is not None:
            masked[path] = f"--{option}"
        elif variable is not None and env.get(variable) is not None:
            masked[path] = variable
    if options.get("tls-cert") or options.get("tls-key"):
        masked["gateway.tls"] = "--tls-cert/--tls-key"
    return masked


def masking(path: str, masked: Mapping[str, str]) -> str | None:
    """What overrides ``path`` (a prefix entry covers everything under it), or None."""
    for prefix, source in masked.items():
        if path == prefix or path.startswith(prefix + "."):
            return source
    return None
