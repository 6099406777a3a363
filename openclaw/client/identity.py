"""The client's device identity and the device tokens the gateway issued to it, on disk.

The Ed25519 key is created on first use and kept in a 0600 PEM file; tokens are kept per
(device, role) in a 0600 JSON file, so a client that reconnects (or starts again) proves itself
with its device token even when it no longer has the shared secret. Both files are small and
read or written once per connection, before or after the handshake.
"""
from __future__ import annotations

import json

from ..files import write_atomically
from ..security.device_identity import DeviceKeyPair


def load_or_create_identity(path: str) -> DeviceKeyPair:
    """The key at ``path``, created (0600) when the file does not exist yet."""
    try:
        with open(path, "rb") as handle:
            return DeviceKeyPair.from_pem(handle.read())
    except FileNotFoundError:
        pass
    key = DeviceKeyPair.generate()
    write_atomically(path, key.private_pem())
    return key


class DeviceTokenStore:
    """``{"<deviceId>:<role>": token}`` in one JSON file (in memory when ``path`` is None)."""

    def __init__(self, path: str | None = None):
        self._path = path
        self._tokens: dict[str, str] = {}
        if path is not None:
            try:
                with open(path, encoding="utf-8") as handle:
                    loaded = json.load(handle)
                if isinstance(loaded, dict):
                    self._tokens = {str(k): str(v) for k, v in loaded.items()}
            except (FileNotFoundError, ValueError):
                self._tokens = {}

    def get(self, device_id: str, role: str) -> str | None:
        return self._tokens.get(f"{device_id}:{role}")

    def put(self, device_id: str, role: str, token: str | None) -> None:
        key = f"{device_id}:{role}"
        if token is None:
            self._tokens.pop(key, None)
        elif self._tokens.get(key) == token:
            return
        else:
            self._tokens[key] = token
        if self._path is not None:
            write_atomically(self._path, json.dumps(self._tokens, indent=2).encode("utf-8"))
