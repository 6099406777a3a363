"""Decoding an inbound text frame: garbage apart from valid JSON the gateway cannot use.

Garbage (not JSON at all) is ignored after ``hello-ok``, as the reference does. Valid JSON that
is nested too deep or holds a lone surrogate (``"\\ud800"``) used to be taken for garbage too, so
its caller waited forever (issue 13, item 10); it is now a :class:`RefusedFrame` that names the
request id, found without parsing the whole frame when the parser refused it.
"""
from __future__ import annotations

import json
import re
from typing import Any

import orjson

from .text_checks import MAX_FRAME_DEPTH, UnusableText, refuse_over_deep, usable_strings

LONE_SURROGATE = "the frame holds a lone surrogate (a \\ud800-\\udfff escape without its pair): not valid Unicode"
# Where the id is looked for when the parser gave up: clients put it near the start.
ID_SEARCH_BYTES = 4096
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')


class RefusedFrame(Exception):
    """Valid JSON that cannot be served: answered INVALID_REQUEST under ``request_id``."""

    def __init__(self, reason: str, request_id: str):
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


def decode_frame(payload: bytes) -> Any:
    """The parsed frame; raises :class:`RefusedFrame`, or orjson.JSONDecodeError for garbage."""
    try:
        frame = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        reason = _refusal_reason(str(exc))
        if reason is None:
            raise
        raise RefusedFrame(reason, top_level_id(payload) or "invalid") from None
    try:
        refuse_over_deep(payload, MAX_FRAME_DEPTH)
    except UnusableText as exc:
        raise RefusedFrame(f"the frame {exc}", _id_of(frame)) from None
    return frame


def _refusal_reason(parser_message: str) -> str | None:
    """Why orjson refused valid JSON, or None when the text is not JSON at all."""
    if parser_message.startswith("depth limit exceeded"):
        return f"the frame is nested deeper than {MAX_FRAME_DEPTH} levels"
    if "surrogate" in parser_message:
        return LONE_SURROGATE
    return None


def _id_of(frame: Any) -> str:
    request_id = frame.get("id") if isinstance(frame, dict) else None
    return request_id if isinstance(request_id, str) and request_id else "invalid"


def top_level_id(payload: bytes) -> str | None:
    """The top-level ``"id"`` string in the first few KiB of ``payload``, when usable.

    A flat scan of strings and punctuation (numbers and literals need no token), so neither the
    nesting nor the size of the rest of the frame costs anything.
    """
    depth, key, previous = 0, None, None
    for match in _TOKENS.finditer(payload, 0, ID_SEARCH_BYTES):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
        elif token in (b"]", b"}"):
            depth -= 1
        elif token == b":":
            key = previous if depth == 1 else None
        elif depth == 1 and key == b'"id"' and previous == b":":
            return _usable_id(token)
        previous = token
    return None


def _usable_id(token: bytes) -> str | None:
    try:
        value = json.loads(token)
        usable_strings(value)
    except ValueError:
        return None
    return value or None
