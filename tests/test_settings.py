"""Settings resolution: command line over environment over the JSON5 file over defaults (http spec §4).

Every test passes ``env`` explicitly and points the state directory at a fresh temp dir, so the
real environment and the real ``~/.openclaw`` never influence (or get touched by) a run.
"""
from __future__ import annotations

import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.loader import ConfigError
from openclaw.protocol.constants import DEFAULT_PORT, HANDSHAKE_TIMEOUT_MS
from openclaw.settings import GatewaySettings, resolve_settings


class _TempStateMixin:
    """A private state dir per test, plus helpers to write a config file into it."""

    def setUp(self) -> None:
        self.state_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.state_dir)
        self.config_path = os.path.join(self.state_dir, "openclaw.json")

    def write_config(self, text: str, path: str | None = None) -> str:
        path = path or self.config_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def write_json(self, document: Any, path: str | None = None) -> str:
        return self.write_config(json.dumps(document), path)

    def resolve(self, env: dict[str, str] | None = None, **options: Any) -> GatewaySettings:
        """``resolve_settings`` with the state dir pinned unless the test overrides it."""
        opts: dict[str, Any] = {"state-dir": self.state_dir}
        opts.update({key.replace("_", "-"): value for key, value in options.items()})
        return resolve_settings(opts, env=env or {})


class DefaultsTests(_TempStateMixin, SynchronousTestCase):
    """With no file, no environment and no flags the gateway runs on documented defaults."""

    def test_defaults_without_a_config_file(self):
        """A missing file means defaults apply; it is not an error (spec: ``exists:false``)."""
        settings = self.resolve()
        self.assertEqual(settings.port, DEFAULT_PORT)
        self.assertEqual(settings.port, 18789)
        self.assertEqual(settings.bind, "loopback")
        self.assertEqual(settings.auth.mode, "none")
        self.assertIsNone(settings.auth.token)
        self.assertIsNone(settings.auth.password)
        self.assertEqual(settings.state_dir, self.state_dir)
        self.assertEqual(settings.config_path, self.config_path)
        self.assertEqual(dict(settings.config), {})
        self.assertEqual(settings.handshake_timeout_ms, HANDSHAKE_TIMEOUT_MS)

    def test_loopback_listens_on_ipv4_and_ipv6(self):
        """Loopback means both loopback addresses, so ``localhost`` works either way."""
        self.assertEqual(self.resolve().interfaces, ("127.0.0.1", "::1"))

    def test_empty_file_refuses_to_start(self):
        """An empty file is most likely a truncated one: starting on defaults would drop the
        token and the port it held, so start-up stops with a message naming the file."""
        for text in ("", "   \n"):
            self.write_config(text)
            with self.assertRaises(ConfigError) as caught:
                self.resolve()
            self.assertIn(self.config_path, str(caught.exception))
            self.assertIn("the file is empty", str(caught.exception))

    def test_an_empty_object_is_an_empty_config(self):
        self.write_config("{}\n")
        self.assertEqual(dict(self.resolve().config), {})


class PortPrecedenceTests(_TempStateMixin, SynchronousTestCase):
    """``--port`` > ``OPENCLAW_GATEWAY_PORT`` > ``gateway.port`` > 18789."""

    def setUp(self) -> None:
        super().setUp()
        self.write_json({"gateway": {"port": 1111}})

    def test_flag_beats_environment_and_file(self):
        self.assertEqual(self.resolve(env={"OPENCLAW_GATEWAY_PORT": "2222"}, port=3333).port, 3333)

    def test_environment_beats_file(self):
        """The environment value is a string and is converted to an int."""
        self.assertEqual(self.resolve(env={"OPENCLAW_GATEWAY_PORT": "2222"}).port, 2222)

    def test_file_beats_default(self):
        self.assertEqual(self.resolve().port, 1111)

    def test_default_when_nothing_is_set(self):
        os.remove(self.config_path)
        self.assertEqual(self.resolve().port, 18789)

    def test_non_numeric_environment_port_is_a_config_error(self):
        """A typo in the environment must stop start-up with a message, not a traceback."""
        with self.assertRaises(ConfigError) as caught:
            self.resolve(env={"OPENCLAW_GATEWAY_PORT": "eighty"})
        self.assertIn("port", str(caught.exception))
        self.assertIn("eighty", str(caught.exception))

    def test_non_numeric_file_port_is_a_config_error(self):
        self.write_json({"gateway": {"port": "http"}})
        with self.assertRaises(ConfigError) as caught:
            self.resolve()
        self.assertIn("port", str(caught.exception))

    def test_out_of_range_ports_are_config_errors(self):
        """0, negatives and values above 65535 cannot be bound and are refused up front."""
        for value in ("0", "-5", "65536"):
            with self.subTest(value=value):
                with self.assertRaises(ConfigError):
                    self.resolve(env={"OPENCLAW_GATEWAY_PORT": value})


class AuthResolutionTests(_TempStateMixin, SynchronousTestCase):
    """Token and password come from the flag, the environment or the file; the mode is inferred."""

    def test_token_precedence(self):
        self.write_json({"gateway": {"auth": {"token": "from-file"}}})
        env = {"OPENCLAW_GATEWAY_TOKEN": "from-env"}
        self.assertEqual(self.resolve(env=env, token="from-flag").auth.token, "from-flag")
        self.assertEqual(self.resolve(env=env).auth.token, "from-env")
        self.assertEqual(self.resolve().auth.token, "from-file")

    def test_password_precedence(self):
        self.write_json({"gateway": {"auth": {"password": "from-file"}}})
        env = {"OPENCLAW_GATEWAY_PASSWORD": "from-env"}
        self.assertEqual(self.resolve(env=env, password="from-flag").auth.password, "from-flag")
        self.assertEqual(self.resolve(env=env).auth.password, "from-env")
        self.assertEqual(self.resolve().auth.password, "from-file")

    def test_mode_is_token_when_a_token_is_set(self):
        self.assertEqual(self.resolve(env={"OPENCLAW_GATEWAY_TOKEN": "t"}).auth.mode, "token")

    def test_token_wins_the_inference_over_a_password(self):
        """Both set and no explicit mode: the reference prefers the token."""
        settings = self.resolve(token="t", password="p")
        self.assertEqual(settings.auth.mode, "token")

    def test_mode_is_password_when_only_a_password_is_set(self):
        self.assertEqual(self.resolve(env={"OPENCLAW_GATEWAY_PASSWORD": "p"}).auth.mode, "password")

    def test_mode_is_none_without_secrets(self):
        self.assertEqual(self.resolve().auth.mode, "none")

    def test_mode_from_file(self):
        """``gateway.auth.mode`` picks password even though a token is also configured."""
        self.write_json({"gateway": {"auth": {"mode": "password", "token": "t", "password": "p"}}})
        self.assertEqual(self.resolve().auth.mode, "password")

    def test_token_mode_without_token_is_refused(self):
        with self.assertRaises(ConfigError) as caught:
            self.resolve(auth="token")
        self.assertIn("token", str(caught.exception))

    def test_password_mode_without_password_is_refused(self):
        with self.assertRaises(ConfigError) as caught:
            self.resolve(auth="password")
        self.assertIn("password", str(caught.exception))

    def test_unknown_mode_is_refused(self):
        with self.assertRaises(ConfigError) as caught:
            self.resolve(auth="bogus")
        self.assertIn("bogus", str(caught.exception))

    def test_lan_without_auth_is_refused(self):
        """Serving beyond loopback with no secret would expose the control plane to the network."""
        with self.assertRaises(ConfigError):
            self.resolve(bind="lan")

    def test_lan_with_a_token_listens_on_every_ipv4_interface(self):
        settings = self.resolve(bind="lan", token="t")
        self.assertEqual(settings.interfaces, ("0.0.0.0",))

    def test_bind_from_file(self):
        self.write_json({"gateway": {"bind": "lan", "auth": {"token": "t"}}})
        self.assertEqual(self.resolve().bind, "lan")


class PathTests(_TempStateMixin, SynchronousTestCase):
    """``OPENCLAW_STATE_DIR`` and ``OPENCLAW_CONFIG_PATH`` move the state and the file."""

    def test_state_dir_from_environment(self):
        """The config file is looked up inside the state dir named by the environment."""
        other = os.path.abspath(self.mktemp())
        self.write_json({"gateway": {"port": 4444}}, os.path.join(other, "openclaw.json"))
        settings = resolve_settings({}, env={"OPENCLAW_STATE_DIR": other})
        self.assertEqual(settings.state_dir, other)
        self.assertEqual(settings.config_path, os.path.join(other, "openclaw.json"))
        self.assertEqual(settings.port, 4444)

    def test_state_dir_flag_beats_environment(self):
        other = os.path.abspath(self.mktemp())
        settings = self.resolve(env={"OPENCLAW_STATE_DIR": other})
        self.assertEqual(settings.state_dir, self.state_dir)

    def test_config_path_from_environment(self):
        elsewhere = os.path.join(os.path.abspath(self.mktemp()), "custom.json5")
        self.write_json({"gateway": {"port": 5555}}, elsewhere)
        settings = self.resolve(env={"OPENCLAW_CONFIG_PATH": elsewhere})
        self.assertEqual(settings.config_path, elsewhere)
        self.assertEqual(settings.port, 5555)
        # The state dir is not derived from the config path.
        self.assertEqual(settings.state_dir, self.state_dir)

    def test_config_flag_beats_environment(self):
        base = os.path.abspath(self.mktemp())
        from_env = self.write_json({"gateway": {"port": 5555}}, os.path.join(base, "env.json"))
        from_flag = self.write_json({"gateway": {"port": 6666}}, os.path.join(base, "flag.json"))
        settings = self.resolve(env={"OPENCLAW_CONFIG_PATH": from_env}, config=from_flag)
        self.assertEqual(settings.config_path, from_flag)
        self.assertEqual(settings.port, 6666)


class ConfigFileTests(_TempStateMixin, SynchronousTestCase):
    """The file is JSON5; anything unusable is a ConfigError that names the file."""

    def test_json5_comments_trailing_commas_and_bare_keys(self):
        self.write_config(
            """
            // the operator's notes
            {
              /* block comment */
              gateway: {
                port: 7777,
                auth: { token: 'single-quoted', },
              },
            }
            """
        )
        settings = self.resolve()
        self.assertEqual(settings.port, 7777)
        self.assertEqual(settings.auth.token, "single-quoted")
        self.assertEqual(settings.auth.mode, "token")

    def test_broken_file_names_the_path(self):
        """The operator must learn which file to fix."""
        self.write_config('{"gateway": {"port": 1,,}')
        with self.assertRaises(ConfigError) as caught:
            self.resolve()
        self.assertIn(self.config_path, str(caught.exception))
        self.assertIn("JSON5", str(caught.exception))

    def test_top_level_must_be_an_object(self):
        for text in ("[1, 2]", "42", '"gateway"', "null"):
            with self.subTest(text=text):
                self.write_config(text)
                with self.assertRaises(ConfigError) as caught:
                    self.resolve()
                self.assertIn("top level must be an object", str(caught.exception))
                self.assertIn(self.config_path, str(caught.exception))

    def test_unreadable_path_is_a_config_error(self):
        """A directory where the file should be is reported, not raised as a raw OSError."""
        os.makedirs(self.config_path)
        with self.assertRaises(ConfigError) as caught:
            self.resolve()
        self.assertIn(self.config_path, str(caught.exception))

    def test_config_is_kept_for_later_lookups(self):
        """Other keys of the file stay available to the services that read them."""
        self.write_json({"gateway": {"controlUi": {"allowedOrigins": ["https://a.example"]}}})
        settings = self.resolve()
        self.assertEqual(settings.allowed_origins, ("https://a.example",))
        self.assertEqual(settings.config["gateway"]["controlUi"]["allowedOrigins"], ["https://a.example"])


class EnvironmentLimitsTests(_TempStateMixin, SynchronousTestCase):
    """Numeric environment overrides are validated like the port."""

    def test_handshake_timeout_from_environment(self):
        self.assertEqual(self.resolve(env={"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "2500"}).handshake_timeout_ms, 2500)

    def test_bad_handshake_timeout_is_a_config_error(self):
        with self.assertRaises(ConfigError) as caught:
            self.resolve(env={"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "soon"})
        self.assertIn("OPENCLAW_HANDSHAKE_TIMEOUT_MS", str(caught.exception))
