"""Secrets out of ``config.get``, and back in on write.

Sensitive leaves (schema ``x-sensitive`` keys, plus any key that looks like a secret) read as the
sentinel ``__OPENCLAW_REDACTED__`` in both the object and the raw text, except a value that is
one ``${VAR}`` reference: it names the secret without holding it, and reads as written (as in
the reference gateway). A client that edits the
redacted text and sends it back does not know the secrets, so on write every sentinel is
replaced by the value now stored at the same path; a sentinel with nothing to restore is refused.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .parsing import load_json5
from .schema import sensitive_paths
from .substitution import is_placeholder

SENTINEL = "__OPENCLAW_REDACTED__"
# The reference's heuristic (``src/config/sensitive-paths.ts``), applied to the key: camelCase
# names such as ``channels.telegram.botToken`` or ``signingSecret`` are secrets too.
_SECRET_NAME = re.compile(
    r"token$|password|secret|api.?key|encrypt.?key|private.?key|serviceaccount(?:ref)?$", re.IGNORECASE
)
_NOT_SECRET_SUFFIXES = (
    "maxtokens", "maxoutputtokens", "maxinputtokens", "maxcompletiontokens", "contexttokens", "totaltokens",
    "tokencount", "tokenlimit", "tokenbudget", "passwordfile",
)


class SentinelError(ValueError):
    pass


def _is_secret(path: str, key: str) -> bool:
    # Asked for every key of every config.get: the path rewrite only where it can matter.
    if key in _SENSITIVE_KEYS and (path in _SENSITIVE or _PROVIDER.sub(r".\1.*", path) in _SENSITIVE):
        return True
    return bool(_SECRET_NAME.search(key)) and not key.lower().endswith(_NOT_SECRET_SUFFIXES)


_SENSITIVE = frozenset(sensitive_paths()) | {"models.providers.*.apiKey"}
_SENSITIVE_KEYS = frozenset(path.rsplit(".", 1)[-1] for path in _SENSITIVE)
_PROVIDER = re.compile(r"\.(providers)\.[^.]+")


def _hidden(value: Any, path: str, key: str) -> bool:
    """A secret string that holds the secret itself: ``"${VAR}"`` only names one, and reads as is."""
    return isinstance(value, str) and bool(value) and _is_secret(path, key) and not is_placeholder(value)


def secret_leaves(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every secret string that ``redact`` hides, in document order."""
    found: list[tuple[str, Any]] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if _hidden(value, path, str(key)):
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
            if _hidden(value, f"{prefix}.{key}" if prefix else str(key), str(key))
            else redact(value, f"{prefix}.{key}" if prefix else str(key))
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [redact(value, f"{prefix}.{index}") for index, value in enumerate(config)]
    return config


# JSON5 comments and string literals; scanning them in order tells a value from a comment.
_TOKEN = re.compile(r"""//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""", re.DOTALL)
_KEY_FOLLOWS = re.compile(r"\s*:")
_QUOTE = re.compile(r"[\"']")


def _tokens(raw: str) -> Iterator[tuple[int, int, str, Any]]:
    """``(start, end, text, value)`` of each comment (value None) and string value (not keys)."""
    for match in _TOKEN.finditer(raw):
        text = match.group()
        if text[0] not in "\"'":
            yield match.start(), match.end(), text, None
        elif not _KEY_FOLLOWS.match(raw, match.end()):
            yield match.start(), match.end(), text, text[1:-1] if "\\" not in text else load_json5(text)


def _quoted(value: str, quote: str) -> str:
    body = json.dumps(value, ensure_ascii=False)[1:-1]
    if quote == "'":
        body = body.replace('\\"', '"').replace("'", "\\'")
    return quote + body + quote


def _splice(raw: str, replacements: list[tuple[int, int, str]]) -> str:
    pieces, last = [], 0
    for start, end, text in replacements:
        pieces += [raw[last:start], text]
        last = end
    pieces.append(raw[last:])
    return "".join(pieces)


def _hide_quoted(comment: str, secrets: set[str]) -> str:
    """``comment`` with each quoted secret (``"s"`` or ``'s'``) replaced by the sentinel.

    One pass over the quote characters (each span between two equal quotes is looked up in the
    set), not one ``replace`` per secret: a file with many comments and many secrets stays linear.
    """
    found, position = [], 0
    for match in _QUOTE.finditer(comment):
        index, char = match.start(), match.group()
        if index < position:
            continue
        close = comment.find(char, index + 1)
        if close > 0 and comment[index + 1 : close] in secrets:
            found.append((index + 1, close, SENTINEL))
            position = close + 1
    hidden = _splice(comment, found)
    for secret in (secret for secret in secrets if '"' in secret or "'" in secret):  # rare: quotes inside
        for quote in ('"', "'"):
            hidden = hidden.replace(f"{quote}{secret}{quote}", f"{quote}{SENTINEL}{quote}")
    return hidden


def redact_raw(raw: str, parsed: Any) -> str:
    """The file text with every string literal holding a secret replaced by the sentinel.

    Literals are compared by value, so a secret written with escapes is found too; a secret
    quoted inside a comment is replaced there as well.
    """
    secrets = {value for _, value in secret_leaves(parsed) if value and value != SENTINEL}
    if not secrets:
        return raw
    replacements = []
    for start, end, text, value in _tokens(raw):
        if value is None:
            hidden = _hide_quoted(text, secrets)
            if hidden != text:
                replacements.append((start, end, hidden))
        elif value in secrets:
            replacements.append((start, end, text[0] + SENTINEL + text[0]))
    return _splice(raw, replacements)


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
    """The text to write: sentinel values replaced, in document order, by the stored secrets.

    Each literal keeps its quote style, so sending back the redacted text unchanged writes the
    original text. Sentinels inside comments stay as they are; if the literals and the parsed
    document disagree, the write is refused rather than a secret put at the wrong key.
    """
    restored = restore(parsed, current)
    values = [value for _, value in _sentinel_paths(parsed, restored)]
    literals = [(start, end, text[0]) for start, end, text, value in _tokens(raw) if value == SENTINEL]
    if not literals and not values:
        return raw
    if len(literals) != len(values):
        raise SentinelError(f'Sentinel value "{SENTINEL}" could not be restored in the file text')
    text = _splice(raw, [(start, end, _quoted(value, quote)) for (start, end, quote), value in zip(literals, values, strict=True)])
    if load_json5(text) != restored:
        raise SentinelError(f'Sentinel value "{SENTINEL}" could not be restored in the file text')
    return text


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
