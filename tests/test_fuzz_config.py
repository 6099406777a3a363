"""Fuzzing ``config.set/patch/apply`` with a real reload service behind them (issue 13, items 1 and 7).

The harness of :mod:`tests.test_fuzz` (a real protocol on a ``StringTransport``, a ``task.Clock``)
gets a :class:`ConfigReloader` on an inline executor and a config file whose token is the only
auth. Besides the usual invariants (one well-shaped answer, the connection stays, nothing logged
as an error), after every write:

* the file on disk is still a valid config (a refused write left it alone);
* auth is still on, unless the text sent said ``gateway.auth.mode: "none"`` itself;
* text over the 256 KiB cap is refused as too large, whatever it holds (checked before any
  parsing);
* text nested deeper than ``MAX_CONFIG_DEPTH`` or holding a lone surrogate is refused as such,
  never with a recursion error (issue 13, item 11).
"""
from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import snapshot as config_snapshot
from openclaw.config.parsing import MAX_CONFIG_BYTES
from openclaw.protocol.text_checks import MAX_CONFIG_DEPTH
from openclaw.services.reload import ConfigReloader
from openclaw.settings import resolve_settings
from openclaw.stores.sqlite import InlineExecutor

from .support.gateway import TOKEN
from .test_fuzz import Harness, as_text, assert_answered_once, check_response, fuzz_settings, json_values

INITIAL = {"gateway": {"auth": {"mode": "token", "token": TOKEN}}, "logging": {"level": "info"}}
WRITES = ("config.set", "config.apply", "config.patch")

# Config-shaped documents: real keys (auth among them) with arbitrary values, or arbitrary JSON.
config_documents = st.fixed_dictionaries(
    {},
    optional={
        "gateway": st.fixed_dictionaries(
            {},
            optional={
                "auth": st.fixed_dictionaries(
                    {}, optional={"mode": st.sampled_from(["none", "token", "password"]) | json_values, "token": json_values}
                ),
                "bind": st.sampled_from(["loopback", "lan"]),
                "port": st.integers(min_value=-1, max_value=70000),
            },
        ),
        "logging": st.fixed_dictionaries({}, optional={"level": st.sampled_from(["debug", "warn"]) | json_values}),
        "channels": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    },
) | st.dictionaries(st.text(max_size=10), json_values, max_size=4)


def _filler(kind: str, size: int) -> str:
    if kind == "string":
        return json.dumps({"channels": {"blob": "x" * size}})
    if kind == "keys":
        return json.dumps({"channels": {f"k{index}": index for index in range(size // 12)}})
    if kind == "json5":
        return "{\n" + "// padding\n" * (size // 11) + "channels: {},\n}"
    return "é" * (size // 2 + 1)  # not JSON at all; two bytes per character, never under ``size``


oversized = st.tuples(
    st.sampled_from(["string", "keys", "json5", "garbage"]), st.integers(min_value=MAX_CONFIG_BYTES + 1, max_value=3 * MAX_CONFIG_BYTES)
)


@st.composite
def deep_texts(draw: Any) -> str:
    """Config text nested too deep: JSON or JSON5, arrays or objects, just over or far over."""
    depth = draw(st.integers(MAX_CONFIG_DEPTH + 1, MAX_CONFIG_DEPTH + 30) | st.integers(1000, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ("{a:", "}")]))
    inner = opener * (depth - 2) + "1" + closer * (depth - 2)
    return draw(st.sampled_from(['{"channels": {"x": %s}}', "// deep\n{ channels: { x: %s, }, }"])) % inner


@st.composite
def surrogate_texts(draw: Any) -> str:
    """A config whose key or value somewhere holds a lone surrogate escape."""
    escape = f'"{draw(st.sampled_from(["", "a", "é"]))}\\u{draw(st.integers(0xD800, 0xDFFF)):04x}"'
    value = escape if draw(st.booleans()) else f"{{{escape}: 1}}"
    for _ in range(draw(st.integers(0, 4))):
        value = draw(st.sampled_from(["[{}]", '{{"k": {}}}'])).format(value)
    return f'{{"channels": {{"x": {value}}}}}'


def explicitly_none(document: Any) -> bool:
    auth = document.get("gateway", {}).get("auth") if isinstance(document.get("gateway"), dict) else None
    return isinstance(auth, dict) and auth.get("mode") == "none"


class ConfigWriteFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness(self)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.path = os.path.join(folder, "openclaw.json")
        with open(self.path, "w", encoding="utf-8") as handle:
            json.dump(INITIAL, handle)
        options = {"state-dir": folder, "config": self.path}
        self.reloader = ConfigReloader(
            self.harness.clock,
            InlineExecutor(),
            config_snapshot.read(self.path, {}),
            settings_for=lambda snapshot: resolve_settings(options, {}, snapshot),
            apply_hot=lambda settings, plan: self.harness.gateway.apply_settings(settings, plan.actions),
            restart=lambda reason: succeed(None),
            env={},
        )
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        self.harness.gateway.config_control = self.reloader

    def write(self, method: str, raw: str) -> dict[str, Any]:
        """One write on a fresh admitted connection, with the file's current hash; its answer."""
        current = config_snapshot.read(self.path, {})
        proto = self.harness.admitted()
        try:
            frame = {"type": "req", "id": "w1", "method": method, "params": {"raw": raw, "baseHash": current.hash}}
            proto.onMessage(as_text(frame), False)
            self.harness.clock.advance(0)
            self.assertEqual(self.flushLoggedErrors(), [])
            self.assertEqual(proto.close_codes, [])
            responses = proto.take()
            for response in responses:
                check_response(self, response, {"w1"})
            answers = [response for response in responses if response.get("type") == "res"]
            assert_answered_once(self, answers, "w1")
            return answers[0]
        finally:
            self.harness.close(proto)

    def assert_file_valid_and_auth_kept(self, allowed_off: bool) -> None:
        on_disk = config_snapshot.read(self.path, {})
        self.assertTrue(on_disk.valid, on_disk.issues)
        if not allowed_off:
            self.assertEqual(self.reloader.current_settings().auth.mode, "token")

    @fuzz_settings(20)
    @given(shape=oversized, method=st.sampled_from(WRITES))
    def test_oversized_text_is_refused_as_too_large(self, shape, method):
        raw = _filler(*shape)
        self.assertGreater(len(raw.encode("utf-8")), MAX_CONFIG_BYTES)
        response = self.write(method, raw)
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertIn("raw is too large", response["error"]["message"])
        self.assertEqual(config_snapshot.read(self.path, {}).parsed, INITIAL)

    @fuzz_settings(60)
    @given(document=config_documents, method=st.sampled_from(WRITES))
    @example(document={"gateway": {"auth": {"mode": "token", "token": "another"}}}, method="config.set")
    @example(document={"logging": {"level": "debug"}}, method="config.patch")
    def test_any_write_leaves_a_valid_file_and_auth_on(self, document, method):
        response = self.write(method, json.dumps(document))
        if not response["ok"]:
            self.assertEqual(response["error"]["code"], "INVALID_REQUEST", response)
        self.assert_file_valid_and_auth_kept(allowed_off=response["ok"] and explicitly_none(document))
        self.restore_initial_auth()

    def restore_initial_auth(self) -> None:
        """Examples share one gateway: a write that turned auth off or set another token (both
        legitimate) would make the next example's connect fail, which hypothesis reports as a
        flaky test. Put the initial config back through the reloader itself."""
        auth = self.reloader.current_settings().auth
        if (auth.mode, auth.token) == ("token", TOKEN):
            return
        self.reloader.write(json.dumps(INITIAL)).addCallback(self.reloader.consider)
        self.harness.clock.advance(0)
        auth = self.reloader.current_settings().auth
        self.assertEqual((auth.mode, auth.token), ("token", TOKEN))

    @fuzz_settings(30)
    @given(raw=deep_texts(), method=st.sampled_from(WRITES))
    def test_deep_nesting_is_refused_as_such(self, raw, method):
        response = self.write(method, raw)
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(response["error"]["message"], f"invalid {method} params: raw is nested deeper than {MAX_CONFIG_DEPTH} levels")
        self.assertEqual(config_snapshot.read(self.path, {}).parsed, INITIAL)

    @fuzz_settings(30)
    @given(raw=surrogate_texts(), method=st.sampled_from(WRITES))
    def test_lone_surrogates_are_refused_as_such(self, raw, method):
        response = self.write(method, raw)
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertIn(f"invalid {method} params: raw holds a lone surrogate", response["error"]["message"])
        self.assertEqual(config_snapshot.read(self.path, {}).parsed, INITIAL)
