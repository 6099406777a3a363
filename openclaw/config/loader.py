"""Where the config file and the state directory are, and looking keys up in a parsed config.

Reading and checking the file is :mod:`openclaw.config.snapshot`.
"""
from __future__ import annotations

import os
from typing import Any
from collections.abc import Mapping

DEFAULT_STATE_DIR = "~/.openclaw"
CONFIG_FILE_NAME = "openclaw.json"


class ConfigError(Exception):
    """The configuration file exists but cannot be used; the message says why."""


def default_state_dir(env: Mapping[str, str]) -> str:
    return os.path.expanduser(env.get("OPENCLAW_STATE_DIR") or DEFAULT_STATE_DIR)


def config_path_for(explicit: str | None, state_dir: str, env: Mapping[str, str]) -> str:
    return os.path.expanduser(explicit or env.get("OPENCLAW_CONFIG_PATH") or os.path.join(state_dir, CONFIG_FILE_NAME))


def lookup(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``lookup(cfg, "gateway.auth.mode")`` without a chain of ``.get`` calls."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
