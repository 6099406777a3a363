"""Run ``twistd -n openclaw`` as a child process and wait on what it logs, without fixed sleeps.

For tests where the real process matters (a file edited under a running gateway, signals, exit
status). Output lines are collected as they arrive; ``wait_for_line`` fires as soon as one
contains the text (or fails after a bounded time), ``wait_for_port`` retries a TCP connect.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Any
from collections.abc import Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater

# Variables that would override the config file under test.
_OVERRIDING_ENV = ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD", "OPENCLAW_GATEWAY_PORT", "OPENCLAW_CONFIG_PATH", "OPENCLAW_STATE_DIR")
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TwistdGateway(ProcessProtocol):
    """One ``twistd -n openclaw <args>`` child; killed after the test if still running.

    ``ended`` fires with the reason it ended (``ProcessDone``, or ``ProcessTerminated`` with the
    exit status).
    """

    def __init__(self, testcase: Any, args: Sequence[str], env: dict[str, str] | None = None):
        self.lines: list[str] = []
        self._partial = b""
        self._waiters: list[tuple[str, Deferred]] = []
        self.ended: Deferred = Deferred()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        base = {key: value for key, value in os.environ.items() if key not in _OVERRIDING_ENV}
        # The checkout first on the path: twistd finds the plugin in its twisted/plugins even
        # when the package is installed in editable mode (which does not map that folder).
        path = os.pathsep.join(filter(None, (_CHECKOUT, base.get("PYTHONPATH"))))
        env = {**base, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        self.process = reactor.spawnProcess(self, twistd, [twistd, "-n", "--pidfile=", "openclaw", *args], env=env)
        testcase.addCleanup(self.stop)

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for entry in [entry for entry in self._waiters if entry[0] in line]:
                self._waiters.remove(entry)
                entry[1].callback(line)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        for _, waiter in self._waiters:
            waiter.errback(AssertionError("twistd exited:\n" + "\n".join(self.lines[-40:])))
        self._waiters.clear()
        self.ended.callback(reason.value)

    def wait_for_line(self, text: str, timeout_s: float = 20.0) -> Deferred:
        """Fires with the next line that contains ``text`` (call it before causing the line)."""
        waiter: Deferred = Deferred()
        self._waiters.append((text, waiter))

        def explain(failure: Any) -> Any:
            failure.trap(Exception)
            raise AssertionError(f"no line with {text!r} within {timeout_s} s; last lines:\n" + "\n".join(self.lines[-40:]))

        return waiter.addTimeout(timeout_s, reactor).addErrback(explain)

    @inlineCallbacks
    def wait_for_port(self, port: int, attempts: int = 400) -> Any:
        """Retry a TCP connect until the child listens (bounded)."""
        for _ in range(attempts):
            if self.ended.called:
                raise AssertionError("twistd exited:\n" + "\n".join(self.lines[-40:]))
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1)
            try:
                protocol = yield endpoint.connect(Factory.forProtocol(Protocol))
            except Exception:
                yield deferLater(reactor, 0.05, lambda: None)
                continue
            protocol.transport.loseConnection()
            return
        raise AssertionError(f"twistd never listened on {port}:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> Deferred | None:
        if self.ended.called:
            return None
        self.process.signalProcess("KILL")
        return self.ended.addErrback(lambda _: None)
