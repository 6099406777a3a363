"""Writing small private files so that a crash leaves either the old file or the new one.

Everything the gateway and its client keep on disk outside SQLite (config, TLS key, device key,
device tokens) goes through here: a temporary file in the same directory, created with the final
mode (never readable by others, whatever the umask), fsynced, renamed over the target, and the
directory fsynced so the rename itself survives a power loss.
"""
from __future__ import annotations

import os
import uuid


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
