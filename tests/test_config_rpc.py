"""``config.*`` over a real loopback WebSocket (protocol §9.5, http spec §4 "Config RPC").

The gateway listens on 127.0.0.1 (``start_gateway``); a ``ConfigReloader`` on a ``task.Clock``
with an inline executor is attached as ``config_control``, exactly as the service tree does: its
hot path is ``gateway.apply_settings`` and its restart path records the request, so restart
delays are driven on the clock while the sockets stay real.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from openclaw.config import parsing
from openclaw.config import snapshot as config_snapshot
from openclaw.config.parsing import MAX_CONFIG_BYTES
from openclaw.protocol.text_checks import MAX_CONFIG_DEPTH
from openclaw.config.redaction import SENTINEL
from openclaw.config.accepted import cached_accepted_schema
from openclaw.services.reload import ConfigReloader
from openclaw.settings import resolve_settings
from openclaw.stores.sqlite import InlineExecutor

from .support.gateway import TOKEN, start_gateway
from .support.loopback import _upstream_connections, wait_until
from .support.wsclient import connect

API_KEY = "sk-provider-secret-9f8e"
PASSWORD = "pw-unused-secret-4d3c"
HOOK_TOKEN = "hook-secret-7a6b"
SECRETS = (TOKEN, API_KEY, PASSWORD, HOOK_TOKEN)

INITIAL = f"""// the test gateway
{{
  gateway: {{
    auth: {{ mode: "token", token: "{TOKEN}", password: '{PASSWORD}' }},
    trustedProxies: ["10.0.0.1", "10.0.0.2"],
  }},
  models: {{
    providers: {{
      local: {{ baseUrl: "http://127.0.0.1:9/v1", apiKey: "{API_KEY}", models: [{{ id: "m1" }}] }},
    }},
  }},
  hooks: {{ token: "{HOOK_TOKEN}", path: "/hooks" }},
  logging: {{ level: "info" }},
}}
"""
READ_ONLY = ["operator.read"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _ConfigRpcBase(TestCase):
    timeout = 20
    initial: str | None = INITIAL
    command_line_token = True  # False: the token is only in the file
    environment: dict[str, str] = {}

    @inlineCallbacks
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")
        if self.initial is not None:
            with open(self.path, "w", encoding="utf-8") as handle:
                handle.write(self.initial)
        self.env: dict[str, str] = dict(self.environment)
        self.options = {"state-dir": self.dir, "config": self.path}
        if self.command_line_token:
            self.options["token"] = TOKEN
        initial = config_snapshot.read(self.path, self.env)
        settings = resolve_settings(self.options, self.env, initial)
        self.running = yield start_gateway(self, config=settings.config, config_path=self.path)
        self.gateway = self.running.gateway
        self.port = self.running.port.getHost().port
        self.clock = Clock()
        self.restarts: list[str] = []
        self.reloader = ConfigReloader(
            self.clock,
            InlineExecutor(),
            initial,
            settings_for=lambda snap: resolve_settings(self.options, self.env, snap),
            apply_hot=lambda new, plan: self.gateway.apply_settings(new, plan.actions),
            restart=lambda reason: succeed(self.restarts.append(reason)),
            env=self.env,
        )
        self.reloader.on_change = lambda payload: self.gateway.clients.broadcast("config.changed", payload)
        self.gateway.config_control = self.reloader
        self.reloader.startService()
        self.addCleanup(lambda: self.reloader.stopService() if self.reloader.running else None)
        self.addCleanup(self._no_connections_left)
        self.client, hello = yield connect(self, self.running.url)
        self.assertTrue(hello["ok"], hello)

    @inlineCallbacks
    def _no_connections_left(self):
        yield wait_until(lambda: not _upstream_connections(self.port), limit=3000)

    # -- helpers -----------------------------------------------------------------------------

    @inlineCallbacks
    def call(self, method: str, params: Any = None, client: Any = None):
        response = yield (client or self.client).request(method, params if params is not None else {})
        return response

    @inlineCallbacks
    def ok(self, method: str, params: Any = None, client: Any = None):
        response = yield self.call(method, params, client)
        self.assertTrue(response["ok"], response)
        return response["payload"]

    @inlineCallbacks
    def error(self, method: str, params: Any = None, client: Any = None):
        response = yield self.call(method, params, client)
        self.assertFalse(response["ok"], response)
        return response["error"]

    def on_disk(self) -> str:
        with open(self.path, encoding="utf-8") as handle:
            return handle.read()

    def assertNoSecrets(self, document: Any) -> None:
        encoded = json.dumps(document)
        for secret in SECRETS:
            self.assertNotIn(secret, encoded)

    @inlineCallbacks
    def http_get(self, path: str, token: str | None = TOKEN):
        headers = Headers()
        if token is not None:
            headers.addRawHeader("Authorization", f"Bearer {token}")
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        response = yield agent.request(b"GET", f"{self.running.http_url}{path}".encode("ascii"), headers)
        body = yield readBody(response)
        return response.code, body


class ConfigGetTests(_ConfigRpcBase):
    @inlineCallbacks
    def test_get_is_redacted_everywhere(self):
        payload = yield self.ok("config.get")
        self.assertEqual(payload["path"], self.path)
        self.assertIs(payload["exists"], True)
        self.assertIs(payload["valid"], True)
        self.assertEqual(payload["issues"], [])
        self.assertEqual(payload["hash"], sha256(INITIAL))
        self.assertNoSecrets(payload)
        self.assertEqual(payload["config"]["gateway"]["auth"], {"mode": "token", "token": SENTINEL, "password": SENTINEL})
        self.assertEqual(payload["parsed"]["models"]["providers"]["local"]["apiKey"], SENTINEL)
        self.assertEqual(payload["config"]["hooks"], {"token": SENTINEL, "path": "/hooks"})
        self.assertIn(f'token: "{SENTINEL}"', payload["raw"])
        self.assertIn(f"password: '{SENTINEL}'", payload["raw"])
        self.assertIn("// the test gateway", payload["raw"])
        self.assertEqual(payload["config"]["gateway"]["trustedProxies"], ["10.0.0.1", "10.0.0.2"])

    @inlineCallbacks
    def test_get_invalid_file(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(f'{{ gateway: {{ bogus: 1, auth: {{ token: "{TOKEN}" }} }} }}')
        payload = yield self.ok("config.get")
        self.assertIs(payload["valid"], False)
        self.assertEqual(payload["issues"], [{"path": "gateway.bogus", "message": "unknown key"}])
        self.assertIsNone(payload["raw"])
        self.assertIsNone(payload["parsed"])
        self.assertEqual(payload["config"], {})
        self.assertNoSecrets(payload)

    @inlineCallbacks
    def test_read_only_client_may_get_but_not_set(self):
        reader, hello = yield connect(self, self.running.url, scopes=READ_ONLY)
        self.assertTrue(hello["ok"], hello)
        payload = yield self.ok("config.get", client=reader)
        self.assertNoSecrets(payload)
        for method in ("config.set", "config.patch", "config.apply"):
            error = yield self.error(method, {"raw": "{}", "baseHash": payload["hash"]}, client=reader)
            self.assertEqual(error["code"], "FORBIDDEN", method)
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_unavailable_without_a_reload_service(self):
        self.gateway.config_control = None
        error = yield self.error("config.get")
        self.assertEqual(error["code"], "UNAVAILABLE")

    @inlineCallbacks
    def test_schema(self):
        payload = yield self.ok("config.schema")
        # Everything a file may hold: the reference's keys, with this gateway's merged in.
        self.assertEqual(payload["schema"], json.loads(json.dumps(cached_accepted_schema())))
        self.assertIn("compaction", payload["schema"]["properties"]["agents"]["properties"]["defaults"]["properties"])
        self.assertIn("metrics", payload["schema"]["properties"]["gateway"]["properties"])
        self.assertEqual(payload["version"], 1)
        self.assertIn("uiHints", payload)

    @inlineCallbacks
    def test_schema_lookup(self):
        port = yield self.ok("config.schema.lookup", {"path": "gateway.port"})
        self.assertEqual(port["path"], "gateway.port")
        self.assertEqual(port["reload"], "restart")
        self.assertEqual(port["schema"]["type"], "integer")
        self.assertEqual(port["children"], [])
        limits = yield self.ok("config.schema.lookup", {"path": "gateway.auth.rateLimit"})
        self.assertEqual(limits["reload"], "hot")
        self.assertIn(
            {"key": "maxAttempts", "path": "gateway.auth.rateLimit.maxAttempts", "type": "number", "reload": "hot"},
            limits["children"],
        )
        self.assertNotIn("properties", limits["schema"])
        api_key = yield self.ok("config.schema.lookup", {"path": "models.providers.anything.apiKey"})
        self.assertIs(api_key["schema"]["x-sensitive"], True)
        unused = yield self.ok("config.schema.lookup", {"path": "agents.defaults.compaction"})
        self.assertEqual(unused["reload"], "none")  # accepted as the reference does; not used here
        self.assertEqual(api_key["reload"], "hot")

    @inlineCallbacks
    def test_schema_lookup_unknown_path(self):
        for path in ("gateway.nope", "nope", "gateway.port.deeper"):
            error = yield self.error("config.schema.lookup", {"path": path})
            self.assertEqual(error["code"], "INVALID_REQUEST")
            self.assertEqual(error["message"], "config schema path not found")

    @inlineCallbacks
    def test_schema_lookup_path_characters(self):
        """The params pattern is checked (and compiles): a bad path is INVALID_REQUEST, not a dropped socket."""
        error = yield self.error("config.schema.lookup", {"path": "gateway port"})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        schema_key = yield self.ok("config.schema.lookup", {"path": "$schema"})
        self.assertEqual(schema_key["schema"]["type"], "string")
        self.assertFalse(self.client.closed.called)

    @inlineCallbacks
    def test_health_reports_the_reload_state(self):
        payload = yield self.ok("config.get")
        yield self.ok("config.patch", {"raw": '{ logging: { level: "debug" } }', "baseHash": payload["hash"]})
        health = yield self.ok("health")
        state = health["configReload"]
        self.assertEqual(state["mode"], "hybrid")
        self.assertIs(state["watching"], True)
        self.assertEqual(state["path"], self.path)
        self.assertEqual(state["hash"], sha256(self.on_disk()))
        self.assertEqual(state["lastDecision"]["decision"], "hot")


class ConfigSetTests(_ConfigRpcBase):
    @inlineCallbacks
    def test_stale_base_hash(self):
        error = yield self.error("config.set", {"raw": "{}", "baseHash": sha256("something else")})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(error["message"], "config changed since last load; re-run config.get and retry")
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_base_hash_goes_stale_after_an_edit(self):
        payload = yield self.ok("config.get")
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("// edited by hand\n")
        error = yield self.error("config.set", {"raw": payload["raw"], "baseHash": payload["hash"]})
        self.assertEqual(error["message"], "config changed since last load; re-run config.get and retry")

    @inlineCallbacks
    def test_missing_base_hash_when_the_file_exists(self):
        for method in ("config.set", "config.patch", "config.apply"):
            error = yield self.error(method, {"raw": "{}"})
            self.assertEqual(error["code"], "INVALID_REQUEST")
            self.assertEqual(error["message"], "config base hash required; re-run config.get and retry", method)
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_set_with_the_redacted_raw_keeps_the_secrets(self):
        payload = yield self.ok("config.get")
        edited = payload["raw"].replace('level: "info"', 'level: "warn"')
        result = yield self.ok("config.set", {"raw": edited, "baseHash": payload["hash"]})
        expected = INITIAL.replace('level: "info"', 'level: "warn"')
        self.assertEqual(self.on_disk(), expected)  # comments, quotes and secrets as they were
        self.assertEqual(result["ok"], True)
        self.assertEqual(result["path"], self.path)
        self.assertEqual(result["hash"], sha256(expected))
        self.assertEqual(result["config"]["logging"], {"level": "warn"})
        self.assertNoSecrets(result)
        # The running gateway took it (hot) and still has the real secrets.
        self.assertEqual(self.gateway.settings.config["logging"]["level"], "warn")
        self.assertEqual(self.gateway.settings.auth.token, TOKEN)
        self.assertEqual(self.gateway.catalog.providers["local"].api_key, API_KEY)
        again = yield self.ok("config.get")
        self.assertEqual(again["hash"], result["hash"])

    @inlineCallbacks
    def test_set_unchanged_redacted_raw_writes_the_same_file(self):
        payload = yield self.ok("config.get")
        result = yield self.ok("config.set", {"raw": payload["raw"], "baseHash": payload["hash"]})
        self.assertEqual(self.on_disk(), INITIAL)
        self.assertEqual(result["hash"], payload["hash"])
        with open(self.path + ".bak", encoding="utf-8") as handle:
            self.assertEqual(handle.read(), INITIAL)

    @inlineCallbacks
    def test_sentinel_with_nothing_to_restore(self):
        payload = yield self.ok("config.get")
        raw = payload["raw"].replace('path: "/hooks"', f'path: "/hooks", secret: "{SENTINEL}"')
        error = yield self.error("config.set", {"raw": raw, "baseHash": payload["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(
            error["message"], 'Sentinel value "__OPENCLAW_REDACTED__" in key hooks.secret is not valid as real data'
        )
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_invalid_raw_is_refused_and_the_file_unchanged(self):
        payload = yield self.ok("config.get")
        raw = '{ gateway: { bogus: 1, port: "x", auth: { token: "t" } } }'
        response = yield self.call("config.set", {"raw": raw, "baseHash": payload["hash"]})
        self.assertFalse(response["ok"])
        error = response["error"]
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(error["message"], "invalid config: gateway.bogus: unknown key; gateway.port: expected integer")
        self.assertEqual(
            error["details"]["issues"],
            [{"path": "gateway.bogus", "message": "unknown key"}, {"path": "gateway.port", "message": "expected integer"}],
        )
        self.assertEqual(self.on_disk(), INITIAL)
        self.assertFalse(os.path.exists(self.path + ".bak"))
        self.assertEqual(self.restarts, [])

    @inlineCallbacks
    def test_unparseable_raw(self):
        payload = yield self.ok("config.get")
        error = yield self.error("config.set", {"raw": "{ nope", "baseHash": payload["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertTrue(error["message"].startswith("invalid config.set params: raw is not valid JSON5"), error)
        error = yield self.error("config.set", {"raw": "[1]", "baseHash": payload["hash"]})
        self.assertEqual(error["message"], "config.set raw must be an object")
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_raw_is_required(self):
        error = yield self.error("config.set", {"baseHash": sha256(INITIAL)})
        self.assertEqual(error["code"], "INVALID_REQUEST")


class AuthFloorTests(_ConfigRpcBase):
    """``config.*`` cannot turn auth off by accident (issue 13, item 1); the token is only in the file."""

    command_line_token = False
    REFUSED = (
        "config change refused: the new config would turn authentication off (auth mode token -> none) "
        'without saying gateway.auth.mode: "none"; the file is unchanged'
    )

    @inlineCallbacks
    def assert_refused(self, method: str, raw: str):
        current = yield self.ok("config.get")
        error = yield self.error(method, {"raw": raw, "baseHash": current["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(error["message"], self.REFUSED, method)
        self.assertEqual(self.on_disk(), INITIAL)
        self.assertFalse(os.path.exists(self.path + ".bak"))

    @inlineCallbacks
    def test_set_patch_and_apply_that_drop_auth_are_refused(self):
        yield self.assert_refused("config.set", "{}")
        yield self.assert_refused("config.set", '{ logging: { level: "debug" } }')
        yield self.assert_refused("config.patch", '{ gateway: { auth: null } }')
        yield self.assert_refused("config.patch", '{ gateway: { auth: { mode: null, token: null, password: null } } }')
        yield self.assert_refused("config.apply", '{ gateway: { port: 18789 } }')
        self.clock.advance(60)
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.client.skipped, [])  # no config.changed went out
        settings = self.reloader.current_settings()
        self.assertEqual((settings.auth.mode, settings.auth.token), ("token", TOKEN))

    @inlineCallbacks
    def test_blank_raw_is_not_a_config(self):
        current = yield self.ok("config.get")
        for method in ("config.set", "config.apply", "config.patch"):
            error = yield self.error(method, {"raw": " \n ", "baseHash": current["hash"]})
            self.assertEqual(error["code"], "INVALID_REQUEST")
            self.assertIn("raw is not valid JSON5", error["message"])
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_beyond_loopback_without_auth_is_refused_even_when_explicit(self):
        current = yield self.ok("config.get")
        raw = '{ gateway: { bind: "lan", auth: { mode: "none" } } }'
        error = yield self.error("config.set", {"raw": raw, "baseHash": current["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(
            error["message"],
            "invalid config: refusing to serve beyond loopback without auth: set a token or password, or --bind loopback",
        )
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_saying_none_explicitly_is_taken(self):
        current = yield self.ok("config.get")
        raw = '{ gateway: { auth: { mode: "none", token: null, password: null } } }'
        result = yield self.ok("config.patch", {"raw": raw, "baseHash": current["hash"]})
        self.assertIs(result["restart"], True)
        self.clock.advance(0)
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.current_settings().auth.mode, "none")


class SubstitutedSecretTests(_ConfigRpcBase):
    """An admin points a non-secret key at ``${OPENCLAW_GATEWAY_TOKEN}``; nobody reads the token
    back: not a read-only client, not an event, an error or a log line (issue 13, item 4)."""

    environment = {"OPENCLAW_GATEWAY_TOKEN": TOKEN}
    REFERENCE = "${OPENCLAW_GATEWAY_TOKEN}"

    @inlineCallbacks
    def setUp(self):
        self.logged: list[str] = []
        globalLogPublisher.addObserver(self._observe)
        self.addCleanup(globalLogPublisher.removeObserver, self._observe)
        yield super().setUp()

    def _observe(self, event: dict) -> None:
        self.logged.append(formatEvent(event) + repr(event.get("log_failure", "")))

    @inlineCallbacks
    def patch(self, document: Any, ok: bool = True):
        current = yield self.ok("config.get")
        call = self.ok if ok else self.error
        result = yield call("config.patch", {"raw": json.dumps(document), "baseHash": current["hash"]})
        return result

    @inlineCallbacks
    def test_a_substituted_token_is_shown_as_written(self):
        reader, hello = yield connect(self, self.running.url, scopes=READ_ONLY)
        self.assertTrue(hello["ok"], hello)
        result = yield self.patch({"agents": {"defaults": {"workspace": self.REFERENCE}}})
        self.assertEqual(result["config"]["agents"]["defaults"]["workspace"], self.REFERENCE)
        self.assertNoSecrets(result)
        self.assertEqual(self.reloader.snapshot.config["agents"]["defaults"]["workspace"], TOKEN)  # what runs
        event = yield reader.next_matching(lambda f: f.get("type") == "event" and f.get("event") == "config.changed")
        self.assertNoSecrets(event)
        payload = yield self.ok("config.get", client=reader)
        self.assertNoSecrets(payload)
        self.assertEqual(payload["config"]["agents"]["defaults"]["workspace"], self.REFERENCE)
        self.assertEqual(payload["parsed"]["agents"]["defaults"]["workspace"], self.REFERENCE)
        self.assertIn(self.REFERENCE, payload["raw"])
        self.assertNoSecrets(self.logged)

    @inlineCallbacks
    def test_errors_about_a_substituted_value_name_the_reference(self):
        error = yield self.patch({"models": {"providers": {"local": {"baseUrl": self.REFERENCE}}}}, ok=False)
        self.assertEqual(error["message"], "invalid config: models.providers.local.baseUrl: must match ^https?://")
        self.assertNoSecrets(error)
        error = yield self.patch({"gateway": {"bind": "custom", "customBindHost": self.REFERENCE}}, ok=False)
        self.assertEqual(
            error["message"], f"invalid config: gateway.customBindHost must be an IP address to listen on, not '{self.REFERENCE}'"
        )
        self.assertEqual(self.on_disk(), INITIAL)
        self.assertNoSecrets(self.logged)

    @inlineCallbacks
    def test_a_hand_edit_is_reported_without_the_value(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write('{ gateway: { auth: { mode: "token" }, bind: "custom", customBindHost: "${OPENCLAW_GATEWAY_TOKEN}" } }')
        self.reloader.check_now()
        self.assertEqual(self.reloader.last_decision["decision"], "skipped")
        self.assertIn(self.REFERENCE, self.reloader.last_decision["reason"])
        health = yield self.ok("health", {"probe": True})
        self.assertNoSecrets(health)
        self.assertNoSecrets(self.logged)


def sized_config(size: int) -> str:
    """A valid JSON config (INITIAL's, plus an ignored ``channels`` blob) exactly ``size`` bytes long."""
    document = {**config_snapshot.parse(INITIAL, "x", {}).parsed, "channels": {"blob": ""}}
    padding = size - len(json.dumps(document))
    document["channels"]["blob"] = "x" * padding
    return json.dumps(document)


class SizeLimitTests(_ConfigRpcBase):
    """``config.set/patch/apply`` refuse text over the documented cap; nothing is parsed twice
    (issue 13, item 7: a 5 MB config took 75 s of CPU, and every later config.get 38 s)."""

    TOO_LARGE = f"raw is too large: config text is {MAX_CONFIG_BYTES + 1} bytes; the limit is {MAX_CONFIG_BYTES} bytes (256 KiB)"

    def count_calls(self, module: Any, name: str) -> list[Any]:
        calls: list[Any] = []
        original = getattr(module, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return original(*args, **kwargs)

        self.patch(module, name, counting)
        return calls

    @inlineCallbacks
    def test_text_over_the_cap_is_refused(self):
        current = yield self.ok("config.get")
        raw = sized_config(MAX_CONFIG_BYTES + 1)
        for method in ("config.set", "config.apply", "config.patch"):
            error = yield self.error(method, {"raw": raw, "baseHash": current["hash"]})
            self.assertEqual(error["code"], "INVALID_REQUEST")
            self.assertEqual(error["message"], f"invalid {method} params: {self.TOO_LARGE}")
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_text_at_the_cap_is_taken(self):
        current = yield self.ok("config.get")
        raw = sized_config(MAX_CONFIG_BYTES)
        self.assertEqual(len(raw.encode()), MAX_CONFIG_BYTES)
        result = yield self.ok("config.set", {"raw": raw, "baseHash": current["hash"]})
        self.assertEqual(result["hash"], sha256(raw))
        self.assertEqual(self.on_disk(), raw)

    @inlineCallbacks
    def test_a_patch_that_grows_the_file_over_the_cap_is_refused(self):
        yield self.ok("config.set", {"raw": sized_config(MAX_CONFIG_BYTES - 100), "baseHash": sha256(INITIAL)})
        current = yield self.ok("config.get")
        raw = json.dumps({"channels": {"more": "y" * 200}})
        error = yield self.error("config.patch", {"raw": raw, "baseHash": current["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertTrue(error["message"].startswith("invalid config.patch params: the patched config would be too large"), error)
        self.assertEqual(sha256(self.on_disk()), current["hash"])

    @inlineCallbacks
    def test_unchanged_file_is_not_parsed_again(self):
        parses = self.count_calls(config_snapshot, "parse")
        for _ in range(3):
            yield self.ok("config.get")
        self.assertEqual(parses, [])  # the running snapshot already has this text
        payload = yield self.ok("config.get")
        yield self.ok("config.set", {"raw": payload["raw"].replace('"info"', '"warn"'), "baseHash": payload["hash"]})
        self.assertEqual(len(parses), 1)  # the write's own check
        yield self.ok("config.get")
        yield self.ok("config.get")
        self.assertEqual(len(parses), 1)

    @inlineCallbacks
    def test_json_text_never_goes_through_the_slow_parser(self):
        slow = self.count_calls(parsing.json5, "loads")
        current = yield self.ok("config.get")
        raw = json.dumps({"gateway": {"auth": {"mode": "token", "token": SENTINEL}}, "logging": {"level": "warn"}})
        yield self.ok("config.set", {"raw": raw, "baseHash": current["hash"]})
        current = yield self.ok("config.get")
        yield self.ok("config.patch", {"raw": '{"logging": {"level": "error"}}', "baseHash": current["hash"]})
        yield self.ok("config.get")
        self.assertEqual(slow, [])

    @inlineCallbacks
    def test_json5_text_is_parsed_once_per_write(self):
        slow = self.count_calls(parsing.json5, "loads")
        current = yield self.ok("config.get")
        edited = current["raw"].replace('level: "info"', 'level: "warn"')
        del slow[:]
        yield self.ok("config.set", {"raw": edited, "baseHash": current["hash"]})
        # The client's text, and the text with the secrets put back (checked before writing).
        self.assertEqual(len(slow), 2)
        yield self.ok("config.get")
        self.assertEqual(len(slow), 2)


class NestingAndUnicodeTests(_ConfigRpcBase):
    """Deep nesting and lone surrogates in config text are refused as INVALID_REQUEST with a clear
    message (issue 13, item 11: 5,000 levels answered UNAVAILABLE "maximum recursion depth
    exceeded"), and a file edited that way is reported invalid, the running config kept."""

    TOO_DEEP = f"raw is nested deeper than {MAX_CONFIG_DEPTH} levels"

    @inlineCallbacks
    def refused(self, method: str, raw: str) -> Any:
        current = yield self.ok("config.get")
        error = yield self.error(method, {"raw": raw, "baseHash": current["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST", error)
        self.assertNotIn("recursion", error["message"])
        self.assertEqual(self.on_disk(), INITIAL)
        return error["message"]

    @inlineCallbacks
    def test_five_thousand_levels_in_a_patch(self):
        raw = '{"channels":{"x":' + "[" * 5000 + "]" * 5000 + "}}"
        message = yield self.refused("config.patch", raw)
        self.assertEqual(message, f"invalid config.patch params: {self.TOO_DEEP}")

    @inlineCallbacks
    def test_deep_json5_that_the_json5_parser_cannot_take(self):
        raw = "{ channels: { x: " + "[" * 60 + "]" * 60 + " } }"  # json5 itself recursed out near 55
        for method in ("config.set", "config.apply", "config.patch"):
            message = yield self.refused(method, raw)
            self.assertEqual(message, f"invalid {method} params: {self.TOO_DEEP}")

    @inlineCallbacks
    def test_nesting_within_the_limit_is_taken(self):
        current = yield self.ok("config.get")
        raw = '{"channels":{"x":' + "[" * (MAX_CONFIG_DEPTH - 2) + "]" * (MAX_CONFIG_DEPTH - 2) + "}}"
        yield self.ok("config.patch", {"raw": raw, "baseHash": current["hash"]})

    @inlineCallbacks
    def test_brackets_inside_strings_and_comments_do_not_count(self):
        current = yield self.ok("config.get")
        raw = '{ // [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n channels: { x: "' + "[" * 100 + '" } }'
        yield self.ok("config.patch", {"raw": raw, "baseHash": current["hash"]})

    @inlineCallbacks
    def test_lone_surrogates(self):
        for method, raw in (
            ("config.set", '{"gateway": {"auth": {"mode": "token", "token": "\\ud800"}}}'),
            ("config.apply", "{ channels: { '\\udc00': 1 } }"),
            ("config.patch", '{"channels": {"x": ["a\\udbffb"]}}'),
        ):
            message = yield self.refused(method, raw)
            self.assertIn(f"invalid {method} params: raw holds a lone surrogate", message)

    @inlineCallbacks
    def test_a_deep_hand_edit_is_reported_not_crashed_on(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write('{"channels": {"x": ' + "[" * 5000 + "]" * 5000 + "}}")
        payload = yield self.ok("config.get")
        self.assertIs(payload["valid"], False)
        self.assertEqual(payload["issues"], [{"path": "", "message": f"the text is nested deeper than {MAX_CONFIG_DEPTH} levels"}])


class NoFileYetTests(_ConfigRpcBase):
    initial = None

    @inlineCallbacks
    def test_get_without_a_file(self):
        payload = yield self.ok("config.get")
        self.assertIs(payload["exists"], False)
        self.assertIs(payload["valid"], True)
        self.assertEqual(payload["hash"], hashlib.sha256(b"missing").hexdigest())
        self.assertEqual(payload["config"], {})

    @inlineCallbacks
    def test_base_hash_is_optional_for_the_first_write(self):
        raw = f'{{ gateway: {{ auth: {{ token: "{TOKEN}" }} }}, logging: {{ level: "debug" }} }}'
        result = yield self.ok("config.set", {"raw": raw})
        self.assertEqual(self.on_disk(), raw)
        self.assertEqual(result["hash"], sha256(raw))
        self.assertNoSecrets(result)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        # From now on the file exists, so the hash is required.
        error = yield self.error("config.set", {"raw": raw})
        self.assertEqual(error["message"], "config base hash required; re-run config.get and retry")

    @inlineCallbacks
    def test_patch_creates_the_file(self):
        result = yield self.ok("config.patch", {"raw": f'{{ gateway: {{ auth: {{ token: "{TOKEN}" }} }} }}'})
        self.assertEqual(result["changedPaths"], ["gateway.auth.token"])
        self.assertEqual(json.loads(self.on_disk()), {"gateway": {"auth": {"token": TOKEN}}})


class ConfigPatchTests(_ConfigRpcBase):
    @inlineCallbacks
    def patch(self, raw: Any, **extra: Any):
        current = yield self.ok("config.get")
        text = raw if isinstance(raw, str) else json.dumps(raw)
        result = yield self.ok("config.patch", {"raw": text, "baseHash": current["hash"], **extra})
        return result

    @inlineCallbacks
    def test_merge_semantics(self):
        result = yield self.patch(
            {"logging": {"level": "debug"}, "hooks": None, "gateway": {"trustedProxies": ["10.9.9.9"]}}
        )
        on_disk = json.loads(self.on_disk())
        self.assertNotIn("hooks", on_disk)  # null deletes
        self.assertEqual(on_disk["gateway"]["trustedProxies"], ["10.9.9.9"])  # arrays replace
        self.assertEqual(on_disk["gateway"]["auth"], {"mode": "token", "token": TOKEN, "password": PASSWORD})  # objects merge
        self.assertEqual(on_disk["models"]["providers"]["local"]["apiKey"], API_KEY)
        self.assertEqual(on_disk["logging"], {"level": "debug"})
        self.assertEqual(
            sorted(result["changedPaths"]),
            ["gateway.trustedProxies", "hooks.path", "hooks.token", "logging.level"],
        )
        self.assertIs(result["restart"], False)
        self.assertEqual(result["hash"], sha256(self.on_disk()))
        self.assertNoSecrets(result)
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.gateway.settings.config["logging"]["level"], "debug")

    @inlineCallbacks
    def test_noop(self):
        result = yield self.patch({"logging": {"level": "info"}, "gateway": {"trustedProxies": ["10.0.0.1", "10.0.0.2"]}})
        self.assertEqual(result["ok"], True)
        self.assertEqual(result["noop"], True)
        self.assertEqual(result["changedPaths"], [])
        self.assertEqual(result["path"], self.path)
        self.assertNoSecrets(result["config"])
        self.assertEqual(self.on_disk(), INITIAL)  # not rewritten

    @inlineCallbacks
    def test_deleting_what_is_not_there_is_a_noop(self):
        result = yield self.patch({"channels": None})
        self.assertEqual(result["noop"], True)

    @inlineCallbacks
    def test_sentinel_in_a_patch_keeps_the_secret(self):
        result = yield self.patch({"gateway": {"auth": {"token": SENTINEL}}, "logging": {"level": "warn"}})
        self.assertEqual(result["changedPaths"], ["logging.level"])
        self.assertEqual(json.loads(self.on_disk())["gateway"]["auth"]["token"], TOKEN)

    @inlineCallbacks
    def test_restart_class_patch(self):
        result = yield self.patch({"gateway": {"port": 18799}})
        self.assertEqual(result["changedPaths"], ["gateway.port"])
        self.assertIs(result["restart"], True)
        self.clock.advance(0)
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.current_settings().port, 18799)

    @inlineCallbacks
    def test_patch_must_be_an_object(self):
        current = yield self.ok("config.get")
        error = yield self.error("config.patch", {"raw": "[1]", "baseHash": current["hash"]})
        self.assertEqual(error["message"], "config.patch raw must be an object")

    @inlineCallbacks
    def test_invalid_result_is_refused(self):
        current = yield self.ok("config.get")
        error = yield self.error("config.patch", {"raw": '{ gateway: { port: "x" } }', "baseHash": current["hash"]})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(error["details"]["issues"], [{"path": "gateway.port", "message": "expected integer"}])
        self.assertEqual(self.on_disk(), INITIAL)

    @inlineCallbacks
    def test_patching_an_invalid_file_is_refused(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write("{ bogus: 1 }")
        error = yield self.error("config.patch", {"raw": "{}", "baseHash": sha256("{ bogus: 1 }")})
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertTrue(error["message"].startswith("bogus: unknown key"), error)
        self.assertTrue(error["message"].endswith("before patching"), error)
        self.assertEqual(self.on_disk(), "{ bogus: 1 }")

    @inlineCallbacks
    def test_hot_change_takes_effect_for_http_without_dropping_the_socket(self):
        code, _ = yield self.http_get("/v1/models")
        self.assertEqual(code, 404)
        result = yield self.patch({"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": True}}}}})
        self.assertEqual(result["changedPaths"], ["gateway.http.endpoints.chatCompletions.enabled"])
        self.assertIs(result["restart"], False)
        self.assertEqual(self.restarts, [])
        code, body = yield self.http_get("/v1/models")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["object"], "list")
        code, _ = yield self.http_get("/v1/models", token="wrong")
        self.assertEqual(code, 401)
        # The WebSocket that asked is still there and still answers.
        self.assertFalse(self.client.closed.called)
        yield self.ok("health")

    @inlineCallbacks
    def test_config_changed_reaches_read_clients(self):
        reader, hello = yield connect(self, self.running.url, scopes=READ_ONLY)
        self.assertTrue(hello["ok"], hello)
        self.assertIn("config.changed", hello["payload"]["features"]["events"])
        result = yield self.patch({"logging": {"level": "error"}})
        event = yield reader.next_matching(lambda f: f.get("type") == "event" and f.get("event") == "config.changed")
        payload = event["payload"]
        self.assertEqual(payload["hash"], result["hash"])
        self.assertEqual(payload["changedPaths"], ["logging.level"])
        self.assertIs(payload["restart"], False)
        self.assertEqual(payload["ts"], 0)  # the reloader's clock
        self.assertEqual(sorted(payload), ["changedPaths", "hash", "restart", "ts"])


class ConfigApplyTests(_ConfigRpcBase):
    @inlineCallbacks
    def test_port_change_requests_a_restart_after_the_delay(self):
        current = yield self.ok("config.get")
        raw = current["raw"].replace("auth:", "port: 18798,\n    auth:")
        result = yield self.ok("config.apply", {"raw": raw, "baseHash": current["hash"], "restartDelayMs": 5000})
        self.assertIs(result["restart"], True)
        self.assertEqual(result["hash"], sha256(self.on_disk()))
        self.assertNotIn("changedPaths", result)
        self.assertNoSecrets(result)
        self.assertIn(TOKEN, self.on_disk())
        self.assertIn("port: 18798", self.on_disk())
        self.assertEqual(self.restarts, [])
        self.clock.advance(4.999)
        self.assertEqual(self.restarts, [])
        self.clock.advance(0.001)
        self.assertEqual(self.restarts, ["config change"])
        self.clock.advance(60)
        self.assertEqual(self.restarts, ["config change"])
        self.assertFalse(self.client.closed.called)  # this harness records, it does not restart

    @inlineCallbacks
    def test_hot_apply_does_not_restart(self):
        current = yield self.ok("config.get")
        raw = current["raw"].replace('level: "info"', 'level: "debug"')
        result = yield self.ok("config.apply", {"raw": raw, "baseHash": current["hash"]})
        self.assertIs(result["restart"], False)
        self.clock.advance(60)
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.gateway.settings.config["logging"]["level"], "debug")

    @inlineCallbacks
    def test_stale_base_hash(self):
        error = yield self.error("config.apply", {"raw": "{}", "baseHash": sha256("old")})
        self.assertEqual(error["message"], "config changed since last load; re-run config.get and retry")
