"""The one place the configuration file is read from disk.

The file is JSON5 (comments, trailing commas, unquoted keys) as in the reference. It is read once
at start-up, before the reactor runs; reading it later (hot reload) goes through a thread.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import json5

DEFAULT_STATE_DIR = "~/.openclaw"
CONFIG_FILE_NAME = "openclaw.json"


class ConfigError(Exception):
    """The configuration file exists but cannot be used; the message says why."""


def default_state_dir(env: Mapping[str, str]) -> str:
    return os.path.expanduser(env.get("OPENCLAW_STATE_DIR") or DEFAULT_STATE_DIR)


def config_path_for(explicit: str | None, state_dir: str, env: Mapping[str, str]) -> str:
    return os.path.expanduser(explicit or env.get("OPENCLAW_CONFIG_PATH") or os.path.join(state_dir, CONFIG_FILE_NAME))


def parse_config_text(text: str, source: str = "<config>") -> dict[str, Any]:
    try:
        parsed = json5.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"{source}: not valid JSON5: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError(f"{source}: the top level must be an object")
    return parsed


def read_config_file(path: str) -> dict[str, Any]:
    """The parsed file, or ``{}`` when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config_text(text, path)


def lookup(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``lookup(cfg, "gateway.auth.mode")`` without a chain of ``.get`` calls."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
