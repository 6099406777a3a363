"""What a newcomer sees at start-up: the banner, where twistd's pid file goes, quiet HTTP pools."""
from __future__ import annotations

import os
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site

from openclaw.control_ui.settings import ControlUiSettings
from openclaw.banner import HTTP_API_DISABLED, NO_PROVIDER, banner_lines, dashboard_url
from openclaw.providers.pool import QuietConnectionPool
from openclaw.security.shared_secret import AuthSettings
from openclaw.tap import _pidfile_in_state_dir

from .support.gateway import make_gateway


class BannerTests(SynchronousTestCase):
    def gateway(self, **overrides):
        return make_gateway(self, state_dir=tempfile.mkdtemp(prefix="openclaw-banner-"), **overrides)

    def test_urls_auth_paths_and_both_warnings(self):
        gateway = self.gateway(port=18790)
        lines, warnings = banner_lines(gateway)
        text = "\n".join(lines)
        self.assertIn("WebSocket: ws://127.0.0.1:18790", text)
        self.assertIn("HTTP:      http://127.0.0.1:18790", text)
        self.assertIn("Dashboard: http://127.0.0.1:18790/ (not served: no Control UI root is configured", text)
        self.assertIn("Auth:      token", text)
        self.assertIn("Config:    none (built-in defaults)", text)
        self.assertIn(f"State:     {gateway.settings.state_dir}", text)
        self.assertEqual(warnings, [NO_PROVIDER, HTTP_API_DISABLED])

    def test_no_warnings_once_a_model_and_the_http_api_are_set(self):
        config = {
            "models": {"providers": {"local": {"baseUrl": "http://127.0.0.1:9/v1", "models": [{"id": "m"}]}}},
            "agents": {"defaults": {"model": "local/m"}},
        }
        config["gateway"] = {"http": {"endpoints": {"chatCompletions": {"enabled": True}}}}
        root = tempfile.mkdtemp()
        with open(os.path.join(root, "index.html"), "w") as handle:
            handle.write("<html></html>")
        control_ui = ControlUiSettings(base_path="/ui", root=root)
        gateway = self.gateway(config=config, tls_enabled=True, bind="lan", auth=AuthSettings(mode="none"), control_ui=control_ui)
        lines, warnings = banner_lines(gateway)
        self.assertEqual(warnings, [])
        self.assertIn("WebSocket: wss://127.0.0.1:18789", lines[1])
        self.assertIn("anyone who can reach the port", "\n".join(lines))
        self.assertEqual(dashboard_url(gateway.settings), "https://127.0.0.1:18789/ui/")
        self.assertIn("  Dashboard: https://127.0.0.1:18789/ui/", lines)

    def test_a_named_config_file_that_is_missing_says_so(self):
        path = os.path.join(tempfile.mkdtemp(), "openclaw.json")
        lines, _ = banner_lines(self.gateway(config_path=path))
        self.assertIn(f"  Config:    {path} (not there yet: built-in defaults)", lines)


class PidFileTests(SynchronousTestCase):
    def test_default_pidfile_moves_to_the_state_dir(self):
        state = os.path.join(tempfile.mkdtemp(), "state")
        options = ServerOptions()
        options.parseOptions(["-n", "openclaw", "--state-dir", state, "--port", "1"])
        self.assertEqual(options["pidfile"], os.path.join(state, "twistd.pid"))
        self.assertTrue(os.path.isdir(state))

    def test_an_explicit_pidfile_is_kept(self):
        for chosen in ("", "/run/gw.pid"):
            options = {"pidfile": chosen}
            _pidfile_in_state_dir(options, "/nonexistent/state")
            self.assertEqual(options["pidfile"], chosen)
        _pidfile_in_state_dir(None, "/nonexistent/state")  # embedded: no twistd around


class QuietPoolTests(TestCase):
    @inlineCallbacks
    def test_no_factory_lines_per_upstream_connection(self):
        root = Resource()
        root.putChild(b"", _Hello())
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        seen = []
        observer = seen.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        pool = QuietConnectionPool(reactor, persistent=False)
        response = yield Agent(reactor, pool=pool).request(b"GET", f"http://127.0.0.1:{port.getHost().port}/".encode())
        body = yield readBody(response)
        self.assertEqual(body, b"hello")
        yield pool.closeCachedConnections()
        noisy = [event for event in seen if "HTTP11ClientFactory" in str(event.get("log_format", "")) + str(event.get("factory", ""))]
        self.assertEqual(noisy, [])


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


class ModelOptionTests(SynchronousTestCase):
    """``twistd openclaw --model openai/gpt-4.1-mini`` with the key in the environment: no file needed."""

    def settings(self, *argv, env=None):
        from openclaw.settings import resolve_settings
        from openclaw.tap import Options

        options = Options()
        options.parseOptions(["--state-dir", tempfile.mkdtemp(), "--token", "t", *argv])
        return resolve_settings(options, env or {})

    def test_model_option_sets_the_default_model(self):
        settings = self.settings("--model", "openai/gpt-4.1-mini", env={"OPENAI_API_KEY": "sk-test"})
        gateway = make_gateway(self, config=settings.config, provider_env=settings.provider_env)
        self.assertEqual(gateway.catalog.candidates(None)[0], "openai/gpt-4.1-mini")
        self.assertNotIn(NO_PROVIDER, banner_lines(gateway)[1])

    def test_model_option_keeps_configured_fallbacks(self):
        from openclaw.config.overrides import masked_paths
        from openclaw.settings import with_model_override

        config = {"agents": {"defaults": {"model": {"primary": "a/b", "fallbacks": ["c/d"]}}}}
        changed = with_model_override(config, "x/y")
        self.assertEqual(changed["agents"]["defaults"]["model"], {"primary": "x/y", "fallbacks": ["c/d"]})
        self.assertEqual(config["agents"]["defaults"]["model"]["primary"], "a/b")  # the file's view is untouched
        self.assertEqual(masked_paths({"model": "x/y"}, {})["agents.defaults.model"], "--model")
