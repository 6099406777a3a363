"""Start-up checks of the state on disk, run before the reactor does (issue 13, item 8).

The stores load on their worker threads once the reactor runs, so a corrupt ``sessions.sqlite``
or an unwritable state directory used to surface only as a log line, and ``twistd`` exited 0:
a supervisor (``Restart=on-failure``) never saw the failure. Opening each store here, inline,
before anything listens, turns those causes into a :class:`GatewayStartError` that ``makeService``
reports with a non-zero exit status. Blocking is fine at this point: nothing is being served yet.
"""
from __future__ import annotations

import os
import uuid
from typing import Any
from collections.abc import Callable, Sequence

from twisted.python.failure import Failure

# Builds a store (with ``load()`` and ``close()``) on the file at a path, working inline.
StoreOpener = Callable[[str], Any]


class GatewayStartError(Exception):
    """The gateway cannot start; the message names the cause and the path to act on."""


def check_state_dir(state_dir: str) -> None:
    """The state directory exists (created 0700 if missing) and a file can be created in it."""
    probe = os.path.join(state_dir, f".write-probe-{uuid.uuid4().hex}")
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise GatewayStartError(f"the state directory {state_dir} cannot be used: {exc.strerror or exc}") from None


def check_store(name: str, path: str, open_store: StoreOpener) -> None:
    """Open and load one store the way the gateway will (inline, on this thread), then close it.

    Loading reads the tables too, so a file from another version (no ``sessions`` table, say)
    fails here as well as one that is not a database at all.
    """
    store = open_store(path)
    outcome: list[Any] = []
    store.load().addBoth(outcome.append)
    store.close().addErrback(lambda _: None)
    if outcome and isinstance(outcome[0], Failure):
        raise GatewayStartError(f"could not open the {name} at {path}: {outcome[0].getErrorMessage()}")


def check_state(state_dir: str, stores: Sequence[tuple[str, str, StoreOpener]]) -> None:
    """Every check, state directory first; raises the first :class:`GatewayStartError`."""
    check_state_dir(state_dir)
    for name, file_name, open_store in stores:
        check_store(name, os.path.join(state_dir, file_name), open_store)
