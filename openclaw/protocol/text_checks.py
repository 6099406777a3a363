"""Checks that JSON (or JSON5) text is usable before and after it is parsed.

Two kinds of valid JSON hurt the gateway: deep nesting (parsers and every later walk over the
value recurse, so 5,000 levels ended in "maximum recursion depth exceeded", and orjson writes at
most 254 levels, so a reply could never carry the value back) and lone surrogates (``"\\ud800"``
is valid JSON but not Unicode: it cannot be written as UTF-8 to a socket, a file or a database).
Both checks are iterative and linear, so hostile input cannot make them recurse or go quadratic.
Request frames and config text both go through this module (issue 13, items 10 and 11).
"""
from __future__ import annotations

import operator
import re
from itertools import accumulate, count
from typing import Any

#: Request frames may nest this deep: real frames stay under 20 levels, and a reply or event
#: that carries part of a frame back (orjson writes at most 254 levels) still fits.
MAX_FRAME_DEPTH = 128
#: Config text may nest this deep: real configs stay under 10, and the JSON5 parser recurses
#: about fifteen Python frames per level (it fails near 55 levels).
MAX_CONFIG_DEPTH = 32

# What is not structure: JSON/JSON5 strings (either quote) and JSON5 comments. Each may also end
# at the end of the text, so an unterminated one is cut once, never rescanned (which would make
# text like '"\\"\\"\\"...' quadratic).
_NOT_STRUCTURE = re.compile(
    rb'"[^"\\]*(?:\\.?[^"\\]*)*(?:"|\Z)'
    rb"|'[^'\\]*(?:\\.?[^'\\]*)*(?:'|\Z)"
    rb"|//[^\n]*"
    rb"|/\*.*?(?:\*/|\Z)",
    re.DOTALL,
)
_ALL_BUT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnusableText(ValueError):
    """The text parses (or would) but holds something the gateway refuses.

    Its message is a predicate ("is nested deeper than 32 levels") for the caller to put its
    own subject before: "raw", "the frame", "the text".
    """


def nesting_depth(text: bytes | str) -> int:
    """How deep brackets nest in JSON or JSON5 ``text``, strings and comments not counted.

    Linear and at C speed: the non-structure is cut out, the brackets become steps of 2 (open)
    and 0 (close), and after k brackets the depth is the running sum minus k.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= 1:
        return int(b"[" in data or b"{" in data)
    steps = _NOT_STRUCTURE.sub(b"", data).translate(None, _ALL_BUT_BRACKETS).translate(_STEPS)
    return max(map(operator.sub, accumulate(steps), count(1)), default=0)


def refuse_over_deep(text: bytes | str, limit: int) -> None:
    """Raise :class:`UnusableText` when ``text`` nests deeper than ``limit`` levels."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # cannot nest deeper than it has brackets: the usual case, two C scans
    if nesting_depth(data) > limit:
        raise UnusableText(f"is nested deeper than {limit} levels")


def usable_strings(value: Any) -> None:
    """Raise :class:`UnusableText` when a key or string anywhere in ``value`` is not Unicode.

    Python's JSON parsers join a proper pair (``"\\ud83d\\ude00"``) into one character, but turn
    a lone half (``"\\ud800"``) into a string no encoder accepts. Walks containers with an
    explicit stack, so no depth can make it recurse.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: Any = (item,)
        elif isinstance(item, dict):
            strings = [key for key in item if isinstance(key, str)]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            if not text.isascii() and _SURROGATE.search(text):
                raise UnusableText(f"holds a lone surrogate ({_escaped(text)}): not valid Unicode")


def _escaped(text: str) -> str:
    """The offending string, short and printable (surrogates as \\uXXXX escapes)."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    return '"' + shown.encode("ascii", "backslashreplace").decode("ascii") + '"'
