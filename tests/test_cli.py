"""The openclaw-gateway CLI, run in-process against a loopback gateway."""
from __future__ import annotations

import io
import json
import os

import attrs
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.client import ClientOptions, GatewayClient
from openclaw.client.cli import parse_args, run
from openclaw.client.render import table
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.security.scopes import READ

from .support.gateway import TOKEN, start_gateway
from .test_client import wait_for

PIN = "sha256:" + ":".join(["AB"] * 32)


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
    def bare(self, *argv):
        """Exactly ``argv``: no options put in front."""
        out, err = io.StringIO(), io.StringIO()
        status = yield run(list(argv), reactor, out, err)
        return status, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def test_connection_options_after_the_subcommand(self):
        """docs/cli.md's first example: --url/--token after the method, as users type them."""
        status, out, err = yield self.bare("call", "health", "--url", self.running.url, "--token", TOKEN, "--json", "--identity", self.identity)
        self.assertEqual((status, err), (0, ""))
        self.assertIs(json.loads(out)["ok"], True)
        status, out, err = yield self.bare("devices", "list", "--url", self.running.url, "--identity", self.identity, "--token", TOKEN)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("paired", out)
        # Split across both sides of the subcommand.
        status, out, err = yield self.bare("--url", self.running.url, "--identity", self.identity, "status", "--token", TOKEN, "--json")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("runtimeVersion", json.loads(out))

    @inlineCallbacks
    def test_malformed_fingerprint_is_a_usage_error(self):
        for argv in (["--tls-fingerprint", "sha256:zz", "health"], ["health", "--tls-fingerprint", "nope"]):
            status, out, err = yield self.bare("--url", "wss://127.0.0.1:1", "--identity", self.identity, *argv)
            self.assertEqual(status, 2)
            self.assertEqual(out, "")
            self.assertNotIn("Traceback", err)
            errors = [line for line in err.splitlines() if "error:" in line]
            self.assertEqual(len(errors), 1, err)
            self.assertIn("argument --tls-fingerprint: not a SHA-256 fingerprint", errors[0])
        self.assertFalse(os.path.exists(self.identity))  # refused before doing anything

    @inlineCallbacks
    def test_corrupt_identity_file_is_reported_not_a_traceback(self):
        os.makedirs(os.path.dirname(self.identity), exist_ok=True)
        with open(self.identity, "wb") as handle:
            handle.write(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        status, out, err = yield self.bare("--url", "ws://127.0.0.1:1", "--identity", self.identity, "health")
        self.assertEqual((status, out), (2, ""))
        self.assertNotIn("Traceback", err)
        self.assertIn(f"cannot use the device identity {self.identity}", err)
        with open(self.identity, "rb") as handle:
            self.assertIn(b"not a key", handle.read())  # left as it was, never overwritten

    @inlineCallbacks
    def test_bad_params_and_url_are_usage_errors(self):
        status, _, err = yield self.cli("call", "health", "--params", "{nope")
        self.assertEqual(status, 2)
        self.assertIn("argument --params: not JSON", err)
        status, _, err = yield self.bare("--url", "127.0.0.1:18789", "health")
        self.assertEqual(status, 2)
        self.assertIn("argument --url: not a ws:// or wss:// URL", err)

    @inlineCallbacks
    def test_devices_approve_lets_a_waiting_device_in(self):
        """The command the gateway's remediationHint names (as the reference CLI spells it)."""
        status, _, _ = yield self.cli("devices", "list")  # the CLI's own device, paired silently
        self.assertEqual(status, 0)
        gateway = self.running.gateway
        gateway.settings = attrs.evolve(gateway.settings, auto_approve_local=False)
        clock = Clock()
        errors = []
        waiting = GatewayClient(
            ClientOptions(url=self.running.url, token=TOKEN, scopes=(READ,), device=DeviceKeyPair.generate()),
            clock=clock,
            on_connect_error=errors.append,
        )
        self.addCleanup(waiting.close)
        connected = waiting.connect()
        yield wait_for(lambda: errors)
        details = errors[0].details
        self.assertIn("openclaw devices approve <requestId>", details["remediationHint"])
        status, out, err = yield self.bare(
            "devices", "approve", details["requestId"], "--url", self.running.url, "--token", TOKEN, "--identity", self.identity
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, f"approved {details['requestId']}\n")
        yield wait_for(lambda: waiting._retry is not None)
        clock.advance(waiting._retry.getTime() - clock.seconds())
        hello = yield connected
        self.assertEqual(hello["auth"]["scopes"], [READ])

    @inlineCallbacks
    def test_pairing_required_names_the_approve_command(self):
        self.running.gateway.settings = attrs.evolve(self.running.gateway.settings, auto_approve_local=False)
        status, _, err = yield self.cli("health")
        self.assertEqual(status, 2)
        self.assertIn("pairing required", err)
        request_id = self.running.gateway.pairing.list_pending()[0].request_id
        self.assertIn(f"openclaw-gateway devices approve {request_id}", err)

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
        self.assertEqual(lines[0].split(), ["key", "label", "updated", "model"])
        self.assertTrue(lines[2].startswith("agent:main:work"))
        self.assertIn(" ago", lines[2])  # human time, not epoch milliseconds
        status, out, _ = yield self.cli("health")
        self.assertEqual(out.splitlines()[0].split(), ["ok", "yes"])  # booleans as yes/no, not True
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
        # A device the gateway issued a token to gets in on that token even with a stale secret
        # (canRetryWithDeviceToken), so a wrong secret fails only for a device without one.
        status, _, _ = yield self.cli("health", token="wrong")
        self.assertEqual(status, 0)
        fresh = os.path.join(os.path.dirname(self.identity), "fresh.pem")
        status, _, err = yield self.bare("--url", self.running.url, "--identity", fresh, "--token", "wrong", "health")
        self.assertEqual(status, 2)
        self.assertIn("could not connect", err)
        status, out, _ = yield self.cli("--json", "devices", "approve", "nope")
        self.assertEqual(status, 1)
        self.assertEqual(json.loads(out)["error"]["code"], "INVALID_REQUEST")


class ParseTests(SynchronousTestCase):
    def test_options_before_the_subcommand_are_not_reset_by_its_defaults(self):
        args = parse_args(["--token", "A", "--timeout", "5", "--json", "--tls-fingerprint", PIN, "devices", "approve", "R"])
        self.assertEqual((args.token, args.timeout, args.json, args.tls_fingerprint, args.request_id), ("A", 5.0, True, PIN, "R"))

    def test_options_after_the_subcommand(self):
        args = parse_args(["sessions", "list", "--url", "wss://gw:1", "--token", "B", "--password", "P", "--identity", "k.pem", "--search", "x"])
        self.assertEqual((args.url, args.token, args.password, args.identity, args.search), ("wss://gw:1", "B", "P", "k.pem", "x"))
        self.assertIs(args.json, False)
        self.assertEqual(args.timeout, 30.0)

    def test_help_exits_zero(self):
        out = io.StringIO()
        self.assertEqual(parse_args(["call", "--help"], out, io.StringIO()), 0)
        self.assertIn("--tls-fingerprint", out.getvalue())


class TableTests(TestCase):
    def test_columns_are_aligned(self):
        self.assertEqual(table([["a", 1], ["bbb", None]], ["x", "yy"]), "x    yy\n---  --\na    1\nbbb\n")
