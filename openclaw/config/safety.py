"""The rule a config change must not break by accident: a gateway that has auth keeps it.

Auth mode ``none`` is what a config without a token or password resolves to, so an edit that
drops the auth block (or a file truncated to ``{}``) would reopen the port to every client as
``operator.admin``. Such a change is refused unless the new config itself says
``gateway.auth.mode: "none"``: turning auth off stays possible, but only on purpose. Serving
beyond loopback without auth is refused outright, explicit or not, by
:func:`openclaw.settings.resolve_settings`.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

from ..security.shared_secret import AUTH_NONE, AuthSettings
from .loader import lookup

EXPLICIT_NONE_HINT = 'gateway.auth.mode: "none"'


def auth_downgrade(running: AuthSettings | None, candidate: AuthSettings, config: Mapping[str, Any]) -> str | None:
    """Why taking ``candidate`` would turn auth off by accident, or None when it may be taken.

    ``running`` is the auth of the config in use (None when it cannot be worked out: then the
    gateway is assumed to have auth, the safe side). ``config`` is the new, resolved config.
    """
    if candidate.mode != AUTH_NONE:
        return None
    if running is not None and running.mode == AUTH_NONE:
        return None
    if lookup(config, "gateway.auth.mode") == AUTH_NONE:
        return None
    was = running.mode if running is not None else "on"
    return (
        f"the new config would turn authentication off (auth mode {was} -> none) "
        f"without saying {EXPLICIT_NONE_HINT}"
    )
