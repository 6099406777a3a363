"""Handshake rules added after the main handshake suite: Control UI identity and mapped loopback."""
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.security.rate_limit import is_loopback

from .support.gateway import start_gateway
from .support.wsclient import connect


class ControlUiDeviceIdentityTests(TestCase):
    """The Control UI must present a device; a token alone is not enough for a browser app."""

    @inlineCallbacks
    def test_control_ui_without_device_is_refused(self):
        running = yield start_gateway(self)
        client, response = yield connect(
            self, running.url, client={"id": "openclaw-control-ui", "version": "1", "platform": "web", "mode": "ui"}
        )
        self.assertFalse(response["ok"])
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(response["error"]["details"], {"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"})
        code, reason = yield client.closed
        self.assertEqual(code, 1008)
        self.assertTrue(reason.startswith("control ui requires device identity"))


class MappedLoopbackTests(SynchronousTestCase):
    """A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; loopback must still count."""

    def test_ipv4_mapped_loopback(self):
        self.assertTrue(is_loopback("::ffff:127.0.0.1"))
        self.assertFalse(is_loopback("::ffff:203.0.113.5"))


class OriginTests(TestCase):
    """Browsers send Origin; only the gateway's own, loopback, or configured origins may connect."""

    @inlineCallbacks
    def _connect_with_origin(self, origin, **overrides):
        running = yield start_gateway(self, **overrides)
        client, response = yield connect(self, running.url, headers={"Origin": origin}, scopes=["operator.read"])
        return client, response

    @inlineCallbacks
    def test_foreign_origin_is_refused(self):
        client, response = yield self._connect_with_origin("https://evil.example")
        self.assertFalse(response["ok"])
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(response["error"]["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED")
        code, reason = yield client.closed
        self.assertEqual(code, 1008)
        self.assertTrue(reason.startswith("origin not allowed"))

    @inlineCallbacks
    def test_loopback_origin_on_loopback_is_allowed(self):
        client, response = yield self._connect_with_origin("http://localhost:5173")
        self.assertTrue(response["ok"], response)
        yield client.close()

    @inlineCallbacks
    def test_configured_origin_is_allowed(self):
        client, response = yield self._connect_with_origin(
            "https://ui.example", allowed_origins=("https://ui.example",)
        )
        self.assertTrue(response["ok"], response)
        yield client.close()

    @inlineCallbacks
    def test_origin_connection_keeps_no_cli_exception(self):
        """With an Origin the local CLI exception does not apply: scopes are cleared."""
        client, response = yield self._connect_with_origin("http://127.0.0.1:18789")
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["auth"]["scopes"], [])
        yield client.close()
