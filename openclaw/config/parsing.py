"""Parsing config text: JSON5, with plain JSON taken by the C parser first.

The ``json5`` package is pure Python and slow (about 70 KB/s here, linear): a 5 MB config
took over a minute per parse, and a write parsed it three times. Plain JSON is valid JSON5 with
the same meaning, and it is what ``config.patch`` writes and most tools produce, so the
standard library's parser (thousands of times faster) tries first; only text that is not plain
JSON (comments, unquoted keys, single quotes, trailing commas) goes to ``json5``.
"""
from __future__ import annotations

import json
from typing import Any

import json5

from ..protocol.text_checks import MAX_CONFIG_DEPTH, refuse_over_deep, usable_strings

# Config text over this size is refused by config.set/patch/apply (INVALID_REQUEST): real
# configs are a few KB, and JSON5 text this size still takes a few seconds to parse.
MAX_CONFIG_BYTES = 256 * 1024


def parse_config_text(text: str) -> Any:
    """Config text (the file's or a client's) as a value: the one way config text is parsed.

    Raises :class:`~openclaw.protocol.text_checks.UnusableText` for nesting deeper than
    ``MAX_CONFIG_DEPTH`` (checked before parsing: both parsers recurse, and json5 gave up near 55
    levels with "maximum recursion depth exceeded") or a lone surrogate (checked after: it parses,
    but no file or socket can hold it); ValueError (json5's message) when it is not JSON5.
    """
    refuse_over_deep(text, MAX_CONFIG_DEPTH)
    document = load_json5(text)
    usable_strings(document)
    return document


def load_json5(text: str) -> Any:
    """Parse JSON5 ``text``; raises ValueError (json5's message) when it is not JSON5."""
    try:
        return json.loads(text)
    except ValueError:
        return json5.loads(text)


def too_large(text: str) -> str | None:
    """Why ``text`` is over the config size cap, or None (the size is its UTF-8 length)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= MAX_CONFIG_BYTES:
        return None
    return f"config text is {size} bytes; the limit is {MAX_CONFIG_BYTES} bytes ({MAX_CONFIG_BYTES // 1024} KiB)"
