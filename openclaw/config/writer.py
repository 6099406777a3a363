"""Writing the config file so that a crash never leaves half a file.

The new text goes to a temporary file in the same directory, is fsynced, and is renamed over the
config; the previous version is kept as ``<path>.bak`` (a ring of five). Blocking: callers run
it on a worker thread.
"""
from __future__ import annotations

import os

from ..files import write_atomically as write_file

BACKUPS_KEPT = 5


def _rotate_backups(path: str) -> None:
    for index in range(BACKUPS_KEPT - 1, 0, -1):
        older = f"{path}.bak.{index}"
        newer = f"{path}.bak" if index == 1 else f"{path}.bak.{index - 1}"
        if os.path.exists(newer):
            os.replace(newer, older)


def write_atomically(path: str, text: str) -> None:
    data = text.encode("utf-8")  # fails before anything on disk changes
    if os.path.exists(path):
        _rotate_backups(path)
        # The backup holds the same secrets as the config: 0600, not per the umask.
        with open(path, "rb") as current:
            write_file(f"{path}.bak", current.read())
    write_file(path, data)
