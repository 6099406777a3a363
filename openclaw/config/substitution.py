"""``${VAR}`` in config strings: replaced from the environment, and never shown expanded.

The gateway runs on the expanded values, but what it shows (``config.get``, write answers,
issues, log lines, errors) is the file's own text: an admin may point any key, secret or
not, at ``${OPENCLAW_GATEWAY_TOKEN}``, and every ``operator.read`` client can see non-secret
keys. ``$${VAR}`` is a literal ``${VAR}`` (no substitution).
"""
from __future__ import annotations

import re
from typing import Any
from collections.abc import Mapping

_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A whole value that is one reference, as the reference gateway tests it (``isConcreteSensitiveString``).
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
# Shorter values are not hidden in messages: "1" or "on" would garble every message and hide nothing.
MIN_HIDDEN_LENGTH = 4


class Substitutions:
    """The environment values a config took, so that messages can name ``${VAR}`` instead."""

    def __init__(self) -> None:
        self.used: dict[str, str] = {}  # variable name -> the value it gave
        self.missing: list[tuple[str, str]] = []  # (config path, variable name) of unset variables

    def scrub(self, text: str) -> str:
        """``text`` with every substituted value (of at least 4 characters) put back as ``${VAR}``."""
        for name, value in sorted(self.used.items(), key=lambda item: -len(item[1])):
            if len(value) >= MIN_HIDDEN_LENGTH and value in text:
                text = text.replace(value, "${" + name + "}")
        return text


def has_reference(value: str) -> bool:
    """True when ``value`` takes something from the environment (``$${VAR}`` does not)."""
    return "${" in value and any(not match.group(1) for match in _VAR.finditer(value))


def is_placeholder(value: str) -> bool:
    """The whole value is one ``${…}`` reference: it names a secret, it does not hold one."""
    return _PLACEHOLDER.fullmatch(value.strip()) is not None


def substitute_env(value: Any, env: Mapping[str, str], substitutions: Substitutions, path: str = "") -> Any:
    """``value`` with references replaced (an unset variable gives "" and is listed as missing)."""
    if isinstance(value, Mapping):
        return {
            key: substitute_env(item, env, substitutions, f"{path}.{key}" if path else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [substitute_env(item, env, substitutions, f"{path}.{index}") for index, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "${" + match.group(2) + "}"
        name = match.group(2)
        if name not in env:
            substitutions.missing.append((path, name))
            return ""
        substitutions.used[name] = env[name]
        return env[name]

    return _VAR.sub(replace, value)


def as_written(parsed: Any, resolved: Any) -> Any:
    """``resolved``, except that a string that took something from the environment reads as written."""
    if isinstance(parsed, Mapping) and isinstance(resolved, Mapping):
        return {key: as_written(parsed[key], value) if key in parsed else value for key, value in resolved.items()}
    if isinstance(parsed, list) and isinstance(resolved, list) and len(parsed) == len(resolved):
        return [as_written(before, after) for before, after in zip(parsed, resolved, strict=True)]
    if isinstance(parsed, str) and has_reference(parsed):
        return parsed
    return resolved
