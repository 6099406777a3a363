"""Run the reference node host (``openclaw node run``) as a child process against a test gateway.

It gets its own HOME and state directory, the gateway token from ``OPENCLAW_GATEWAY_TOKEN`` (as
a user would give it), and no outside traffic. The host starts a worker child of its own, so it
runs in a fresh session and the whole group is stopped after the test.
"""
from __future__ import annotations

import os
import signal
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from .reference import ReferenceClients

QUIET_ENV = {
    "OPENCLAW_DISABLE_BONJOUR": "1",
    "OPENCLAW_NO_AUTO_UPDATE": "1",
    "OPENCLAW_NO_RESPAWN": "1",
    "DO_NOT_TRACK": "1",
}
MAX_KEPT_LINES = 400


class ReferenceNodeHost(ProcessProtocol):
    def __init__(self, testcase: Any, clients: ReferenceClients, port: int, token: str, home: str):
        self.lines: list[str] = []
        self._partial = b""
        self.ended: Deferred = Deferred()
        state = os.path.join(home, ".openclaw")
        os.makedirs(state, exist_ok=True)
        node_bin = str(clients.node.parent)
        env = {
            "PATH": os.pathsep.join((node_bin, os.environ.get("PATH", "/usr/bin:/bin"))),
            "HOME": home,
            "OPENCLAW_HOME": home,
            "OPENCLAW_STATE_DIR": state,
            "OPENCLAW_CONFIG_PATH": os.path.join(state, "openclaw.json"),
            "OPENCLAW_GATEWAY_TOKEN": token,
            **QUIET_ENV,
        }
        setsid = shutil.which("setsid")
        args = [str(clients.node), str(clients.cli), "node", "run", "--host", "127.0.0.1", "--port", str(port)]
        if setsid:
            args = [setsid, *args]
        self.process = reactor.spawnProcess(self, args[0], args, env=env, path=home)
        self._group = setsid is not None
        testcase.addCleanup(self.stop)

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend(raw.decode("utf-8", "replace") for raw in complete)
        del self.lines[:-MAX_KEPT_LINES]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(None)

    def tail(self, count: int = 30) -> str:
        return "\n".join(self.lines[-count:])

    def stop(self) -> Deferred | None:
        if self.ended.called:
            return None
        pid = self.process.pid
        try:
            if self._group and pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                self.process.signalProcess("KILL")
        except (ProcessLookupError, OSError):
            pass
        return self.ended
