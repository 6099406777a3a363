"""Reference config files start this gateway unchanged (issue 15, point 2).

``tests/config_corpus/`` holds files the reference's ``openclaw config validate`` (2026.9.6)
calls valid: ``docs/`` the JSON5 examples of the reference's own docs, ``onboarding/`` what its
``openclaw onboard --non-interactive`` and ``openclaw config set`` wrote into a scratch HOME
(paths rewritten to ``/home/user``). See ``tests/config_corpus/README.md`` for how they were made.

Each must validate here, give settings and a model catalog; a handful the gateway refuses on
purpose, for reasons the operator is told (:data:`REFUSED`). Keys not acted on here are named;
a typo'd key still names its path.
"""
from __future__ import annotations

import os
import re

import json5

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.catalog import Catalog
from openclaw.config import snapshot
from openclaw.config.accepted import unused_paths
from openclaw.config.loader import ConfigError
from openclaw.settings import resolve_settings

from .support.twistd import TwistdGateway, free_port

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config_corpus")
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)\}")

# Reference-valid files this gateway refuses to start from, and the start-up error saying why.
REFUSED = {
    "tailnet": "is not available here (no Tailscale support)",
    "'trusted-proxy' is not available here": "trusted-proxy auth",
    "refusing to serve beyond loopback without auth": "lan without auth",
    "TLS": "TLS files that do not exist",
    "customBindHost": "custom bind address",
    "needs a password": "the password is expected from OPENCLAW_GATEWAY_PASSWORD at start",
    "needs a token": "the token is expected from OPENCLAW_GATEWAY_TOKEN at start",
    "is not supported here": "a secret from a file, exec or store provider",
    "which is not set": "a secret from an environment variable the test does not set",
}


def corpus_files() -> list[str]:
    found = []
    for folder in ("onboarding", "docs"):
        path = os.path.join(CORPUS, folder)
        found.extend(os.path.join(path, name) for name in sorted(os.listdir(path)) if name.endswith((".json", ".json5")))
    return found


def environment_for(text: str) -> dict[str, str]:
    """A value for every ``${VAR}`` and ``{source: "env", id}`` the file names, as the user's
    environment would hold."""
    names = set(_VARIABLE.findall(text))
    stack = [json5.loads(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("source") == "env" and isinstance(node.get("id"), str):
                names.add(node["id"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return {name: f"value-of-{name.lower()}" for name in names}


class CorpusTests(SynchronousTestCase):
    def test_the_corpus_is_there(self):
        files = corpus_files()
        self.assertGreater(len([f for f in files if "/docs/" in f]), 100)
        self.assertGreaterEqual(len([f for f in files if "/onboarding/" in f]), 5)

    def test_every_file_validates_and_starts_or_says_why_not(self):
        started, refused, failures = 0, [], []
        for path in corpus_files():
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            env = environment_for(text)
            snap = snapshot.parse(text, path, env)
            if not snap.valid:
                failures.append(f"{os.path.basename(path)}: {snap.issue_summary()}")
                continue
            try:
                settings = resolve_settings({"state-dir": self.mktemp(), "config": path}, env, snap)
                Catalog.from_config(settings.config, settings.provider_env)
            except ConfigError as exc:
                reason = next((why for fragment, why in REFUSED.items() if fragment in str(exc)), None)
                if reason is None:
                    failures.append(f"{os.path.basename(path)}: {exc}")
                refused.append(os.path.basename(path))
                continue
            started += 1
        self.assertEqual(failures, [])
        # Nearly all start; the refusals are the listed, deliberate ones.
        self.assertGreater(started, 10 * len(refused), refused)

    def test_the_keys_that_stopped_us_are_accepted_and_named(self):
        path = os.path.join(CORPUS, "onboarding", "issue-15-keys.json5")
        with open(path, encoding="utf-8") as handle:
            snap = snapshot.parse(handle.read(), path, {"OPENCLAW_GATEWAY_TOKEN": "t"})
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(
            unused_paths(snap.config),
            [
                "agents.defaults.compaction",
                "agents.defaults.maxConcurrent",
                "agents.defaults.thinkingDefault",
                "logging.consoleLevel",
                "session.dmScope",
            ],
        )

    def test_a_typo_still_names_its_path(self):
        for raw, path in (
            ('{ agents: { defaults: { compactoin: {} } } }', "agents.defaults.compactoin"),
            ('{ logging: { consoleLevl: "warn" } }', "logging.consoleLevl"),
            ('{ gateway: { auth: { tokn: "x" } } }', "gateway.auth.tokn"),
            ('{ agents: { defaults: { model: { primary: "openai/x", fallback: [] } } } }', "agents.defaults.model.fallback"),
            ('{ channels: { telegram: { enabeld: true } } }', "channels.telegram.enabeld"),
        ):
            snap = snapshot.parse(raw, "x", {})
            self.assertEqual([(i.path, i.message) for i in snap.issues], [(path, "unknown key")], raw)

    def test_reference_types_and_enums(self):
        snap = snapshot.parse('{ session: { dmScope: "everyone" }, agents: { defaults: { maxConcurrent: 0 } } }', "x", {})
        self.assertEqual(
            sorted((i.path, i.message) for i in snap.issues),
            [
                ("agents.defaults.maxConcurrent", "must be greater than 0"),
                ("session.dmScope", "must be one of 'main', 'per-peer', 'per-channel-peer', 'per-account-channel-peer'"),
            ],
        )


class RealStartTests(TestCase):
    """The file the reference's ``openclaw config set`` wrote starts a real ``twistd`` process."""

    timeout = 60

    @inlineCallbacks
    def test_onboarding_file_starts_and_names_unused_keys_once(self):
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        port = free_port()
        path = os.path.join(CORPUS, "onboarding", "configset.json")
        process = TwistdGateway(self, ["--config", path, "--state-dir", state, "--port", str(port)])
        line = yield process.wait_for_line("accepted, not used here:")
        for key in ("agents.defaults.compaction", "agents.defaults.maxConcurrent", "logging.consoleLevel", "session.dmScope"):
            self.assertIn(key, line)
        yield process.wait_for_port(port)
        self.assertEqual(sum("accepted, not used here" in text for text in process.lines), 1)


class SecretReferenceTests(SynchronousTestCase):
    """``gateway.auth.token: {source: "env", provider, id}`` (what onboarding with
    ``--secret-input-mode ref`` writes) reads the variable; other sources refuse to start."""

    def settings(self, token, env):
        raw = f'{{ gateway: {{ auth: {{ mode: "token", token: {token} }} }} }}'
        return resolve_settings({"state-dir": self.mktemp()}, env, snapshot.parse(raw, "x", env))

    def test_env_reference(self):
        ref = '{ source: "env", provider: "default", id: "MY_GATEWAY_TOKEN" }'
        self.assertEqual(self.settings(ref, {"MY_GATEWAY_TOKEN": "t-1"}).auth.token, "t-1")
        with self.assertRaises(ConfigError) as caught:
            self.settings(ref, {})
        self.assertIn("MY_GATEWAY_TOKEN, which is not set", str(caught.exception))

    def test_other_sources_refuse_to_start(self):
        with self.assertRaises(ConfigError) as caught:
            self.settings('{ source: "file", provider: "vault", id: "/gateway/token" }', {})
        self.assertIn("source 'file' is not supported here", str(caught.exception))
