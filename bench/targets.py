"""The gateways a benchmark run measures: ones the suite starts itself, or any running URL.

A started target knows its pid (for resident memory) and can be cold-started again (for start-up
time). Ours runs under ``twistd`` from this checkout's interpreter, the floor is
``bench/echo_floor.py``, and the reference is the published OpenClaw gateway started by
``../shared/reference/start-gateway.sh`` when its Node install is present.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, protocol, reactor, task

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


class _Probe(WebSocketClientProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if b"connect.challenge" in payload and not self.factory.seen.called:
            self.factory.seen.callback(None)
        self.transport.abortConnection()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.seen.called:
            self.factory.seen.errback(ConnectionError(reason))


class _ProbeFactory(WebSocketClientFactory):
    protocol = _Probe

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        if not self.seen.called:
            self.seen.errback(reason)


def _challenge_once(url: str) -> defer.Deferred:
    factory = _ProbeFactory(url)
    factory.seen = defer.Deferred()
    connectWS(factory, timeout=2)
    return factory.seen


@defer.inlineCallbacks
def wait_for_challenge(url: str, deadline_s: float, process_alive) -> Any:
    """Poll every 10 ms until the first ``connect.challenge`` arrives; returns when it did."""
    stop_at = time.monotonic() + deadline_s
    while time.monotonic() < stop_at:
        if not process_alive():
            raise RuntimeError(f"the process exited before {url} answered")
        try:
            yield _challenge_once(url)
            return time.perf_counter()
        except Exception:
            yield task.deferLater(reactor, 0.01, lambda: None)
    raise TimeoutError(f"no connect.challenge from {url} within {deadline_s} s")


class _Process(protocol.ProcessProtocol):
    def __init__(self, log_path: Path):
        self.ended = defer.Deferred()
        self.log = open(log_path, "ab")

    def outReceived(self, data: bytes) -> None:
        self.log.write(data)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.log.close()
        self.ended.callback(None)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class Target:
    """A gateway under test. ``command`` set means the suite starts and stops it itself."""

    def __init__(
        self,
        name: str,
        url: str,
        token: str,
        *,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        pid: int | None = None,
        has_model: bool = False,
        start_deadline_s: float = 60.0,
        workdir: Path | None = None,
    ):
        self.name = name
        self.url = url
        self.token = token
        self.command = command
        self.env = env
        self.pid = pid
        self.has_model = has_model
        self.start_deadline_s = start_deadline_s
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"openclaw-bench-{name}-"))
        self.cpus: str | None = None  # "0": started under ``taskset -c 0``, away from the load client
        self._process: Any = None

    @property
    def can_start(self) -> bool:
        return self.command is not None

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Start the process; returns seconds from just before exec to the first challenge."""
        handler = _Process(self.workdir / "process.log")
        command = [shutil.which("taskset") or "taskset", "-c", self.cpus, *self.command] if self.cpus else self.command
        started = time.perf_counter()
        self._process = reactor.spawnProcess(
            handler, command[0], command, env=self.env or dict(os.environ), path=str(ROOT)
        )
        self._process.handler = handler
        self.pid = self._process.pid
        try:
            arrived = yield wait_for_challenge(self.url, self.start_deadline_s, lambda: not handler.ended.called)
        except Exception:
            yield self.stop()
            raise
        return arrived - started

    @defer.inlineCallbacks
    def stop(self) -> Any:
        process, self._process = self._process, None
        if process is None:
            return
        if not process.handler.ended.called:
            process.signalProcess(signal.SIGTERM)
            killer = reactor.callLater(20, lambda: process.handler.ended.called or process.signalProcess(signal.SIGKILL))
            yield process.handler.ended
            if killer.active():
                killer.cancel()
        self.pid = None

    def rss_mb(self) -> float:
        return round(_rss_kb(self.pid) / 1024, 1) if self.pid else 0.0

    def cpu_seconds(self) -> float | None:
        """CPU time of the process tree so far: a cost that barely moves with the load around it.

        Summed from every thread's ``schedstat`` (nanoseconds), as the clock-tick counters of
        ``/proc/PID/stat`` are too coarse (10 ms) for a few hundred handshakes.
        """
        if not self.pid:
            return None
        total_ns = 0
        for pid in [self.pid, *_descendants(self.pid)]:
            try:
                threads = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for thread in threads:
                try:
                    total_ns += int((thread / "schedstat").read_text().split()[0])
                except (OSError, IndexError, ValueError):
                    continue
        return total_ns / 1e9

    def tree_rss_mb(self) -> float:
        if not self.pid:
            return 0.0
        return round(sum(_rss_kb(pid) for pid in [self.pid, *_descendants(self.pid)]) / 1024, 1)


def ours(
    port: int, token: str, upstream_url: str | None, profile: Path | None = None, *, name: str = "ours",
    root: Path = ROOT,
) -> Target:
    """A checkout's gateway under twistd (this one unless ``root`` says which), fresh state, the bench model.

    Another checkout (``name@PATH`` in the suite's ``--targets``, e.g. the commit before a change)
    runs with its own ``.venv`` when it has one, so before and after meet the same machine in
    every round.
    """
    target = Target(name, f"ws://127.0.0.1:{port}", token, has_model=upstream_url is not None)
    state = target.workdir / "state"
    state.mkdir()
    config: dict[str, Any] = {"gateway": {"port": port}}
    if upstream_url:
        config.update(_model_config(upstream_url))
    (state / "openclaw.json").write_text(json.dumps(config, indent=2))
    python = root / ".venv" / "bin" / "python" if root != ROOT else Path(sys.executable)
    twistd = str(python.with_name("twistd") if python.exists() else Path(sys.executable).with_name("twistd"))
    # As installed for real: byte code cached after the first start (an environment that forbids
    # writing it would recompile the whole package on every start and time that instead).
    target.env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    # This checkout's code and its twisted/plugins drop-in, whatever the venv has installed.
    target.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    target.command = [
        twistd, "-n", "--pidfile=", "openclaw", "--port", str(port), "--token", token, "--state-dir", str(state),
    ]
    if profile is not None:
        target.command = _profiled(target.command, profile)
    return target


def _profiled(command: list[str], output: Path) -> list[str]:
    """The same twistd arguments, run in-process under pyinstrument by ``profiled_twistd.py``."""
    return [sys.executable, str(BENCH / "profiled_twistd.py"), str(output), *command[1:]]


def floor(port: int) -> Target:
    target = Target("floor", f"ws://127.0.0.1:{port}", "unused")
    target.command = [sys.executable, str(BENCH / "echo_floor.py"), "--port", str(port)]
    return target


def reference(port: int, token: str, upstream_url: str | None, shared: Path) -> Target | None:
    """The published gateway, if ``../shared/reference/setup.sh`` has installed it; else None."""
    anchor = Path(os.environ.get("ANCHOR", Path.home() / ".cache" / "openclaw-reference"))
    script = shared / "reference" / "start-gateway.sh"
    if not script.exists() or not (anchor / "node_modules" / "openclaw" / "openclaw.mjs").exists():
        return None
    target = Target("reference", f"ws://127.0.0.1:{port}", token, has_model=upstream_url is not None,
                    start_deadline_s=300.0)  # a loaded 2-core machine took over 2 minutes
    home = target.workdir / "home"
    (home / ".openclaw").mkdir(parents=True)
    config: dict[str, Any] = {
        "gateway": {
            "mode": "local", "port": port, "bind": "loopback",
            "auth": {"mode": "token", "token": token},
            "tailscale": {"mode": "off"},
        },
        "discovery": {"mdns": {"mode": "off"}},
        "update": {"checkOnStart": False},
        "telemetry": {"enabled": False},
        "models": {"catalogRefresh": {"enabled": False}},
    }
    if upstream_url:
        model = _model_config(upstream_url)
        config["models"].update(model["models"])
        config["agents"] = model["agents"]
    (home / ".openclaw" / "openclaw.json").write_text(json.dumps(config, indent=2))
    env = dict(os.environ, ANCHOR=str(anchor))
    target.command = ["/bin/bash", str(script), str(port), token, str(home)]
    target.env = env
    return target


def _model_config(upstream_url: str) -> dict[str, Any]:
    return {
        "models": {
            "providers": {
                "bench": {
                    "baseUrl": upstream_url,
                    "apiKey": "bench-key",
                    "api": "openai-completions",
                    "models": [{"id": "m", "name": "bench model", "contextWindow": 32000, "maxTokens": 4096}],
                }
            }
        },
        "agents": {"defaults": {"model": {"primary": "bench/m"}}},
    }
