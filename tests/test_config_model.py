"""The config model: strict schema, snapshots, redaction, atomic writes, the reload planner, docs.

http spec §4 ("File, format and environment", "Config RPC" redaction and writes, "Reload
planner rule table"). Everything here is synchronous and touches only temp files.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from typing import Any

import jsonschema
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import key_table, parsing, redaction, reload_plan, schema, snapshot, writer
from openclaw.config.accepted import node_for
from openclaw.config.loader import ConfigError
from openclaw.config.redaction import SENTINEL, SentinelError
from openclaw.config.reload_plan import HOT, NONE, RESTART, RULES
from openclaw.config.snapshot import EMPTY_FILE_MESSAGE
from openclaw.settings import resolve_settings

PATH = "/nonexistent/openclaw.json"
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "configuration.md")

# /work/shared/spec/reference-gateway.md §1, verbatim.
REFERENCE_CONFIG = """\
{
  gateway: {
    mode: "local", port: 18789, bind: "loopback",
    auth: { mode: "token", token: "anchor-test-token-123" },
    tailscale: { mode: "off" },
    http: { endpoints: { chatCompletions: { enabled: true }, responses: { enabled: true } } },
  },
  discovery: { mdns: { mode: "off" } },
  update: { checkOnStart: false },
  telemetry: { enabled: false },
  models: { catalogRefresh: { enabled: false } },
}
"""


def parse(raw: str, env: dict[str, str] | None = None) -> snapshot.ConfigSnapshot:
    return snapshot.parse(raw, PATH, env or {})


def issues(snap: snapshot.ConfigSnapshot) -> list[tuple[str, str]]:
    return [(issue.path, issue.message) for issue in snap.issues]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SchemaStrictnessTests(SynchronousTestCase):
    """Unknown keys and wrong types are invalid; every problem is reported with its path."""

    def test_unknown_root_key(self):
        snap = parse('{ bogus: 1 }')
        self.assertFalse(snap.valid)
        self.assertEqual(issues(snap), [("bogus", "unknown key")])
        self.assertEqual(snap.config, {})

    def test_unknown_nested_key(self):
        snap = parse('{ gateway: { port: 1234, bogus: true } }')
        self.assertEqual(issues(snap), [("gateway.bogus", "unknown key")])

    def test_unknown_key_deep_inside(self):
        snap = parse('{ gateway: { auth: { rateLimit: { maxAttempts: 3, lockout: 1 } } } }')
        self.assertEqual(issues(snap), [("gateway.auth.rateLimit.lockout", "unknown key")])

    def test_schema_key_is_allowed_at_the_root(self):
        """``$schema`` is the one root key the spec allows beyond the known sections."""
        snap = parse('{ "$schema": "https://example.invalid/schema.json" }')
        self.assertTrue(snap.valid, snap.issues)

    def test_wrong_type(self):
        snap = parse('{ gateway: { port: "18789" } }')
        self.assertEqual(issues(snap), [("gateway.port", "expected integer")])

    def test_wrong_type_boolean(self):
        snap = parse('{ gateway: { http: { endpoints: { chatCompletions: { enabled: "yes" } } } } }')
        self.assertEqual(issues(snap), [("gateway.http.endpoints.chatCompletions.enabled", "expected boolean")])

    def test_enum(self):
        snap = parse('{ gateway: { reload: { mode: "sometimes" } } }')
        [(path, message)] = issues(snap)
        self.assertEqual(path, "gateway.reload.mode")
        self.assertTrue(message.startswith("must be one of"), message)
        for mode in ("off", "hot", "restart", "hybrid"):
            self.assertIn(repr(mode), message)

    def test_range(self):
        snap = parse('{ gateway: { port: 70000 } }')
        [(path, message)] = issues(snap)
        self.assertEqual(path, "gateway.port")
        self.assertIn("65535", message)

    def test_required_key_of_a_model(self):
        snap = parse('{ models: { providers: { local: { baseUrl: "http://h", models: [{ name: "n" }] } } } }')
        self.assertEqual(issues(snap), [("models.providers.local.models.0", "id is required")])

    def test_every_issue_at_once(self):
        """Operators see every problem in one go, not one per restart."""
        snap = parse('{ zzz: 1, gateway: { bogus: 1, port: "x", auth: { mode: "magic" } } }')
        self.assertEqual(
            sorted(path for path, _ in issues(snap)),
            ["gateway.auth.mode", "gateway.bogus", "gateway.port", "zzz"],
        )

    def test_reference_config_is_valid(self):
        """A reference config file starts here unchanged (discovery, update, telemetry, catalogRefresh, tailscale)."""
        snap = parse(REFERENCE_CONFIG)
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["gateway"]["auth"]["token"], "anchor-test-token-123")
        self.assertEqual(snap.config["gateway"]["tailscale"], {"mode": "off"})
        self.assertEqual(snap.config["models"]["catalogRefresh"], {"enabled": False})
        self.assertEqual(snap.config["discovery"], {"mdns": {"mode": "off"}})

    def test_reference_config_resolves_to_settings(self):
        snap = parse(REFERENCE_CONFIG)
        settings = resolve_settings({"state-dir": "/nonexistent", "config": PATH}, {}, snap)
        self.assertEqual(settings.port, 18789)
        self.assertEqual(settings.auth.mode, "token")
        self.assertEqual(settings.auth.token, "anchor-test-token-123")

    def test_schema_is_a_valid_draft7_document(self):
        jsonschema.Draft7Validator.check_schema(schema.CONFIG_SCHEMA)

    def test_every_default_satisfies_its_own_node(self):
        checked = 0
        for path, node in schema.walk():
            if "default" in node:
                checked += 1
                errors = list(jsonschema.Draft7Validator(node).iter_errors(node["default"]))
                self.assertEqual(errors, [], path)
        self.assertGreater(checked, 10)

    def test_walk_lists_parents_before_children(self):
        paths = [path for path, _ in schema.walk()]
        self.assertEqual(len(paths), len(set(paths)))
        for path in paths:
            if "." in path:
                parent = path.rsplit(".", 1)[0]
                self.assertIn(parent, paths)
                self.assertLess(paths.index(parent), paths.index(path))
        self.assertIn("gateway.auth.rateLimit.maxAttempts", paths)

    def test_sensitive_paths(self):
        self.assertEqual(sorted(schema.sensitive_paths()), ["gateway.auth.password", "gateway.auth.token"])

    def test_x_reload_agrees_with_the_planner(self):
        """The schema's ``x-reload`` (shown in the docs) and the rule table never disagree."""
        nodes = dict(schema.walk())
        checked = 0
        for path in nodes:
            parts = path.split(".")
            declared = None
            for end in range(len(parts), 0, -1):
                node = nodes.get(".".join(parts[:end]))
                if node is not None and "x-reload" in node:
                    declared = node["x-reload"]
                    break
            if declared is not None:
                checked += 1
                self.assertEqual(reload_plan.classify(path), declared, path)
        self.assertGreater(checked, 20)

    def test_every_top_level_section_has_a_rule(self):
        for name in schema.CONFIG_SCHEMA["properties"]:
            self.assertIsNotNone(reload_plan.rule_for(name), name)


class ParsingTests(SynchronousTestCase):
    """JSON5, ``${VAR}`` substitution, and the issues a file that cannot be used produces."""

    def test_json5_comments_trailing_commas_unquoted_keys(self):
        raw = """
        // line comment
        {
          /* block comment */
          gateway: {
            port: 1234,   // trailing comma next
            bind: 'loopback',
          },
        }
        """
        snap = parse(raw)
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config, {"gateway": {"port": 1234, "bind": "loopback"}})
        self.assertEqual(snap.parsed, snap.config)

    def test_env_substitution(self):
        raw = '{ gateway: { auth: { token: "${TOK}" }, bind: "${A}-${B}" } }'
        snap = parse(raw, {"TOK": "t0k3n", "A": "x", "B": "y"})
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["gateway"]["auth"]["token"], "t0k3n")
        self.assertEqual(snap.config["gateway"]["bind"], "x-y")
        # parsed is the file as written: the reference, not the secret.
        self.assertEqual(snap.parsed["gateway"]["auth"]["token"], "${TOK}")

    def test_env_substitution_inside_arrays(self):
        snap = parse('{ gateway: { trustedProxies: ["${P1}", "10.0.0.2"] } }', {"P1": "10.0.0.1"})
        self.assertEqual(snap.config["gateway"]["trustedProxies"], ["10.0.0.1", "10.0.0.2"])

    def test_escaped_variable_stays_literal(self):
        snap = parse('{ gateway: { auth: { token: "$${TOK}" } } }', {"TOK": "t0k3n"})
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["gateway"]["auth"]["token"], "${TOK}")

    def test_missing_variable_is_an_issue(self):
        snap = parse('{ gateway: { auth: { token: "${NOPE}" }, trustedProxies: ["${ALSO_NOPE}"] } }')
        self.assertFalse(snap.valid)
        self.assertEqual(
            issues(snap),
            [
                ("gateway.auth.token", "environment variable NOPE is not set"),
                ("gateway.trustedProxies.0", "environment variable ALSO_NOPE is not set"),
            ],
        )
        self.assertEqual(snap.config, {})

    def test_variables_are_not_substituted_in_keys_or_non_strings(self):
        snap = parse('{ gateway: { port: 1234 }, models: { providers: { "${K}": { baseUrl: "http://h" } } } }', {"K": "k"})
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["models"]["providers"], {"${K}": {"baseUrl": "http://h"}})

    def test_top_level_must_be_an_object(self):
        for raw in ("[1, 2]", '"text"', "42", "null"):
            snap = parse(raw)
            self.assertEqual(issues(snap), [("", "the top level must be an object")], raw)
            self.assertIsNone(snap.parsed)
            self.assertEqual(snap.config, {})

    def test_parse_failure(self):
        snap = parse('{ gateway: { port: 1,, } ')
        [(path, message)] = issues(snap)
        self.assertEqual(path, "")
        self.assertTrue(message.startswith("JSON5 parse failed: "), message)
        self.assertIsNone(snap.parsed)
        self.assertFalse(snap.valid)

    def test_empty_or_blank_file_is_invalid(self):
        """A truncated file is a broken edit, not "every key at its default" (issue 13, item 1)."""
        for raw in ("", "  \n", "\t\r\n  "):
            snap = parse(raw)
            self.assertFalse(snap.valid, repr(raw))
            self.assertEqual(issues(snap), [("", EMPTY_FILE_MESSAGE)])
            self.assertIsNone(snap.parsed)
            self.assertEqual(snap.config, {})
            self.assertEqual(snap.hash, sha256(raw))

    def test_an_empty_object_is_a_valid_empty_config(self):
        snap = parse("{}\n")
        self.assertTrue(snap.valid)
        self.assertEqual(snap.config, {})

    def test_hash_is_sha256_of_the_raw_text(self):
        raw = '{ gateway: { port: 1234 } }  // ü\n'
        self.assertEqual(parse(raw).hash, sha256(raw))
        # Even an invalid file has the hash of its text (baseHash works while fixing it).
        self.assertEqual(parse("{ nope").hash, sha256("{ nope"))

    def test_issue_summary(self):
        snap = parse("{ a: 1, b: 2, c: 3, d: 4, e: 5 }")
        self.assertEqual(snap.issue_summary(), "a: unknown key; b: unknown key; c: unknown key; and 2 more")
        self.assertEqual(str(parse("[]").issues[0]), "<root>: the top level must be an object")


class ReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")

    def test_missing_file(self):
        snap = snapshot.read(self.path, {})
        self.assertFalse(snap.exists)
        self.assertTrue(snap.valid)
        self.assertIsNone(snap.raw)
        self.assertIsNone(snap.parsed)
        self.assertEqual(snap.config, {})
        self.assertEqual(snap.hash, hashlib.sha256(b"missing").hexdigest())
        self.assertEqual(snapshot.content_hash(None), hashlib.sha256(b"missing").hexdigest())

    def test_existing_file(self):
        raw = '{ gateway: { auth: { token: "${T}" } } }\n'
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(raw)
        snap = snapshot.read(self.path, {"T": "abc"})
        self.assertTrue(snap.exists)
        self.assertEqual(snap.path, self.path)
        self.assertEqual(snap.raw, raw)
        self.assertEqual(snap.hash, sha256(raw))
        self.assertEqual(snap.config["gateway"]["auth"]["token"], "abc")

    def test_unreadable_path_is_an_issue(self):
        os.makedirs(self.path)
        snap = snapshot.read(self.path, {})
        self.assertTrue(snap.exists)
        [(path, message)] = issues(snap)
        self.assertEqual(path, "")
        self.assertTrue(message.startswith("cannot read the file"), message)

    def test_resolve_settings_refuses_an_invalid_file_listing_every_issue(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write('{ gateway: { port: "x", bogus: 1, reload: { mode: "never" } }, extra: {} }')
        with self.assertRaises(ConfigError) as caught:
            resolve_settings({"state-dir": self.dir, "config": self.path}, {})
        message = str(caught.exception)
        self.assertIn(self.path, message)
        for expected in (
            "gateway.port: expected integer",
            "gateway.bogus: unknown key",
            "gateway.reload.mode: must be one of",
            "extra: unknown key",
        ):
            self.assertIn(expected, message)

    def test_resolve_settings_refuses_a_missing_variable(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write('{ gateway: { auth: { token: "${GW_TOKEN}" } } }')
        with self.assertRaises(ConfigError) as caught:
            resolve_settings({"state-dir": self.dir, "config": self.path}, {})
        self.assertIn("gateway.auth.token: environment variable GW_TOKEN is not set", str(caught.exception))
        settings = resolve_settings({"state-dir": self.dir, "config": self.path}, {"GW_TOKEN": "from-env"})
        self.assertEqual(settings.auth.token, "from-env")


SECRETS = {
    "gateway": {"port": 1234, "auth": {"mode": "token", "token": "tok-1", "password": "pw-1"}},
    "models": {"providers": {"oa": {"baseUrl": "http://127.0.0.1:1/v1", "apiKey": "sk-1"}}},
    "hooks": {"secret": "hs-1", "ingest_token": "it-1", "list": [{"privateKey": "pk-1", "name": "n"}], "url": "http://u"},
    "channels": {"telegram": {"botToken": "bt-1", "maxTokens": 5}, "slack": {"signingSecret": "ss-1"}},
}
SECRET_VALUES = ("tok-1", "pw-1", "sk-1", "hs-1", "it-1", "pk-1", "bt-1", "ss-1")


class RedactionTests(SynchronousTestCase):
    """Secrets read as the sentinel in the object and in the raw text, and come back on write."""

    def test_redact_schema_and_heuristic_secrets(self):
        redacted = redaction.redact(SECRETS)
        self.assertEqual(redacted["gateway"]["auth"], {"mode": "token", "token": SENTINEL, "password": SENTINEL})
        self.assertEqual(redacted["gateway"]["port"], 1234)
        self.assertEqual(redacted["models"]["providers"]["oa"], {"baseUrl": "http://127.0.0.1:1/v1", "apiKey": SENTINEL})
        self.assertEqual(redacted["hooks"]["secret"], SENTINEL)
        self.assertEqual(redacted["hooks"]["ingest_token"], SENTINEL)
        self.assertEqual(redacted["hooks"]["list"], [{"privateKey": SENTINEL, "name": "n"}])
        self.assertEqual(redacted["hooks"]["url"], "http://u")
        self.assertEqual(redacted["channels"]["telegram"], {"botToken": SENTINEL, "maxTokens": 5})
        self.assertEqual(redacted["channels"]["slack"], {"signingSecret": SENTINEL})
        encoded = json.dumps(redacted)
        for value in SECRET_VALUES:
            self.assertNotIn(value, encoded)

    def test_redact_does_not_change_its_input(self):
        before = json.dumps(SECRETS, sort_keys=True)
        redaction.redact(SECRETS)
        self.assertEqual(json.dumps(SECRETS, sort_keys=True), before)

    def test_empty_secret_stays_empty(self):
        """Nothing to hide; a sentinel there could not be restored either."""
        self.assertEqual(redaction.redact({"gateway": {"auth": {"token": ""}}}), {"gateway": {"auth": {"token": ""}}})

    def test_redact_raw_both_quote_styles(self):
        raw = """{
  // the shared secret
  gateway: { auth: { token: "tok-1", password: 'pw-1' } },
  models: { providers: { oa: { baseUrl: "http://127.0.0.1:1/v1", apiKey: 'sk-1', }, }, },
}
"""
        parsed = parse(raw).parsed
        redacted = redaction.redact_raw(raw, parsed)
        for value in ("tok-1", "pw-1", "sk-1"):
            self.assertNotIn(value, redacted)
        self.assertIn(f'token: "{SENTINEL}"', redacted)
        self.assertIn(f"password: '{SENTINEL}'", redacted)
        self.assertIn(f"apiKey: '{SENTINEL}'", redacted)
        self.assertIn("// the shared secret", redacted)
        self.assertEqual(redacted.count(SENTINEL), 3)

    def test_redact_raw_hides_secrets_written_with_escapes(self):
        """A secret whose literal needs escapes in the file must not leak through the raw text."""
        raw = '{ gateway: { auth: { token: "a\\"b\\\\c", password: "p\\u00e9w" } } }'
        parsed = parse(raw).parsed
        self.assertEqual(parsed["gateway"]["auth"], {"token": 'a"b\\c', "password": "péw"})
        redacted = redaction.redact_raw(raw, parsed)
        self.assertEqual(parse(redacted).parsed, {"gateway": {"auth": {"token": SENTINEL, "password": SENTINEL}}})
        # ...and the write puts the secrets back (re-encoded, same values).
        written = redaction.restore_raw(redacted, parse(redacted).parsed, parsed)
        self.assertEqual(parse(written).parsed, parsed)

    def test_restore_puts_stored_values_back(self):
        current = SECRETS
        edited = redaction.redact(SECRETS)
        edited["gateway"]["port"] = 4321
        restored = redaction.restore(edited, current)
        expected = json.loads(json.dumps(SECRETS))
        expected["gateway"]["port"] = 4321
        self.assertEqual(restored, expected)

    def test_restore_keeps_a_new_secret(self):
        edited = redaction.redact(SECRETS)
        edited["gateway"]["auth"]["token"] = "tok-2"
        self.assertEqual(redaction.restore(edited, SECRETS)["gateway"]["auth"]["token"], "tok-2")

    def test_sentinel_with_nothing_to_restore(self):
        with self.assertRaises(SentinelError) as caught:
            redaction.restore({"gateway": {"auth": {"token": SENTINEL}}}, {"gateway": {"auth": {}}})
        self.assertEqual(
            str(caught.exception),
            'Sentinel value "__OPENCLAW_REDACTED__" in key gateway.auth.token is not valid as real data',
        )

    def test_sentinel_in_a_list_with_nothing_to_restore(self):
        with self.assertRaises(SentinelError) as caught:
            redaction.restore({"hooks": {"list": [{"privateKey": SENTINEL}]}}, {})
        self.assertIn("in key hooks.list.0.privateKey is not valid as real data", str(caught.exception))

    def test_restore_raw_round_trip_gives_the_original_text(self):
        raw = """// my gateway
{
  gateway: {
    port: 1234,
    auth: { mode: "token", token: "tok-1", password: 'pw-1' },  // both quote styles
  },
  models: { providers: { oa: { baseUrl: "http://127.0.0.1:1/v1", apiKey: "sk-1" } } },
  hooks: { secret: 'hs-1', list: [ { privateKey: "pk-1" } ], },
}
"""
        current = parse(raw).parsed
        redacted = redaction.redact_raw(raw, current)
        for value in ("tok-1", "pw-1", "sk-1", "hs-1", "pk-1"):
            self.assertNotIn(value, redacted)
        sent_back = parse(redacted).parsed
        self.assertEqual(redaction.restore_raw(redacted, sent_back, current), raw)

    def test_restore_raw_with_an_edit_elsewhere(self):
        raw = '{ gateway: { port: 1234, auth: { token: "tok-1" } } }'
        current = parse(raw).parsed
        edited = redaction.redact_raw(raw, current).replace("1234", "4321")
        written = redaction.restore_raw(edited, parse(edited).parsed, current)
        self.assertEqual(written, '{ gateway: { port: 4321, auth: { token: "tok-1" } } }')

    def test_restore_raw_same_value_in_two_places(self):
        """Each sentinel gets the value stored at its own path, in document order."""
        raw = '{ gateway: { auth: { token: "same", password: "other" } }, hooks: { token: "same" } }'
        current = parse(raw).parsed
        redacted = redaction.redact_raw(raw, current)
        self.assertEqual(redacted.count(SENTINEL), 3)
        self.assertEqual(redaction.restore_raw(redacted, parse(redacted).parsed, current), raw)

    def test_restore_raw_never_writes_a_wrong_secret(self):
        """A secret quoted in a comment is redacted there too; restoring must not shift values."""
        raw = '{\n  // old token was "tok-1"\n  gateway: { auth: { token: "tok-1", password: "pw-1" } },\n}\n'
        current = parse(raw).parsed
        redacted = redaction.redact_raw(raw, current)
        self.assertNotIn("tok-1", redacted)
        written = redaction.restore_raw(redacted, parse(redacted).parsed, current)
        self.assertEqual(parse(written).parsed, current)
        # The comment keeps the sentinel: what it said is not known to the writer.
        self.assertEqual(written, raw.replace('was "tok-1"', f'was "{SENTINEL}"'))

    def test_secrets_quoted_in_comments_are_found_in_one_pass(self):
        """A stray quote before the secret, both quote styles, a secret with a quote inside."""
        raw = (
            "{\n  /* it's \"tok-1\", or 'pw-1', or \"don't\" */\n"
            '  gateway: { auth: { token: "tok-1", password: "pw-1" } },\n'
            "  hooks: { token: \"don't\" },\n}\n"
        )
        redacted = redaction.redact_raw(raw, parse(raw).parsed)
        comment = redacted.split("*/")[0]
        self.assertEqual(comment, f"{{\n  /* it's \"{SENTINEL}\", or '{SENTINEL}', or \"{SENTINEL}\" ")
        self.assertEqual(redacted.count(SENTINEL), 6)

    def test_many_comments_and_many_secrets(self):
        """Each comment used to be rescanned once per secret (comments x secrets)."""
        secrets = {f"c{index}": {"botToken": f"bt-{index:05d}"} for index in range(300)}
        comments = "".join(f'  // channel {index} used "bt-{index:05d}"\n' for index in range(300))
        raw = "{\n" + comments + "  channels: " + json.dumps(secrets) + "\n}\n"
        redacted = redaction.redact_raw(raw, parse(raw).parsed)
        self.assertEqual(redacted.count(SENTINEL), 600)
        self.assertNotIn("bt-0", redacted)

    def test_restore_raw_refuses_when_literals_and_document_disagree(self):
        """Sentinels counted in the text must match those in the parsed document."""
        raw = f'{{ gateway: {{ auth: {{ token: "{SENTINEL}" }} }} }}'
        current = {"gateway": {"auth": {"token": "tok-1", "password": "pw-1"}}}
        with self.assertRaises(SentinelError) as caught:
            redaction.restore_raw(raw, {"gateway": {"auth": {"token": SENTINEL, "password": SENTINEL}}}, current)
        self.assertIn("could not be restored", str(caught.exception))

    def test_restore_raw_without_sentinels_is_the_text_itself(self):
        raw = "{ gateway: { port: 1 } } // as is"
        self.assertEqual(redaction.restore_raw(raw, parse(raw).parsed, {}), raw)

    def test_restore_raw_with_unrestorable_sentinel(self):
        raw = f'{{ gateway: {{ auth: {{ token: "{SENTINEL}" }} }} }}'
        with self.assertRaises(SentinelError) as caught:
            redaction.restore_raw(raw, parse(raw).parsed, {})
        self.assertEqual(
            str(caught.exception),
            'Sentinel value "__OPENCLAW_REDACTED__" in key gateway.auth.token is not valid as real data',
        )

    def test_env_reference_reads_as_written_and_round_trips(self):
        """A secret that is one ``${VAR}`` names the secret without holding it: the reference
        gateway shows it as written (``isConcreteSensitiveString``), and so do we."""
        raw = '{ gateway: { auth: { token: "${GW_TOKEN}", password: "pw-${GW_TOKEN}" } } }'
        snap = parse(raw, {"GW_TOKEN": "tok-secret-1"})
        redacted = redaction.redact_raw(raw, snap.parsed)
        self.assertEqual(redacted, f'{{ gateway: {{ auth: {{ token: "${{GW_TOKEN}}", password: "{SENTINEL}" }} }} }}')
        self.assertEqual(
            redaction.redact(snap.shown), {"gateway": {"auth": {"token": "${GW_TOKEN}", "password": SENTINEL}}}
        )
        self.assertEqual(redaction.restore_raw(redacted, parse(redacted, {"GW_TOKEN": "t"}).parsed, snap.parsed), raw)


class SubstitutionDisplayTests(SynchronousTestCase):
    """Values taken from ``${VAR}`` never show expanded (issue 13, item 4)."""

    ENV = {"OPENCLAW_GATEWAY_TOKEN": "gw-token-0f3a9", "HOST": "10.1.2.3", "ON": "1"}

    def test_shown_config_keeps_the_references(self):
        raw = """{
          agents: { defaults: { workspace: "${OPENCLAW_GATEWAY_TOKEN}" } },
          gateway: { trustedProxies: ["${HOST}", "10.0.0.2"], controlUi: { basePath: "$${HOST}/ui" } },
        }"""
        snap = parse(raw, self.ENV)
        self.assertTrue(snap.valid, snap.issues)
        self.assertEqual(snap.config["agents"]["defaults"]["workspace"], "gw-token-0f3a9")  # what runs
        self.assertEqual(snap.shown["agents"]["defaults"]["workspace"], "${OPENCLAW_GATEWAY_TOKEN}")
        self.assertEqual(snap.shown["gateway"]["trustedProxies"], ["${HOST}", "10.0.0.2"])
        self.assertEqual(snap.shown["gateway"]["controlUi"]["basePath"], "${HOST}/ui")  # a literal, escaped
        self.assertNotIn("gw-token-0f3a9", json.dumps(redaction.redact(snap.shown)))

    def test_issues_never_quote_values(self):
        raw = '{ models: { providers: { p: { baseUrl: "${OPENCLAW_GATEWAY_TOKEN}", models: [{ id: "" }] } } } }'
        snap = parse(raw, self.ENV)
        self.assertEqual(
            issues(snap),
            [("models.providers.p.baseUrl", "must match ^https?://"), ("models.providers.p.models.0.id", "must not be empty")],
        )
        literal = parse('{ models: { providers: { p: { baseUrl: "sk-pasted-here" } } } }')
        self.assertNotIn("sk-pasted-here", literal.issue_summary())

    def test_settings_errors_name_the_reference(self):
        path = os.path.abspath(self.mktemp())
        raw = '{ gateway: { bind: "custom", customBindHost: "${OPENCLAW_GATEWAY_TOKEN}" } }'
        with self.assertRaises(ConfigError) as caught:
            resolve_settings({"state-dir": path}, {}, parse(raw, self.ENV))
        self.assertIn("not '${OPENCLAW_GATEWAY_TOKEN}'", str(caught.exception))
        self.assertNotIn("gw-token-0f3a9", str(caught.exception))

    def test_short_values_are_left_alone_in_messages(self):
        snap = parse('{ gateway: { controlUi: { basePath: "${ON}" } } }', self.ENV)
        self.assertEqual(snap.scrub("port 18789 is 1 of 1"), "port 18789 is 1 of 1")


class FastParseTests(SynchronousTestCase):
    """Plain JSON goes to the C parser; the result must be what JSON5 gives (issue 13, item 7)."""

    def test_plain_json_means_the_same_as_json5(self):
        import json5

        for text in (
            '{"a": 1, "a": 2}',
            '{"n": 12345678901234567890123, "f": 1.5e3, "neg": -0.0, "t": true, "z": null}',
            '{"s": "\\u00e9\\n\\ud83d\\ude00", "e": ""}',
            '{"x": NaN, "y": Infinity, "w": -Infinity}',
            '  {"nested": [[], {}, [1, [2, [3]]]]}  ',
        ):
            fast, slow = parsing.load_json5(text), json5.loads(text)
            self.assertEqual(json.dumps(fast, sort_keys=True), json.dumps(slow, sort_keys=True), text)

    def test_json5_only_text_still_parses(self):
        self.assertEqual(parsing.load_json5("{a: 'b', /* c */ d: [1,],}"), {"a": "b", "d": [1]})

    def test_errors_are_json5_errors(self):
        with self.assertRaises(ValueError) as caught:
            parsing.load_json5("{ nope")
        self.assertIn("<string>:1", str(caught.exception))

    def test_size_is_counted_in_utf8_bytes(self):
        limit = parsing.MAX_CONFIG_BYTES
        self.assertIsNone(parsing.too_large("x" * limit))
        self.assertIsNone(parsing.too_large("é" * (limit // 2)))
        self.assertEqual(
            parsing.too_large("é" * (limit // 2 + 1)),
            f"config text is {limit + 2} bytes; the limit is {limit} bytes (256 KiB)",
        )


class WriterTests(SynchronousTestCase):
    """Atomic write: temp file, fsync, rename; the old file kept as ``.bak`` (ring of five)."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def test_first_write(self):
        writer.write_atomically(self.path, "{ v: 1 }\n")
        self.assertEqual(self.read(self.path), "{ v: 1 }\n")
        self.assertEqual(os.listdir(self.dir), ["openclaw.json"])

    def test_creates_the_directory(self):
        path = os.path.join(self.dir, "sub", "dir", "openclaw.json")
        writer.write_atomically(path, "{}")
        self.assertEqual(self.read(path), "{}")

    def test_file_mode_is_0600(self):
        writer.write_atomically(self.path, "{ v: 1 }")
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_old_file_kept_as_bak(self):
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write("{ v: 0 }")
        writer.write_atomically(self.path, "{ v: 1 }")
        self.assertEqual(self.read(self.path), "{ v: 1 }")
        self.assertEqual(self.read(self.path + ".bak"), "{ v: 0 }")
        self.assertEqual(sorted(os.listdir(self.dir)), ["openclaw.json", "openclaw.json.bak"])

    def test_backups_are_private(self):
        """The backup holds the same secrets as the config, so it is 0600 as well."""
        old_umask = os.umask(0o022)
        self.addCleanup(os.umask, old_umask)
        writer.write_atomically(self.path, '{ gateway: { auth: { token: "t" } } }')
        writer.write_atomically(self.path, "{}")
        writer.write_atomically(self.path, "{ v: 2 }")
        for name in ("openclaw.json.bak", "openclaw.json.bak.1"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dir, name)).st_mode), 0o600, name)

    def test_ring_of_five(self):
        for version in range(8):
            writer.write_atomically(self.path, f"{{ v: {version} }}")
        self.assertEqual(self.read(self.path), "{ v: 7 }")
        self.assertEqual(self.read(self.path + ".bak"), "{ v: 6 }")
        for index in range(1, 5):
            self.assertEqual(self.read(f"{self.path}.bak.{index}"), f"{{ v: {6 - index} }}")
        self.assertEqual(
            sorted(os.listdir(self.dir)),
            ["openclaw.json"] + ["openclaw.json.bak"] + [f"openclaw.json.bak.{i}" for i in range(1, 5)],
        )

    def test_no_temp_files_left(self):
        for version in range(3):
            writer.write_atomically(self.path, f"{{ v: {version} }}")
        self.assertEqual([name for name in os.listdir(self.dir) if name.endswith(".tmp")], [])

    def test_failed_write_leaves_the_old_file_and_no_temp(self):
        writer.write_atomically(self.path, "{ v: 1 }")
        with self.assertRaises(UnicodeEncodeError):
            writer.write_atomically(self.path, "{ v: '\ud800' }")  # a lone surrogate cannot be encoded
        self.assertEqual(self.read(self.path), "{ v: 1 }")
        self.assertEqual(os.listdir(self.dir), ["openclaw.json"])


def _nested(prefix: str, leaf: Any) -> dict[str, Any]:
    node: Any = leaf
    for part in reversed(prefix.split(".")):
        node = {part: node}
    return node


class PlannerRuleTests(SynchronousTestCase):
    """One test per row of ``RULES`` (added below): a path under the prefix gets the row's kind and actions."""

    def check_rule(self, prefix: str, kind: str, row_actions: tuple[str, ...]) -> None:
        # A key under the prefix that this gateway uses (an unused one needs nothing anywhere).
        path = f"{prefix}.probe"
        if node_for(path) is None:
            path = f"{prefix}.{next(iter(node_for(prefix)['properties']))}"
        self.assertEqual(reload_plan.rule_for(path), (prefix, kind, row_actions))
        self.assertEqual(reload_plan.rule_for(prefix), (prefix, kind, row_actions))
        self.assertEqual(reload_plan.classify(path), kind)
        change = reload_plan.plan(_nested(path, 1), _nested(path, 2))
        self.assertEqual(change.changed_paths, (path,))
        if kind == RESTART:
            self.assertTrue(change.restart)
            self.assertEqual(change.restart_reasons, (path,))
            self.assertEqual(change.actions, ())
        elif kind == HOT:
            self.assertFalse(change.restart)
            self.assertEqual(change.hot_paths, (path,))
            expected = {reload_plan.RELOAD_SETTINGS, *row_actions}
            self.assertEqual(change.actions, tuple(a for a in reload_plan.ACTION_ORDER if a in expected))
            for action in row_actions:
                self.assertIn(action, change.actions)
        else:
            self.assertEqual(kind, NONE)
            self.assertFalse(change.restart)
            self.assertEqual(change.noop_paths, (path,))
            self.assertEqual(change.actions, (reload_plan.RELOAD_SETTINGS,))

    def test_prefixes_are_unique(self):
        prefixes = [rule[0] for rule in RULES]
        self.assertEqual(len(prefixes), len(set(prefixes)))

    def test_every_row_has_a_test(self):
        names = {name for name in dir(self) if name.startswith("test_rule_")}
        self.assertEqual(len(names), len(RULES))


def _rule_test(prefix: str, kind: str, actions: tuple[str, ...]) -> Any:
    def test(self: PlannerRuleTests) -> None:
        self.check_rule(prefix, kind, actions)

    test.__doc__ = f"{prefix} → {kind} {list(actions)}"
    return test


for _prefix, _kind, _actions in RULES:
    setattr(PlannerRuleTests, "test_rule_" + re.sub(r"\W", "_", _prefix), _rule_test(_prefix, _kind, _actions))


class PlannerTests(SynchronousTestCase):
    def test_longest_prefix_wins(self):
        self.assertEqual(reload_plan.classify("gateway.auth.rateLimit.maxAttempts"), HOT)
        self.assertEqual(reload_plan.classify("gateway.auth.rateLimit"), HOT)
        self.assertEqual(reload_plan.classify("gateway.auth.token"), RESTART)
        self.assertEqual(reload_plan.classify("gateway.auth"), RESTART)
        self.assertEqual(reload_plan.rule_for("agents.defaults.heartbeat.every")[2], (reload_plan.RESTART_HEARTBEAT,))
        self.assertEqual(reload_plan.rule_for("agents.defaults.model")[0], "agents")

    def test_prefix_matches_whole_segments_only(self):
        """``gateway.reloadX`` is not under ``gateway.reload``; ``sessions`` is not ``session``."""
        self.assertEqual(reload_plan.rule_for("gateway.reloadX")[0], "gateway")
        self.assertIsNone(reload_plan.rule_for("sessions.x"))

    def test_unknown_paths_restart(self):
        self.assertIsNone(reload_plan.rule_for("frobnicate.level"))
        self.assertEqual(reload_plan.classify("frobnicate.level"), RESTART)
        change = reload_plan.plan({}, {"frobnicate": {"level": 1}})
        self.assertTrue(change.restart)
        self.assertEqual(change.restart_reasons, ("frobnicate.level",))

    def test_rate_limit_hot_but_token_restart(self):
        old = {"gateway": {"auth": {"token": "a", "rateLimit": {"maxAttempts": 5}}}}
        hot = reload_plan.plan(old, {"gateway": {"auth": {"token": "a", "rateLimit": {"maxAttempts": 6}}}})
        self.assertFalse(hot.restart)
        self.assertEqual(hot.actions, (reload_plan.RELOAD_SETTINGS, reload_plan.RELOAD_RATE_LIMIT))
        restart = reload_plan.plan(old, {"gateway": {"auth": {"token": "b", "rateLimit": {"maxAttempts": 5}}}})
        self.assertTrue(restart.restart)
        self.assertEqual(restart.restart_reasons, ("gateway.auth.token",))

    def test_diff_scalars_and_nested_objects(self):
        old = {"gateway": {"port": 1, "auth": {"mode": "token"}}, "logging": {"level": "info"}}
        new = {"gateway": {"port": 2, "auth": {"mode": "token"}}, "logging": {"level": "debug"}}
        self.assertEqual(reload_plan.diff_paths(old, new), ["gateway.port", "logging.level"])
        self.assertEqual(reload_plan.diff_paths(old, old), [])

    def test_diff_added_and_removed_objects_by_leaves(self):
        """Adding gateway.http.endpoints is as hot as changing it."""
        added = {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": True}, "responses": {"enabled": True}}}}}
        self.assertEqual(
            reload_plan.diff_paths({}, added),
            ["gateway.http.endpoints.chatCompletions.enabled", "gateway.http.endpoints.responses.enabled"],
        )
        self.assertEqual(
            reload_plan.diff_paths(added, {}),
            ["gateway.http.endpoints.chatCompletions.enabled", "gateway.http.endpoints.responses.enabled"],
        )
        self.assertFalse(reload_plan.plan({}, added).restart)

    def test_diff_empty_object_counts_as_its_own_path(self):
        self.assertEqual(reload_plan.diff_paths({}, {"hooks": {}}), ["hooks"])

    def test_diff_arrays_compare_whole(self):
        old = {"gateway": {"trustedProxies": ["a", "b"]}}
        self.assertEqual(reload_plan.diff_paths(old, {"gateway": {"trustedProxies": ["a", "c"]}}), ["gateway.trustedProxies"])
        self.assertEqual(reload_plan.diff_paths(old, {"gateway": {"trustedProxies": ["a", "b"]}}), [])
        listed = {"agents": {"list": [{"id": "a"}]}}
        self.assertEqual(reload_plan.diff_paths(listed, {"agents": {"list": [{"id": "a", "name": "A"}]}}), ["agents.list"])

    def test_diff_type_change_reports_the_key(self):
        self.assertEqual(reload_plan.diff_paths({"hooks": 1}, {"hooks": {"a": 1}}), ["hooks"])

    def test_diff_root_change(self):
        self.assertEqual(reload_plan.diff_paths([1], [2]), ["<root>"])
        self.assertEqual(reload_plan.diff_paths(1, 2), ["<root>"])
        self.assertEqual(reload_plan.classify("<root>"), RESTART)

    def test_plan_summary_fields(self):
        old = {"gateway": {"port": 1}, "models": {}, "meta": {"lastTouchedVersion": "1"}}
        new = {
            "gateway": {"port": 2, "tools": {"allow": ["x"]}},
            "models": {"mode": "merge"},
            "meta": {"lastTouchedVersion": "2"},
            "logging": {"level": "debug"},
        }
        change = reload_plan.plan(old, new)
        self.assertFalse(change.empty)
        self.assertEqual(
            change.summary(),
            {
                "changedPaths": ["gateway.port", "gateway.tools.allow", "models.mode", "meta.lastTouchedVersion", "logging.level"],
                "restartGateway": True,
                "restartReasons": ["gateway.port"],
                "hotReasons": ["gateway.tools.allow", "logging.level"],
                # Accepted because the reference accepts them; nothing here acts on them.
                "noopPaths": ["models.mode", "meta.lastTouchedVersion"],
                "actions": [reload_plan.RELOAD_SETTINGS, reload_plan.RELOAD_LOGGING],
            },
        )
        json.dumps(change.summary())

    def test_actions_follow_action_order(self):
        change = reload_plan.plan(
            {},
            {"logging": {"level": "warn"}, "hooks": {"a": 1}, "gateway": {"auth": {"rateLimit": {"maxAttempts": 3}}}, "session": {"scope": "global"}},
        )
        self.assertEqual(
            change.actions,
            (
                reload_plan.RELOAD_SETTINGS,
                reload_plan.RELOAD_CATALOG,
                reload_plan.RELOAD_RATE_LIMIT,
                reload_plan.RELOAD_HOOKS,
                reload_plan.RELOAD_LOGGING,
            ),
        )

    def test_empty_plan(self):
        change = reload_plan.plan({"a": 1}, {"a": 1})
        self.assertTrue(change.empty)
        self.assertFalse(change.restart)
        self.assertEqual(change.actions, ())


class DocsTests(SynchronousTestCase):
    """docs/configuration.md holds the generated key table, so the docs follow the schema."""

    def doc(self) -> str:
        with open(DOCS, encoding="utf-8") as handle:
            return handle.read()

    def keys_section(self) -> str:
        text = self.doc()
        self.assertIn("\n## Keys\n", text)
        section = text.split("\n## Keys\n", 1)[1]
        return section.split("\n## ", 1)[0]

    def test_keys_section_is_exactly_the_generated_table(self):
        self.assertEqual(
            self.keys_section().strip("\n"),
            key_table.markdown().strip("\n"),
            "docs/configuration.md is stale: regenerate the table with `python -m openclaw.config.key_table`",
        )

    def test_table_lists_every_key(self):
        table = key_table.markdown()
        for path, _ in schema.walk():
            if path != "$schema":
                self.assertIn(f"| `{path}` |", table)

    def test_table_defaults_are_json(self):
        """Defaults are shown as they are written in the file (``true``, not Python's ``True``)."""
        table = key_table.markdown()
        self.assertIn("| `gateway.controlUi.enabled` | boolean | `true` |", table)
        self.assertIn("| `gateway.http.endpoints.chatCompletions.enabled` | boolean | `false` |", table)
        self.assertNotIn("`True`", table)
        self.assertNotIn("`False`", table)

    def test_intro_covers_the_essentials(self):
        intro = self.doc().split("\n## Keys\n", 1)[0]
        for needle in (
            "JSON5",
            "${VAR}",
            "$${VAR}",
            "OPENCLAW_GATEWAY_TOKEN",
            "OPENCLAW_GATEWAY_PASSWORD",
            "OPENCLAW_GATEWAY_PORT",
            "OPENCLAW_CONFIG_PATH",
            "OPENCLAW_STATE_DIR",
            "debounceMs",
            "SIGHUP",
            "SIGUSR1",
            "baseHash",
            SENTINEL,
            "config.get",
            "config.set",
            "config.patch",
            "config.apply",
        ):
            self.assertIn(needle, intro)
        for mode in ("off", "hot", "restart", "hybrid"):
            self.assertIn(f"`{mode}`", intro)
