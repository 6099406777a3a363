"""The gateway's own exec approvals file (``exec.approvals.get`` / ``exec.approvals.set``).

It holds the exec policy (``security``, ``ask``, ``askFallback``, ``autoAllowSkills``) and
per-agent allowlists in the reference's versioned shape, at ``<state-dir>/exec-approvals.json``.
This gateway runs no commands itself (commands run on nodes, whose own file is reached through
``exec.approvals.node.*``), so the file is kept for the apps that edit it, not enforced here;
docs/nodes.md says so.

Writes follow the config rule: when the file exists, ``baseHash`` (the sha256 of what
``exec.approvals.get`` returned) must match, so two editors cannot overwrite each other. Disk work
runs on the file executor, never on the reactor thread; writes are atomic.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any
from collections.abc import Mapping

import orjson
from twisted.internet.defer import Deferred

from ..files import write_atomically
from ..protocol.errors import invalid_request
from ..stores.sqlite import Executor

FILE_NAME = "exec-approvals.json"
MAX_FILE_BYTES = 256 * 1024
BUILT_IN_DEFAULTS = {"security": "full", "ask": "off", "askFallback": "deny", "autoAllowSkills": False}
SECURITY = ("deny", "allowlist", "full")
ASK = ("off", "on-miss", "always")


def empty_file() -> dict[str, Any]:
    return {"version": 1, "defaults": {}, "agents": {}}


def resolved_defaults(file: Mapping[str, Any]) -> dict[str, Any]:
    """The policy in force: the file's defaults where valid, the built-in ones elsewhere."""
    defaults = file.get("defaults") or {}
    resolved = dict(BUILT_IN_DEFAULTS)
    if defaults.get("security") in SECURITY:
        resolved["security"] = defaults["security"]
    if defaults.get("ask") in ASK:
        resolved["ask"] = defaults["ask"]
    if defaults.get("askFallback") in SECURITY:
        resolved["askFallback"] = defaults["askFallback"]
    if isinstance(defaults.get("autoAllowSkills"), bool):
        resolved["autoAllowSkills"] = defaults["autoAllowSkills"]
    return resolved


class ExecApprovalsFile:
    def __init__(self, state_dir: str, executor: Executor):
        self.path = os.path.join(state_dir, FILE_NAME)
        self._executor = executor

    def _snapshot(self, raw: bytes | None) -> dict[str, Any]:
        exists = raw is not None
        file = empty_file()
        if raw is not None:
            try:
                loaded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                loaded = None
            if isinstance(loaded, dict) and loaded.get("version") == 1:
                file = {**empty_file(), **loaded}
        text = raw if raw is not None else orjson.dumps(file)
        return {
            "path": self.path,
            "exists": exists,
            "file": file,
            "hash": hashlib.sha256(text).hexdigest(),
            "resolvedDefaults": resolved_defaults(file),
        }

    def _read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as handle:
                return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
        except FileNotFoundError:
            return None

    def get(self) -> Deferred[dict[str, Any]]:
        """Fires with ``{path, exists, file, hash, resolvedDefaults}``."""
        return self._executor.submit(lambda: self._snapshot(self._read()))

    def set(self, file: Mapping[str, Any], base_hash: str | None) -> Deferred[dict[str, Any]]:
        """Replace the file; fires with the new snapshot (or fails when ``baseHash`` is stale)."""
        data = orjson.dumps(dict(file), option=orjson.OPT_INDENT_2)
        if len(data) > MAX_FILE_BYTES:
            raise invalid_request(f"exec approvals file too large (max {MAX_FILE_BYTES} bytes)")

        def work() -> dict[str, Any]:
            current = self._read()
            if current is not None:
                if not base_hash:
                    raise invalid_request("exec approvals base hash required; re-run exec.approvals.get and retry")
                if hashlib.sha256(current).hexdigest() != base_hash:
                    raise invalid_request("exec approvals changed since last load; re-run exec.approvals.get and retry")
            write_atomically(self.path, data)
            return self._snapshot(data)

        return self._executor.submit(work)

