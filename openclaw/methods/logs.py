"""``logs.tail``: the end of the gateway log file, or what was appended since a cursor (§9.7).

The slicing follows the reference's reader so Control UI polling behaves the same:

- no cursor: the last ``maxBytes`` of the file, then at most the last ``limit`` whole lines;
- a cursor: the lines appended since that byte offset; if more than ``maxBytes`` arrived, it
  jumps to the last ``maxBytes`` (``reset``, ``truncated`` and ``skippedBytes`` say so);
- a cursor past the end means the file rotated or shrank: ``reset`` and read the tail again;
- the returned ``cursor`` stops after the last complete line, so a line being written is
  delivered whole by the next call; a partial first line (start inside a line) is dropped.

The file is read on the executor (a thread in production), never on the reactor thread.
"""
from __future__ import annotations

import os
from typing import Any, NoReturn, Protocol
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ..protocol.errors import UNAVAILABLE, GatewayError
from ..protocol.schema.operations import LOGS_TAIL_MAX_BYTES, LOGS_TAIL_MAX_LIMIT
from ..security.scopes import READ
from .registry import MethodSpec, RequestContext

DEFAULT_LIMIT = 500  # the reference's default (its Control UI asks for 500 too)
DEFAULT_MAX_BYTES = 250_000


class Executor(Protocol):
    def submit(self, work: Callable[[], Any]) -> Deferred[Any]: ...


def _clamp(value: Any, low: int, high: int, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return max(low, min(high, value))


def read_log_slice(
    path: str, cursor: int | None = None, limit: int = DEFAULT_LIMIT, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, Any]:
    """``{cursor, size, lines, truncated, reset[, skippedBytes]}`` for ``path`` (blocking I/O)."""
    limit = _clamp(limit, 1, LOGS_TAIL_MAX_LIMIT, DEFAULT_LIMIT)
    max_bytes = _clamp(max_bytes, 1, LOGS_TAIL_MAX_BYTES, DEFAULT_MAX_BYTES)
    if cursor is not None:
        cursor = max(0, int(cursor))
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return {"cursor": 0, "size": 0, "lines": [], "truncated": False, "reset": False}
    with handle:
        size = os.fstat(handle.fileno()).st_size
        reset = truncated = False
        skipped: int | None = None
        tail_start = max(0, size - max_bytes)
        if cursor is None:
            start, truncated = tail_start, tail_start > 0
        elif cursor > size:  # rotated or truncated since the client's last call
            start, reset, truncated = tail_start, True, tail_start > 0
        elif size - cursor > max_bytes:  # too far behind: skip ahead to the tail
            start, reset, truncated, skipped = tail_start, True, True, tail_start - cursor
        else:
            start = cursor
        result: dict[str, Any] = {"cursor": size, "size": size, "lines": [], "truncated": truncated, "reset": reset}
        if skipped is not None:
            result["skippedBytes"] = skipped
        if size <= start:
            return result
        handle.seek(start - 1 if start > 0 else 0)
        data = handle.read(size - start + (1 if start > 0 else 0))
        starts_clean = True
        if start > 0:
            starts_clean, data = data[:1] == b"\n", data[1:]
        parts = data.split(b"\n")
        parts.pop()  # what follows the last newline: empty, or a line still being written
        if not starts_clean and parts:
            parts.pop(0)
        if len(parts) > limit:
            result["truncated"] = True
            parts = parts[-limit:]
        result["lines"] = [part.decode("utf-8", errors="replace") for part in parts]
        result["cursor"] = start + data.rfind(b"\n") + 1
        return result


def methods(executor: Executor) -> list[MethodSpec]:
    """The ``logs.tail`` spec; ``executor.submit(fn)`` runs the read and returns a Deferred."""

    def logs_tail(ctx: RequestContext) -> Deferred[dict[str, Any]]:
        path = getattr(ctx.gateway, "log_file_path", None)
        if not path:
            raise GatewayError(UNAVAILABLE, "the gateway has no log file")
        params = ctx.params if isinstance(ctx.params, dict) else {}
        cursor = params.get("cursor")
        limit = params.get("limit", DEFAULT_LIMIT)
        max_bytes = params.get("maxBytes", DEFAULT_MAX_BYTES)
        log_file = getattr(ctx.gateway, "log_file", None)
        if log_file is not None:
            log_file.flush()  # queued lines first: the executor runs work in order
        d = executor.submit(lambda: read_log_slice(path, cursor, limit, max_bytes))

        def answer(result: dict[str, Any]) -> dict[str, Any]:
            return {"file": path, **result}

        def unreadable(failure: Failure) -> NoReturn:
            failure.trap(OSError)
            error = failure.value
            reason = error.strerror if isinstance(error, OSError) else None
            raise GatewayError(UNAVAILABLE, f"could not read the log file: {reason or error}")

        return d.addCallbacks(answer, unreadable)

    return [MethodSpec("logs.tail", logs_tail, scope=READ)]
