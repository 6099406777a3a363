"""A config file as read at one moment: its text, what it parses to, whether it is valid, its hash.

Parsing is JSON5; ``$include`` directives pull in other files (see :mod:`.includes`);
``${VAR}`` in string values is replaced from the environment (``$${VAR}`` keeps a literal ``${VAR}``, see :mod:`.substitution`, which also keeps expanded values out of
what is shown); validation is the strict schema in :mod:`.schema`. Every problem is
an issue ``{path, message}`` so operators see them all at once, not one per restart.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any
from collections.abc import Mapping

import attrs
import jsonschema

from ..protocol.text_checks import UnusableText
from .accepted import cached_accepted_schema
from .includes import IncludeError, resolve_includes, uses_includes
from .parsing import parse_config_text
from .substitution import Substitutions, as_written, substitute_env

MISSING_HASH_INPUT = "missing"
EMPTY_FILE_MESSAGE = "the file is empty (or only whitespace); write {} for a config with every key at its default"


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
    # ``config`` as shown to clients: a value that came from ``${VAR}`` reads as written.
    shown: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    substitutions: Substitutions = attrs.field(factory=Substitutions, repr=False, eq=False)
    # Files pulled in by ``$include`` (real paths): the reload poller watches them too.
    included_files: tuple[str, ...] = attrs.field(default=(), repr=False, eq=False)

    @property
    def valid(self) -> bool:
        return not self.issues

    def scrub(self, text: str) -> str:
        """A message about this config, with any value taken from the environment as ``${VAR}``."""
        return self.substitutions.scrub(text)

    def issue_summary(self, limit: int = 3) -> str:
        text = "; ".join(str(issue) for issue in self.issues[:limit])
        if len(self.issues) > limit:
            text += f"; and {len(self.issues) - limit} more"
        return text


def content_hash(raw: str | None) -> str:
    """sha256 of the file text (of ``"missing"`` when there is no file): ``baseHash`` for writes."""
    return hashlib.sha256((MISSING_HASH_INPUT if raw is None else raw).encode("utf-8")).hexdigest()


def _problem(error: jsonschema.ValidationError) -> str:
    """What is wrong, from the rule alone: the value itself is never quoted (it may be a secret,
    or an expanded ``${VAR}``, and issues reach ``operator.read`` clients and the log)."""
    rule = error.validator
    limit: Any = error.validator_value  # the keyword's value in the schema: any JSON
    if rule == "type":
        return f"expected {' or '.join(limit) if isinstance(limit, list) else limit}"
    if rule == "enum":
        return "must be one of " + ", ".join(repr(v) for v in limit)
    if rule == "required":
        return error.message.replace("'", "").replace(" is a required property", " is required")
    if rule in ("minimum", "maximum"):
        return f"must be at {'least' if rule == 'minimum' else 'most'} {limit}"
    if rule == "minLength":
        return "must not be empty" if limit == 1 else f"must be at least {limit} characters long"
    if rule == "maxLength":
        return f"must be at most {limit} characters long"
    if rule == "pattern":
        names = "propertyNames" in error.schema_path
        return f"key names must match {limit}" if names else f"must match {limit}"
    if rule == "const":
        return f"must be {json.dumps(limit)}"
    if rule in ("anyOf", "oneOf"):
        return "does not match any allowed form"
    if rule == "exclusiveMinimum":
        return f"must be greater than {limit}"
    if rule == "exclusiveMaximum":
        return f"must be less than {limit}"
    if rule == "propertyNames":
        pattern = (limit or {}).get("pattern") if isinstance(limit, dict) else None
        return f"key names must match {pattern}" if pattern else "has a key name that is not allowed"
    if rule in ("minItems", "maxItems"):
        return f"must have at {'least' if rule == 'minItems' else 'most'} {limit} items"
    return f"fails the schema rule {rule!r}"


def validate(config: Any) -> list[ConfigIssue]:
    errors = sorted(_validator().iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return list(dict.fromkeys(_issues(errors)))


def _issues(errors: Any) -> list[ConfigIssue]:
    issues = []
    for error in errors:
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    issues.append(ConfigIssue(f"{path}.{key}" if path else key, "unknown key"))
            continue
        if error.validator in ("anyOf", "oneOf"):
            inner = _closest_alternative(error)
            if inner:
                issues.extend(_issues(inner))
                continue
        issues.append(ConfigIssue(path, _problem(error)))
    return issues


def _closest_alternative(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For a value matching none of several forms: the errors of the one form of the value's
    own type (an object with a typo'd key names that key), or [] when that is not one form."""
    by_option: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        by_option.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)
    same_type = [
        errors for errors in by_option.values()
        if not any(sub.validator in ("type", "const", "enum") and not sub.relative_path for sub in errors)
    ]
    return same_type[0] if len(same_type) == 1 else []


_cached_validator: list[jsonschema.Draft7Validator] = []


def _validator() -> jsonschema.Draft7Validator:
    # The schema is built from files in the package, so one compiled validator serves every
    # gateway in the process.
    if not _cached_validator:
        _cached_validator.append(jsonschema.Draft7Validator(cached_accepted_schema()))
    return _cached_validator[0]


def parse(raw: str, path: str, env: Mapping[str, str], document: Any = None) -> ConfigSnapshot:
    """A snapshot of ``raw`` (file text) as if it were the file at ``path``.

    ``document`` is ``raw`` already parsed, when the caller has it (a write parses the client's
    text once, not once per step).
    """
    issues: list[ConfigIssue] = []
    parsed: Any = None
    if not raw.strip():
        # A truncated file (``: > openclaw.json``, an editor's half-done save) must not read as
        # "every key at its default": that would drop the auth block and the port.
        issue = ConfigIssue("", EMPTY_FILE_MESSAGE)
        return ConfigSnapshot(path, True, raw, None, {}, (issue,), content_hash(raw))
    try:
        parsed = parse_config_text(raw) if document is None else document
    except UnusableText as exc:
        issues.append(ConfigIssue("", f"the text {exc}"))
    except ValueError as exc:
        issues.append(ConfigIssue("", f"JSON5 parse failed: {exc}"))
    else:
        if not isinstance(parsed, dict):
            issues.append(ConfigIssue("", "the top level must be an object"))
            parsed = None
    config: Mapping[str, Any] = {}
    substitutions = Substitutions()
    written = parsed  # with every $include in place, ${VAR} not yet expanded
    included: list[str] = []
    if parsed is not None and uses_includes(raw):
        try:
            written = resolve_includes(parsed, path, env, included)
        except IncludeError as exc:
            issues.append(ConfigIssue(exc.where, exc.message))
            written = None
    if written is not None:
        resolved = substitute_env(written, env, substitutions)
        issues.extend(ConfigIssue(where, f"environment variable {name} is not set") for where, name in substitutions.missing)
        issues.extend(ConfigIssue(issue.path, substitutions.scrub(issue.message)) for issue in validate(resolved))
        if not issues:
            config = resolved
    shown = as_written(written, config) if config else {}
    return ConfigSnapshot(path, True, raw, parsed, config, tuple(issues), content_hash(raw), shown, substitutions, tuple(included))


def read(path: str, env: Mapping[str, str] | None = None, known: tuple[ConfigSnapshot | None, ...] = ()) -> ConfigSnapshot:
    """Read and check the file (blocking: call it off the reactor thread once running).

    A snapshot in ``known`` (taken with the same ``env``) whose text equals the file's is
    returned as it is: reading the file again costs a read and a compare, not a parse. A
    snapshot with ``$include`` files is always read anew: an included file may have changed.
    """
    env = os.environ if env is None else env
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return ConfigSnapshot(path, False, None, None, {}, (), content_hash(None))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ConfigSnapshot(path, True, None, None, {}, (ConfigIssue("", f"cannot read the file: {reason}"),), content_hash(None))
    for snapshot in known:
        if snapshot is not None and snapshot.path == path and snapshot.raw == raw and not snapshot.included_files:
            return snapshot
    return parse(raw, path, env)
