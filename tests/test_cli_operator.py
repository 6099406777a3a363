"""``openclaw-gateway`` as an operator uses it: chat, agent, logs, config, models, dashboard, and a
wrong secret that a stored device token papered over. Real gateway, real streaming upstream."""
from __future__ import annotations

import io
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.client import render
from openclaw.client.cli import run
from openclaw.client.commands import dashboard_url, lookup_path, nested, parse_value
from openclaw.client.conversation import StdinLines
from openclaw.config import snapshot as config_snapshot
from openclaw.services.reload import ConfigReloader
from openclaw.settings import resolve_settings
from openclaw.stores.sqlite import InlineExecutor

from .support.gateway import TOKEN, start_gateway
from .support.loopback import loopback_http, wait_until, watch_upstream
from .support.upstream import Behaviour, FakeUpstream


class _CliBase(TestCase):
    timeout = 20

    def config(self):
        return self.upstream.config()

    @inlineCallbacks
    def setUp(self):
        self.upstream = watch_upstream(FakeUpstream().start(self))
        self.running = yield start_gateway(self, config=self.config(), http=loopback_http(self, self.upstream))
        self.identity = os.path.join(self.mktemp(), "cli.pem")

    @inlineCallbacks
    def cli(self, *argv, token=TOKEN, lines=None):
        out, err = io.StringIO(), io.StringIO()
        base = ["--url", self.running.url, "--identity", self.identity, "--token", token]
        status = yield run(base + list(argv), reactor, out, err, lines=lines)
        return status, out.getvalue(), err.getvalue()


class ChatAndAgentTests(_CliBase):
    @inlineCallbacks
    def test_one_message_streams_the_answer(self):
        status, out, err = yield self.cli("chat", "-m", "hi")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, "Hello there!\n")

    @inlineCallbacks
    def test_interactive_chat_answers_each_line_until_the_end_of_input(self):
        lines = DeferredQueue()
        for line in ("hi", "", "again", None):
            lines.put(line)
        status, out, err = yield self.cli("chat", lines=lines)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, "Hello there!\nHello there!\n")
        history = yield self.running.gateway.sessions.get("agent:main:main")
        self.assertIsNotNone(history)

    @inlineCallbacks
    def test_quit_ends_the_chat_and_json_prints_each_end_event(self):
        lines = DeferredQueue()
        for line in ("hi", "/quit", "never sent"):
            lines.put(line)
        status, out, _ = yield self.cli("--json", "chat", lines=lines)
        self.assertEqual(status, 0)
        events = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([event["state"] for event in events], ["final"])

    @inlineCallbacks
    def test_agent_prints_the_answer(self):
        status, out, err = yield self.cli("agent", "-m", "hi")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, "Hello there!\n")
        status, out, _ = yield self.cli("agent", "-m", "hi", "--json")
        self.assertEqual(json.loads(out)["status"], "ok")

    @inlineCallbacks
    def test_a_failed_run_says_why(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)
        status, _, err = yield self.cli("chat", "-m", "hi")
        self.assertEqual(status, 1)
        self.assertIn("[error]", err)


class WrongSecretTests(_CliBase):
    @inlineCallbacks
    def test_a_wrong_secret_saved_by_the_device_token_is_reported(self):
        status, _, err = yield self.cli("health")
        self.assertEqual((status, err), (0, ""))  # paired, and a device token stored
        status, _, err = yield self.cli("health", token="wrong")
        self.assertEqual(status, 0)
        self.assertIn("warning: the gateway refused the shared token", err)


class LogsModelsDashboardTests(_CliBase):
    def write_log(self, *records):
        path = self.running.gateway.log_file_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")

    @inlineCallbacks
    def test_logs_print_time_level_subsystem_message(self):
        self.write_log({"time": "2026-12-05T07:00:00.000Z", "level": "warn", "subsystem": "tap", "message": "careful"})
        status, out, err = yield self.cli("logs", "--utc")
        self.assertEqual(status, 0)
        self.assertEqual(out, "2026-12-05T07:00:00.000Z warn tap careful\n")
        self.assertIn("Log file:", err)
        status, out, _ = yield self.cli("logs", "--json")
        self.assertEqual(json.loads(out)["message"], "careful")

    @inlineCallbacks
    def test_follow_prints_new_lines_until_the_gateway_goes(self):
        self.write_log({"time": "t", "level": "info", "subsystem": "s", "message": "first"})
        out, err = io.StringIO(), io.StringIO()
        argv = ["--url", self.running.url, "--identity", self.identity, "--token", TOKEN, "logs", "-f", "--interval", "0.05", "--utc"]
        done = run(argv, reactor, out, err)
        yield wait_until(lambda: "first" in out.getvalue())
        self.write_log({"time": "t", "level": "info", "subsystem": "s", "message": "second"})
        yield wait_until(lambda: "second" in out.getvalue())
        yield self.running.websocket.stopService()
        status = yield done
        self.assertEqual(status, 1)
        self.assertEqual(out.getvalue().splitlines()[:2], ["t info s first", "t info s second"])

    @inlineCallbacks
    def test_models_table_and_dashboard_url(self):
        status, out, _ = yield self.cli("models")
        self.assertEqual(status, 0)
        self.assertEqual(out.splitlines()[0].split(), ["model", "name", "context", "local", "key", "set"])
        self.assertEqual(out.splitlines()[2].split(), ["fake/m1", "M1", "yes", "yes"])
        status, out, _ = yield self.cli("dashboard")
        self.assertEqual(out, f"Dashboard: {self.running.http_url}/\n")


class ConfigCommandTests(_CliBase):
    @inlineCallbacks
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write('{gateway: {port: 18789}, logging: {level: "info"}}')
        options = {"state-dir": self.dir, "config": self.path, "token": TOKEN}
        initial = config_snapshot.read(self.path, {})
        settings = resolve_settings(options, {}, initial)
        self.running = yield start_gateway(self, config=settings.config, config_path=self.path)
        reloader = ConfigReloader(
            Clock(), InlineExecutor(), initial,
            settings_for=lambda snap: resolve_settings(options, {}, snap),
            apply_hot=lambda new, plan: self.running.gateway.apply_settings(new, plan.actions),
            restart=lambda reason: None, env={},
        )
        self.running.gateway.config_control = reloader
        reloader.startService()
        self.addCleanup(lambda: reloader.stopService() if reloader.running else None)
        self.identity = os.path.join(self.mktemp(), "cli.pem")

    @inlineCallbacks
    def test_get_set_patch(self):
        status, out, _ = yield self.cli("config", "get", "gateway.port")
        self.assertEqual((status, out), (0, "18789\n"))
        status, out, err = yield self.cli("config", "set", "logging.level", "debug")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Updated logging.level", out)
        status, out, _ = yield self.cli("config", "patch", '{logging: {level: "warn"}}')
        self.assertEqual(status, 0)
        status, out, _ = yield self.cli("config", "get", "logging.level", "--json")
        self.assertEqual(json.loads(out), {"path": "logging.level", "value": "warn"})
        status, _, err = yield self.cli("config", "get", "no.such.key")
        self.assertEqual(status, 1)
        self.assertIn("no.such.key is not set", err)
        status, _, err = yield self.cli("config", "patch", "{nope")
        self.assertEqual(status, 2)


class HelperTests(SynchronousTestCase):
    def test_human_values(self):
        self.assertEqual((render.yes_no(True), render.yes_no(False), render.yes_no(None)), ("yes", "no", "-"))
        self.assertEqual(render.duration(3_723_000), "1h 2m")
        self.assertEqual(render.duration(59_000), "59s")
        self.assertEqual(render.ago(1_000, 301_000), "5m 0s ago")
        self.assertEqual(render.ago(100_000, 101_000), "just now")
        self.assertTrue(render.timestamp(0, 60_000, utc=True).startswith("1970-01-01 00:00:00 (1m 0s ago)"))
        self.assertEqual(render.log_line("not json"), "not json")

    def test_config_paths_and_values(self):
        self.assertEqual(nested("a.b", 1), {"a": {"b": 1}})
        self.assertEqual(parse_value("true"), True)
        self.assertEqual(parse_value("{a: 1}"), {"a": 1})
        self.assertEqual(parse_value("hello world"), "hello world")
        self.assertEqual(lookup_path({"a": [{"id": "x"}]}, "a.0.id"), (True, "x"))
        self.assertEqual(lookup_path({"a": 1}, "a.b"), (False, None))

    def test_dashboard_url_follows_the_gateway_url(self):
        self.assertEqual(dashboard_url("ws://127.0.0.1:18789"), "http://127.0.0.1:18789/")
        self.assertEqual(dashboard_url("wss://gw.example:443/ws"), "https://gw.example:443/")

    def test_stdin_lines_are_bounded_and_end_with_none(self):
        queue = DeferredQueue()
        reader = StdinLines(queue, max_line=8)
        reader.dataReceived(b"one\r\ntw")
        reader.dataReceived(b"o\n" + b"x" * 20)
        reader.connectionLost()
        got = []
        while queue.pending:
            queue.get().addCallback(got.append)
        self.assertEqual(got, ["one", "two", "x" * 20, None])
