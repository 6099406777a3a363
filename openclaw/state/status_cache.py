"""``status``'s answer, encoded once per change of what it shows.

Building ``status`` meant building a fresh health snapshot (the session summary, every agent's
section, the config-reload state) and encoding all of it, for an answer that changes a few times
a second at most: about two thirds of a ``status`` request's server time. This keeps the last
answer as JSON bytes with holes for the only parts that move with the clock (``uptimeMs`` and
each recent session's ``age``), filled from the clock on every request. The caller passes a *key*
made of everything else the answer shows (the queued system events, the session summary's
version, connection counts, the config-reload state, the event-loop and process-memory figures,
…); the bytes are rebuilt as soon as the key differs, so a change is seen by the very next
``status``. One entry only: a new key replaces the old one.
"""
from __future__ import annotations

import re
import secrets
from typing import Any
from collections.abc import Callable

import orjson

_HOLE = re.compile(rb'"([0-9a-f]{32}):(u|a:(-?[0-9]+))"')


class Marks:
    """Placeholders a builder puts where the clock's values go; unguessable, so no data can fake one."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.placed = 0

    def uptime(self) -> str:
        self.placed += 1
        return f"{self.token}:u"

    def age(self, updated_at: int) -> str:
        self.placed += 1
        return f"{self.token}:a:{int(updated_at)}"


# A template: the literal pieces, and between each pair a hole: None for uptime, else the
# ``updatedAt`` an age is counted from.
Template = tuple[tuple[bytes, ...], tuple[int | None, ...]]


def compile_template(encoded: bytes, marks: Marks) -> Template | None:
    """Cut ``encoded`` at the placeholders; None if they are not exactly the ones placed."""
    pieces: list[bytes] = []
    holes: list[int | None] = []
    at = 0
    for match in _HOLE.finditer(encoded):
        if match.group(1).decode() != marks.token:
            return None
        pieces.append(encoded[at : match.start()])
        holes.append(None if match.group(2) == b"u" else int(match.group(3)))
        at = match.end()
    pieces.append(encoded[at:])
    if len(holes) != marks.placed:
        return None
    return tuple(pieces), tuple(holes)


def render(template: Template, now_ms: int, uptime_ms: int) -> bytes:
    pieces, holes = template
    out = [pieces[0]]
    for hole, piece in zip(holes, pieces[1:], strict=True):
        out.append(str(uptime_ms if hole is None else max(0, now_ms - hole)).encode())
        out.append(piece)
    return b"".join(out)


class StatusCache:
    """One encoded ``status`` answer and the key it was built for."""

    def __init__(self) -> None:
        self._key: Any = None
        self._template: Template | None = None
        self.builds = 0  # how many times the answer was built (tests, benches)

    def answer(
        self, key: tuple[Any, ...], build: Callable[[Marks | None], dict[str, Any]], now_ms: int, uptime_ms: int
    ) -> Any:
        """The answer as an ``orjson.Fragment``; ``build(marks)`` makes it as plain data when the key
        changed (``build(None)``: with the real values, used when the bytes cannot be templated)."""
        if self._template is None or key != self._key:
            self.builds += 1
            marks = Marks()
            template = compile_template(orjson.dumps(build(marks)), marks)
            if template is None:
                self._key = self._template = None
                return build(None)
            self._key, self._template = key, template
        return orjson.Fragment(render(self._template, now_ms, uptime_ms))
