"""A real ``twistd`` gateway whose config file is truncated or stripped of auth while it runs.

Issue 13, item 1: with the token only in the file, ``: > openclaw.json`` used to restart the
gateway with auth mode ``none`` (and on port 18789), so a client with no secret became an
administrator. The process here is the real one; each step waits for the reloader's log line,
then proves what a client sees on the wire.
"""
from __future__ import annotations

import json
import os

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from .support.loopback import settle_autobahn_timers
from .support.twistd import TwistdGateway, free_port
from .support.wsclient import connect

TOKEN = "file-only-token-5c1e"


class TruncatedConfigTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")
        self.port = free_port()
        self.edit({"gateway": {"port": self.port, "auth": {"mode": "token", "token": TOKEN}, "reload": {"debounceMs": 20}}})
        self.addCleanup(settle_autobahn_timers)
        self.gateway = TwistdGateway(self, ["--state-dir", self.dir, "--config", self.path])
        yield self.gateway.wait_for_port(self.port)
        yield self.assert_token_works()

    def edit(self, document: object) -> None:
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(document if isinstance(document, str) else json.dumps(document))

    @inlineCallbacks
    def hello(self, token: str | None):
        """The ``connect`` response a client with ``token`` gets (retrying while stores load)."""
        for _ in range(200):
            client, response = yield connect(self, f"ws://127.0.0.1:{self.port}", token=token)
            yield client.close()
            if response["ok"] or "starting" not in response["error"]["message"]:
                return response
        raise AssertionError("the gateway never finished starting")

    @inlineCallbacks
    def assert_token_works(self):
        response = yield self.hello(TOKEN)
        self.assertTrue(response["ok"], response)

    @inlineCallbacks
    def assert_no_secret_is_refused(self):
        response = yield self.hello(None)
        self.assertFalse(response["ok"], response)
        # Token mode asks a client without a secret for a device proof; "none" would let it in.
        self.assertEqual(response["error"]["details"]["code"], "DEVICE_IDENTITY_REQUIRED")
        response = yield self.hello("guessed-token")
        self.assertEqual(response["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH")

    @inlineCallbacks
    def test_truncated_or_auth_less_file_keeps_auth_on(self):
        skipped = self.gateway.wait_for_line("config reload: skipped (invalid config: <root>: the file is empty")
        with open(self.path, "w"):
            pass  # : > openclaw.json
        yield skipped
        yield self.assert_no_secret_is_refused()
        yield self.assert_token_works()  # same port, same token

        refused = self.gateway.wait_for_line("config reload: refused (the new config would turn authentication off")
        self.edit({"gateway": {"port": self.port}})
        yield refused
        yield self.assert_no_secret_is_refused()
        yield self.assert_token_works()
        self.assertFalse([line for line in self.gateway.lines if "restarting the gateway in-process" in line])

        # Only an explicit "none" turns it off (which proves the refusals above were real).
        restarted = self.gateway.wait_for_line("restarting the gateway in-process (config change)")
        listening = self.gateway.wait_for_line(f"GatewaySite starting on {self.port}")  # the new tree's
        self.edit({"gateway": {"port": self.port, "auth": {"mode": "none"}}})
        yield restarted
        yield listening
        response = yield self.hello(None)
        self.assertTrue(response["ok"], response)
