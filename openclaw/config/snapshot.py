"""A config file as read at one moment: its text, what it parses to, whether it is valid, its hash.

Parsing is JSON5; ``${VAR}`` in string values is replaced from the environment (``$${VAR}``
keeps a literal ``${VAR}``); validation is the strict schema in :mod:`.schema`. Every problem is
an issue ``{path, message}`` so operators see them all at once, not one per restart.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Mapping

import attrs
import json5
import jsonschema

from .schema import CONFIG_SCHEMA

MISSING_HASH_INPUT = "missing"
EMPTY_FILE_MESSAGE = "the file is empty (or only whitespace); write {} for a config with every key at its default"
_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.frozen
class ConfigIssue:
    path: str
    message: str

    def to_wire(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


@attrs.frozen
class ConfigSnapshot:
    path: str
    exists: bool
    raw: str | None
    parsed: Mapping[str, Any] | None  # as written (``${VAR}`` unresolved)
    config: Mapping[str, Any]  # resolved and valid, or {} when invalid
    issues: tuple[ConfigIssue, ...]
    hash: str

    @property
    def valid(self) -> bool:
        return not self.issues

    def issue_summary(self, limit: int = 3) -> str:
        text = "; ".join(str(issue) for issue in self.issues[:limit])
        if len(self.issues) > limit:
            text += f"; and {len(self.issues) - limit} more"
        return text


def content_hash(raw: str | None) -> str:
    """sha256 of the file text (of ``"missing"`` when there is no file): ``baseHash`` for writes."""
    return hashlib.sha256((MISSING_HASH_INPUT if raw is None else raw).encode("utf-8")).hexdigest()


def substitute_env(value: Any, env: Mapping[str, str], issues: list[ConfigIssue], path: str = "") -> Any:
    if isinstance(value, Mapping):
        return {key: substitute_env(item, env, issues, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_env(item, env, issues, f"{path}.{index}") for index, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "${" + match.group(2) + "}"
        name = match.group(2)
        if name not in env:
            issues.append(ConfigIssue(path, f"environment variable {name} is not set"))
            return ""
        return env[name]

    return _VAR.sub(replace, value)


def validate(config: Any) -> list[ConfigIssue]:
    issues = []
    for error in sorted(_validator().iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    issues.append(ConfigIssue(f"{path}.{key}" if path else key, "unknown key"))
            continue
        if error.validator == "type":
            expected = error.validator_value
            issues.append(ConfigIssue(path, f"expected {' or '.join(expected) if isinstance(expected, list) else expected}"))
        elif error.validator == "enum":
            issues.append(ConfigIssue(path, "must be one of " + ", ".join(repr(v) for v in error.validator_value)))
        elif error.validator == "required":
            issues.append(ConfigIssue(path, error.message.replace("'", "").replace(" is a required property", " is required")))
        else:
            issues.append(ConfigIssue(path, error.message))
    return issues


_cached_validator: list[jsonschema.Draft7Validator] = []


def _validator() -> jsonschema.Draft7Validator:
    # The schema is a constant, so one compiled validator serves every gateway in the process.
    if not _cached_validator:
        _cached_validator.append(jsonschema.Draft7Validator(CONFIG_SCHEMA))
    return _cached_validator[0]


def parse(raw: str, path: str, env: Mapping[str, str]) -> ConfigSnapshot:
    """A snapshot of ``raw`` (file text) as if it were the file at ``path``."""
    issues: list[ConfigIssue] = []
    parsed: Any = None
    if not raw.strip():
        # A truncated file (``: > openclaw.json``, an editor's half-done save) must not read as
        # "every key at its default": that would drop the auth block and the port.
        issue = ConfigIssue("", EMPTY_FILE_MESSAGE)
        return ConfigSnapshot(path, True, raw, None, {}, (issue,), content_hash(raw))
    try:
        parsed = json5.loads(raw)
    except ValueError as exc:
        issues.append(ConfigIssue("", f"JSON5 parse failed: {exc}"))
    else:
        if not isinstance(parsed, dict):
            issues.append(ConfigIssue("", "the top level must be an object"))
            parsed = None
    config: Mapping[str, Any] = {}
    if parsed is not None:
        resolved = substitute_env(parsed, env, issues)
        issues.extend(validate(resolved))
        if not issues:
            config = resolved
    return ConfigSnapshot(path, True, raw, parsed, config, tuple(issues), content_hash(raw))


def read(path: str, env: Mapping[str, str] | None = None) -> ConfigSnapshot:
    """Read and check the file (blocking: call it off the reactor thread once running)."""
    env = os.environ if env is None else env
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return ConfigSnapshot(path, False, None, None, {}, (), content_hash(None))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ConfigSnapshot(path, True, None, None, {}, (ConfigIssue("", f"cannot read the file: {reason}"),), content_hash(None))
    return parse(raw, path, env)
