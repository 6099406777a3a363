"""An incremental Server-Sent Events decoder for upstream model streams.

Chunks arrive split anywhere (mid-line, mid-UTF-8 sequence), so lines are cut on bytes and only
complete lines are decoded. The unfinished tail is bounded: an upstream that never ends a line
cannot make the gateway buffer without limit.
"""
from __future__ import annotations

import re

import attrs

MAX_LINE_BYTES = 4 * 1024 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEError(Exception):
    """The stream cannot be decoded (a line longer than the bound)."""


@attrs.frozen
class SSEEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES):
        self._max_line = max_line_bytes
        self._tail = b""
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode what ``chunk`` completes; returns the events dispatched by it."""
        if not chunk:
            return []  # nothing to decode; keeps a pending \r waiting for its possible \n
        buffer = self._tail + chunk
        if self._pending_cr and buffer.startswith(b"\n"):
            buffer = buffer[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = False
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer):
                self._pending_cr = True
            line = buffer[start : match.start()]
            start = match.end()
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        self._tail = buffer[start:]
        if len(self._tail) > self._max_line:
            raise SSEError(f"event stream line longer than {self._max_line} bytes")
        return events

    def finish(self) -> list[SSEEvent]:
        """Flush at end of stream: a final event without its blank line still counts."""
        events = self.feed(b"\n") if self._tail else []
        final = self._dispatch()
        return events + ([final] if final is not None else [])

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event = ""
        self._data = []
        return event
