"""The reference ``openclaw`` CLI (2026.9.6, on Node) and its TUI against this gateway (issue 15).

Every CLI command that talks to a gateway runs here as a user runs it, against a real
``twistd openclaw`` child with a fake model server as its provider, and must exit 0 without
error text. The TUI is started on a pseudo-terminal; once it has made its start-up calls (the
gateway's ``/metrics`` counts them) every one of them must have succeeded and its screen must
show no error line. ``tests/support/reference.py`` finds Node and the package; without them the
tests skip and say why (CI installs them with ``.ci/install-clients``).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import tempfile
import termios
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tests.support.reference import find_clients
from tests.support.twistd import TwistdGateway, free_port
from tests.support.upstream import FakeUpstream

TOKEN = "reference-cli-test-token"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]|\r")
# What must never appear: the gateway failing a call, or the CLI not reaching it.
ERROR_TEXT = re.compile(
    r"(?i:unknown method|missing scope|not reachable|unreachable|does not support|CLI command failed|traceback|"
    r"probe budget exhausted| failed: )|\b(?:INVALID_REQUEST|UNAVAILABLE|FORBIDDEN)\b"
)
# The CLI's own local housekeeping, not about the gateway: its SQLite under load, and its check
# for a systemd/launchd service ("inspection failed: No supported service manager detected").
LOCAL_NOISE = re.compile(r"^\[sqlite/|service manager")
COMMAND_TIMEOUT_S = 180


class _Node(ProcessProtocol):
    """One reference CLI run: collects its output, fires ``ended`` with the exit code."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:  # noqa: N802
        self.err.append(data)

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(getattr(reason.value, "exitCode", None))

    def text(self) -> str:
        return ANSI.sub("", b"".join(self.out).decode("utf-8", "replace"))

    def err_text(self) -> str:
        return ANSI.sub("", b"".join(self.err).decode("utf-8", "replace"))


class ReferenceCliTests(TestCase):
    timeout = 900

    @inlineCallbacks
    def setUp(self):
        self.clients = find_clients()
        reason = self.clients.missing_cli()
        if reason:
            raise SkipTest(reason)
        self.upstream = FakeUpstream().start(self)
        self.home = tempfile.mkdtemp(prefix="openclaw-refcli-")
        state = os.path.join(self.home, "gateway-state")
        os.makedirs(state)
        self.port = free_port()
        config = self.upstream.config(contextWindow=128000)
        config["gateway"] = {"controlUi": {"root": str(self.clients.control_ui)}} if self.clients.control_ui else {}
        path = os.path.join(state, "openclaw.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        self.gateway = TwistdGateway(
            self, ["--port", str(self.port), "--token", TOKEN, "--state-dir", state, "--config", path]
        )
        yield self.gateway.wait_for_port(self.port)
        yield self.wait_ready()

    @inlineCallbacks
    def wait_ready(self) -> Any:
        """Until ``/readyz`` answers 200: the port listens before the stores have loaded."""
        for _ in range(600):
            response = yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{self.port}/readyz".encode())
            yield readBody(response)
            if response.code == 200:
                return
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail("the gateway never became ready:\n" + "\n".join(self.gateway.lines[-40:]))

    def env(self, local: bool = True) -> dict[str, str]:
        """The CLI's environment: its own home and a config naming the gateway's port and token,
        as a user's local setup has it (``local``), or the gateway by URL in the environment.

        With only ``OPENCLAW_GATEWAY_URL`` the CLI's ``status`` probes its configured port
        (18789) for readiness and calls any other gateway unreachable, the reference's too."""
        home = os.path.join(self.home, "cli-local" if local else "cli")
        os.makedirs(os.path.join(home, ".openclaw"), exist_ok=True)
        env = {
            "PATH": f"{self.clients.node.parent}:/usr/bin:/bin",
            "HOME": home,
            "OPENCLAW_HOME": home,
            "OPENCLAW_STATE_DIR": os.path.join(home, ".openclaw"),
            "NO_COLOR": "1",
            "OPENCLAW_NO_AUTO_UPDATE": "1",
            "DO_NOT_TRACK": "1",
            "OPENCLAW_DISABLE_BONJOUR": "1",
            "TERM": "xterm-256color",
        }
        if local:
            config = os.path.join(home, ".openclaw", "openclaw.json")
            with open(config, "w", encoding="utf-8") as handle:
                json.dump({"gateway": {"mode": "local", "port": self.port, "auth": {"mode": "token", "token": TOKEN}}}, handle)
            # The port named in the environment too: without it, commands that look for the local
            # gateway's lock file (which only the reference gateway writes) fall back to local data.
            env.update(OPENCLAW_CONFIG_PATH=config, OPENCLAW_GATEWAY_PORT=str(self.port))
        else:
            env.update(OPENCLAW_GATEWAY_URL=f"ws://127.0.0.1:{self.port}", OPENCLAW_GATEWAY_TOKEN=TOKEN)
        return env

    @inlineCallbacks
    def run_cli(self, *argv: str, local: bool = True) -> Any:
        node = _Node()
        command = [str(self.clients.node), str(self.clients.cli), *argv]
        process = reactor.spawnProcess(node, command[0], command, env=self.env(local))
        timer = reactor.callLater(COMMAND_TIMEOUT_S, lambda: process.signalProcess("KILL"))
        code = yield node.ended
        if timer.active():
            timer.cancel()
        return code, node.text(), node.err_text()

    @inlineCallbacks
    def check(self, argv: tuple[str, ...], expected: str | None, local: bool = True) -> Any:
        code, out, err = yield self.run_cli(*argv, local=local)
        shown = f"openclaw {' '.join(argv)} -> exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
        self.assertEqual(code, 0, shown)
        lines = [line for line in (out + err).splitlines() if not LOCAL_NOISE.search(line)]
        self.assertEqual([line for line in lines if ERROR_TEXT.search(line)], [], shown)
        if expected is not None:
            self.assertIn(expected, out + err, shown)  # some commands (sessions) print to stderr
        return out

    @inlineCallbacks
    def test_every_gateway_command_exits_zero_without_error_text(self):
        commands: list[tuple[tuple[str, ...], str | None]] = [
            (("health",), "Agents: main (default)"),
            (("status",), "reachable"),
            (("status", "--all"), "reachable"),
            (("sessions",), "Sessions listed"),
            (("models", "list"), "fake/m1"),
            (("devices", "list"), None),
            (("nodes", "list"), "Pending: 0"),
            (("nodes", "status"), "Known: 0"),
            (("agent", "--message", "hi", "--agent", "main"), "Hello there!"),
            (("gateway", "stability"), "run.completed outcome=ok"),
            (("gateway", "usage-cost"), "14 tokens"),
            (("channels", "status"), "Gateway reachable."),
            (("skills", "list"), None),
            (("system", "event", "--text", "hello"), "ok"),
            (("gateway", "call", "status", "--json"), "hello"),
            (("logs", "--limit", "20"), "Log file:"),
        ]
        # And by URL in the environment, the other way users point the CLI at a gateway.
        yield self.check(("gateway", "call", "health", "--json"), '"ok": true', local=False)
        for argv, expected in commands:
            out = yield self.check(argv, expected)
            if argv[0] == "logs":
                body = [line for line in out.splitlines()[1:] if line.strip()]
                self.assertTrue(body, out)
                # Our JSON lines are rendered as "time level subsystem message", never echoed raw.
                self.assertEqual([line for line in body if "{" in line and '"message"' in line], [], out)

    @inlineCallbacks
    def test_cron_commands(self):
        yield self.check(("cron", "status"), None)
        yield self.check(("cron", "list"), None)

    @inlineCallbacks
    def test_config_get_and_patch_through_the_gateway(self):
        """The reference CLI's own `config get|set` edit its local file; through the gateway it is
        `gateway call config.get` / `config.patch` (with the hash from the get)."""
        out = yield self.check(("gateway", "call", "config.get", "--json"), '"hash"')
        base_hash = json.loads(out[out.index("{"):])["hash"]
        params = json.dumps({"raw": '{logging: {level: "debug"}}', "baseHash": base_hash})
        out = yield self.check(("gateway", "call", "config.patch", "--params", params, "--json"), '"changedPaths"')
        self.assertIn("logging.level", out)
        out = yield self.check(("gateway", "call", "config.get", "--json"), '"debug"')

    @inlineCallbacks
    def test_dashboard(self):
        if self.clients.control_ui is None:
            raise SkipTest(self.clients.missing_browser() or "no Control UI files")
        yield self.check(("dashboard", "--no-open"), f"Dashboard URL: http://127.0.0.1:{self.port}/")

    @inlineCallbacks
    def test_tui_starts_without_an_error_line(self):
        node = _Node()
        command = [str(self.clients.node), str(self.clients.cli), "tui"]
        process = reactor.spawnProcess(node, command[0], command, env=self.env(), usePTY=True)
        fcntl.ioctl(process.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        self.addCleanup(lambda: None if node.ended.called else (process.signalProcess("KILL"), node.ended)[1])
        # The TUI's last start-up call is commands.list; wait for the gateway to have answered it.
        for _ in range(1200):
            counts = yield self.request_counts()
            if any(method == "commands.list" for method, _ in counts):
                break
            yield deferLater(reactor, 0.1, lambda: None)
        else:
            self.fail("the TUI never finished starting:\n" + node.text())
        failed = {key: count for key, count in counts.items() if key[1] != "ok"}
        self.assertEqual(failed, {}, node.text())
        for _ in range(100):  # until the screen shows the connected footer
            if "gateway connected" in node.text():
                break
            yield deferLater(reactor, 0.1, lambda: None)
        screen = node.text()
        self.assertIn("gateway connected", screen)
        self.assertEqual([line for line in screen.splitlines() if ERROR_TEXT.search(line)], [], screen)

    @inlineCallbacks
    def request_counts(self) -> Any:
        """``{(method, outcome): count}`` from the gateway's ``/metrics``."""
        agent = Agent(reactor)
        response = yield agent.request(
            b"GET", f"http://127.0.0.1:{self.port}/metrics".encode(), Headers({b"authorization": [f"Bearer {TOKEN}".encode()]})
        )
        body = (yield readBody(response)).decode()
        counts = {}
        for method, outcome, value in re.findall(r'openclaw_requests_total\{method="([^"]+)",outcome="([^"]+)"\} ([0-9.]+)', body):
            counts[(method, outcome)] = float(value)
        return counts
