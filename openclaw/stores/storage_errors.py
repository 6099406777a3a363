"""Disk trouble under a store, told to the client in the protocol's shape (issue 13, item 9).

A full disk used to surface as close 1011 "gateway message handler unavailable", the cause only
in the log. A write that fails because the disk is full or the state directory is unusable is
the operator's to fix and the client's to retry, so it becomes UNAVAILABLE, ``retryable``, with
a message naming the cause; during the handshake the socket then closes with 1013 (try again
later), the code the reference clients retry on.
"""
from __future__ import annotations

import errno
import sqlite3

from twisted.python.failure import Failure

from ..protocol.constants import CLOSE_TRY_AGAIN_LATER
from ..protocol.errors import UNAVAILABLE, GatewayError

RETRY_AFTER_MS = 5_000
CLOSE_REASON = "gateway storage unavailable"
_FULL_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT))
_UNUSABLE_ERRNOS = frozenset((errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM))
# SQLite reports these as OperationalError text (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN).
_FULL_TEXT = ("database or disk is full",)
_UNUSABLE_TEXT = ("disk i/o error", "readonly database", "unable to open database file")


def storage_error(failure: Failure) -> GatewayError | None:
    """The client-facing error for a failed disk write, or None when it is not disk trouble."""
    kind = _kind(failure.value) if failure.value is not None else None
    if kind is None:
        return None
    cause = failure.value.strerror if isinstance(failure.value, OSError) and failure.value.strerror else str(failure.value)
    if kind == "full":
        message = f"storage full: the gateway could not save to disk ({cause}); retry once space is freed"
    else:
        message = f"storage unavailable: the gateway could not save to disk ({cause}); retry later"
    return GatewayError(
        UNAVAILABLE,
        message,
        retryable=True,
        retry_after_ms=RETRY_AFTER_MS,
        close_code=CLOSE_TRY_AGAIN_LATER,
        close_reason=CLOSE_REASON,
    )


def _kind(error: BaseException) -> str | None:
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        if any(marker in text for marker in _FULL_TEXT):
            return "full"
        return "unusable" if any(marker in text for marker in _UNUSABLE_TEXT) else None
    if isinstance(error, OSError):
        if error.errno in _FULL_ERRNOS:
            return "full"
        return "unusable" if error.errno in _UNUSABLE_ERRNOS else None
    return None
