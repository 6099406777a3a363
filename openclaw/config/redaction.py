"""Secrets out of ``config.get``, and back in on write.

Sensitive leaves (schema ``x-sensitive`` keys, plus any key that looks like a secret) read as the
sentinel ``__OPENCLAW_REDACTED__`` in both the object and the raw text. A client that edits the
redacted text and sends it back does not know the secrets, so on write every sentinel is
replaced by the value now stored at the same path; a sentinel with nothing to restore is refused.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .schema import sensitive_paths

SENTINEL = "__OPENCLAW_REDACTED__"
_SECRET_NAME = re.compile(r"(^|_|-)(api[_-]?key|apikey|token|password|secret|private[_-]?key)$", re.IGNORECASE)


class SentinelError(ValueError):
    pass


def _is_secret(path: str, key: str) -> bool:
    generic = re.sub(r"\.(providers)\.[^.]+", r".\1.*", path)
    return path in _SENSITIVE or generic in _SENSITIVE or bool(_SECRET_NAME.search(key)) or key == "apiKey"


_SENSITIVE = frozenset(sensitive_paths()) | {"models.providers.*.apiKey"}


def secret_leaves(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every secret string, in document order."""
    found: list[tuple[str, Any]] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, str) and _is_secret(path, str(key)):
                found.append((path, value))
            else:
                found.extend(secret_leaves(value, path))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            found.extend(secret_leaves(value, f"{prefix}.{index}"))
    return found


def redact(config: Any, prefix: str = "") -> Any:
    if isinstance(config, Mapping):
        return {
            key: SENTINEL
            if isinstance(value, str) and value and _is_secret(f"{prefix}.{key}" if prefix else str(key), str(key))
            else redact(value, f"{prefix}.{key}" if prefix else str(key))
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [redact(value, f"{prefix}.{index}") for index, value in enumerate(config)]
    return config


def redact_raw(raw: str, parsed: Any) -> str:
    """The file text with every secret's string literal replaced by the sentinel."""
    for _, value in secret_leaves(parsed):
        if not value or value == SENTINEL:
            continue
        for quote in ('"', "'"):
            raw = raw.replace(f"{quote}{value}{quote}", f"{quote}{SENTINEL}{quote}")
    return raw


def lookup_path(config: Any, path: str) -> Any:
    node = config
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def restore(parsed: Any, current: Any, prefix: str = "") -> Any:
    """``parsed`` with each sentinel leaf replaced by ``current``'s value at that path."""
    if isinstance(parsed, Mapping):
        return {key: restore(value, current, f"{prefix}.{key}" if prefix else str(key)) for key, value in parsed.items()}
    if isinstance(parsed, list):
        return [restore(value, current, f"{prefix}.{index}") for index, value in enumerate(parsed)]
    if parsed == SENTINEL:
        original = lookup_path(current, prefix)
        if not isinstance(original, str) or original == SENTINEL:
            raise SentinelError(f'Sentinel value "{SENTINEL}" in key {prefix} is not valid as real data')
        return original
    return parsed


def restore_raw(raw: str, parsed: Any, current: Any) -> str:
    """The text to write: sentinels replaced, in document order, by the stored secrets."""
    restored = restore(parsed, current)
    values = [value for path, value in _sentinel_paths(parsed, restored)]
    for value in values:
        raw = _replace_first_sentinel(raw, value)
    return raw


def _sentinel_paths(parsed: Any, restored: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(parsed, Mapping):
        for key, value in parsed.items():
            found.extend(_sentinel_paths(value, restored[key], f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(parsed, list):
        for index, value in enumerate(parsed):
            found.extend(_sentinel_paths(value, restored[index], f"{prefix}.{index}"))
    elif parsed == SENTINEL:
        found.append((prefix, restored))
    return found


def _replace_first_sentinel(raw: str, value: str) -> str:
    found = [(raw.find(f"{quote}{SENTINEL}{quote}"), quote) for quote in ('"', "'")]
    found = [(index, quote) for index, quote in found if index >= 0]
    if not found:
        raise SentinelError(f'Sentinel value "{SENTINEL}" could not be restored in the file text')
    index, _ = min(found)
    return raw[:index] + json.dumps(value) + raw[index + len(SENTINEL) + 2 :]
