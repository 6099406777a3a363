"""``$include`` (a config split over files, as the reference reads it): merged in place, checked,
and every problem named at the directive's path."""
from __future__ import annotations

import json
import os

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import snapshot

from .support.gateway import TOKEN
from .test_config_rpc import _ConfigRpcBase


class IncludeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.dir, "parts"))

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def read(self, text: str, env: dict[str, str] | None = None) -> snapshot.ConfigSnapshot:
        return snapshot.read(self.write("openclaw.json", text), env or {})

    def test_the_reference_docs_example(self):
        self.write("parts/agents.json5", '{ defaults: { model: "openai/gpt-4.1-mini" }, entries: { main: { name: "Main" } } }')
        snap = self.read('{ gateway: { port: 18789 }, agents: { $include: "./parts/agents.json5" } }')
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["agents"]["entries"], {"main": {"name": "Main"}})
        self.assertEqual(snap.parsed["agents"], {"$include": "./parts/agents.json5"})  # as written

    def test_a_list_merges_in_order_and_siblings_win(self):
        self.write("parts/one.json5", '{ port: 1, auth: { mode: "token", token: "a" } }')
        self.write("parts/two.json5", '{ port: 2, bind: "loopback" }')
        snap = self.read('{ gateway: { $include: ["parts/one.json5", "parts/two.json5"], port: 3 } }')
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["gateway"], {"port": 3, "auth": {"mode": "token", "token": "a"}, "bind": "loopback"})

    def test_nested_includes_resolve_from_the_including_file(self):
        self.write("parts/gw.json5", '{ auth: { $include: "auth.json5" } }')
        self.write("parts/auth.json5", '{ mode: "token", token: "${TOKEN}" }')
        snap = self.read('{ gateway: { $include: "parts/gw.json5" } }', {"TOKEN": "secret-token-value"})
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["gateway"]["auth"]["token"], "secret-token-value")
        # What clients see keeps ${TOKEN} as written, even from an included file.
        self.assertEqual(snap.shown["gateway"]["auth"]["token"], "${TOKEN}")

    def test_included_keys_are_validated_with_their_path(self):
        self.write("parts/agents.json5", "{ defaults: { compactoin: {} } }")
        snap = self.read('{ agents: { $include: "parts/agents.json5" } }')
        self.assertEqual([(i.path, i.message) for i in snap.issues], [("agents.defaults.compactoin", "unknown key")])

    def test_problems_name_the_directive(self):
        cases = {
            '{ agents: { $include: "parts/missing.json5" } }': "cannot read parts/missing.json5",
            '{ agents: { $include: "../outside.json5" } }': "outside the config directory",
            '{ agents: { $include: 5 } }': "must be a file path or a list of file paths",
            '{ agents: { $include: "parts/bad.json5" } }': "is not valid JSON5",
            '{ agents: { $include: "parts/loop.json5" } }': "circular $include",
        }
        self.write("parts/bad.json5", "{ nope")
        self.write("parts/loop.json5", '{ $include: "loop.json5" }')
        for text, fragment in cases.items():
            snap = self.read(text)
            self.assertEqual(len(snap.issues), 1, (text, snap.issues))
            self.assertTrue(snap.issues[0].path.startswith("agents"), snap.issues)
            self.assertIn(fragment, snap.issues[0].message)

    def test_extra_roots(self):
        outside = os.path.abspath(self.mktemp())
        os.makedirs(outside)
        with open(os.path.join(outside, "agents.json5"), "w", encoding="utf-8") as handle:
            handle.write('{ defaults: { maxConcurrent: 2 } }')
        text = f'{{ agents: {{ $include: "{os.path.join(outside, "agents.json5")}" }} }}'
        self.assertFalse(self.read(text).valid)
        self.assertTrue(self.read(text, {"OPENCLAW_INCLUDE_ROOTS": outside}).valid)


class PatchNextToAnIncludeTests(_ConfigRpcBase):
    """``config.patch`` keeps the ``$include`` and writes the change beside it, where it wins."""

    def setUp(self):
        # The included file lives in its own folder, allowed by OPENCLAW_INCLUDE_ROOTS (the base
        # class makes the config directory itself).
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.agents_file = os.path.join(folder, "agents.json5")
        with open(self.agents_file, "w", encoding="utf-8") as handle:
            handle.write("{ defaults: { timeoutSeconds: 60, maxConcurrent: 2 } }")
        self.environment = {"OPENCLAW_INCLUDE_ROOTS": folder}
        self.initial = f'{{ gateway: {{ auth: {{ mode: "token", token: "{TOKEN}" }} }}, agents: {{ $include: "{self.agents_file}" }} }}'
        return super().setUp()

    @inlineCallbacks
    def test_patch(self):
        current = yield self.ok("config.get")
        self.assertEqual(current["config"]["agents"]["defaults"]["timeoutSeconds"], 60)
        yield self.ok("config.patch", {"raw": json.dumps({"agents": {"defaults": {"timeoutSeconds": 90}}}), "baseHash": current["hash"]})
        with open(self.path, encoding="utf-8") as handle:
            on_disk = json.load(handle)
        self.assertEqual(on_disk["agents"], {"$include": self.agents_file, "defaults": {"timeoutSeconds": 90}})
        self.assertEqual(self.gateway.catalog.run_timeout_s, 90)
        after = yield self.ok("config.get")
        self.assertEqual(after["config"]["agents"]["defaults"], {"timeoutSeconds": 90, "maxConcurrent": 2})
