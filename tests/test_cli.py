"""The openclaw-gateway CLI, run in-process against a loopback gateway."""
from __future__ import annotations

import io
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.client.cli import run, table

from .support.gateway import TOKEN, start_gateway


class CliTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.running = yield start_gateway(self)
        self.identity = os.path.join(self.mktemp(), "cli.pem")

    @inlineCallbacks
    def cli(self, *argv, token=TOKEN):
        out, err = io.StringIO(), io.StringIO()
        base = ["--url", self.running.url, "--identity", self.identity]
        if token is not None:
            base += ["--token", token]
        status = yield run(base + list(argv), reactor, out, err)
        return status, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def test_call_prints_the_payload_as_json(self):
        status, out, _ = yield self.cli("call", "health", "--json")
        self.assertEqual(status, 0)
        self.assertIs(json.loads(out)["ok"], True)

    @inlineCallbacks
    def test_call_with_params(self):
        yield self.running.gateway.sessions.patch("agent:main:work", {"label": "Work"}, 1)
        status, out, _ = yield self.cli("call", "sessions.list", "--params", '{"search": "work"}')
        self.assertEqual(status, 0)
        self.assertEqual([row["key"] for row in json.loads(out)["sessions"]], ["agent:main:work"])

    @inlineCallbacks
    def test_friendly_commands_print_tables(self):
        yield self.running.gateway.sessions.patch("agent:main:work", {"label": "Work"}, 1)
        status, out, _ = yield self.cli("sessions", "list")
        self.assertEqual(status, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["key", "label", "updatedAt", "model"])
        self.assertTrue(lines[2].startswith("agent:main:work"))
        status, out, _ = yield self.cli("health")
        self.assertEqual(out.splitlines()[0].split(), ["ok", "durationMs", "sessions"])
        status, out, _ = yield self.cli("devices", "list")
        self.assertEqual(status, 0)
        self.assertIn("paired", out)  # the CLI's own device, paired silently on loopback
        status, out, _ = yield self.cli("nodes", "list")
        self.assertEqual(out.splitlines()[0].split()[:2], ["nodeId", "name"])
        status, out, _ = yield self.cli("--json", "nodes", "pending")
        self.assertEqual(json.loads(out), {"pending": [], "paired": []})

    @inlineCallbacks
    def test_failures_have_exit_codes(self):
        status, _, err = yield self.cli("call", "no.such.method")
        self.assertEqual(status, 1)
        self.assertIn("unknown method", err)
        status, _, err = yield self.cli("health", token="wrong")
        self.assertEqual(status, 2)
        self.assertIn("could not connect", err)
        status, out, _ = yield self.cli("--json", "devices", "approve", "nope")
        self.assertEqual(status, 1)
        self.assertEqual(json.loads(out)["error"]["code"], "INVALID_REQUEST")


class TableTests(TestCase):
    def test_columns_are_aligned(self):
        self.assertEqual(table([["a", 1], ["bbb", None]], ["x", "yy"]), "x    yy\n---  --\na    1\nbbb\n")
