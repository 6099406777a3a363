"""Writing the config file so that a crash never leaves half a file.

The new text goes to a temporary file in the same directory, is fsynced, and is renamed over the
config; the previous version is kept as ``<path>.bak`` (a ring of five). Blocking: callers run
it on a worker thread.
"""
from __future__ import annotations

import os
import uuid

BACKUPS_KEPT = 5


def _rotate_backups(path: str) -> None:
    for index in range(BACKUPS_KEPT - 1, 0, -1):
        older = f"{path}.bak.{index}"
        newer = f"{path}.bak" if index == 1 else f"{path}.bak.{index - 1}"
        if os.path.exists(newer):
            os.replace(newer, older)


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(path):
            _rotate_backups(path)
            # The backup holds the same secrets as the config: create it 0600, not per the umask.
            with open(path, "rb") as current:
                previous = current.read()
            backup_fd = os.open(f"{path}.bak", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            with os.fdopen(backup_fd, "wb") as backup:
                os.fchmod(backup.fileno(), 0o600)
                backup.write(previous)
        os.replace(temporary, path)
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
