"""End-to-end: a real socket connects, gets hello-ok, and calls health."""
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.security.device_identity import DeviceKeyPair

from .support.gateway import start_gateway
from .support.wsclient import connect


class SmokeTests(TestCase):
    @inlineCallbacks
    def test_device_less_cli_gets_hello_and_health(self):
        running = yield start_gateway(self)
        client, response = yield connect(self, running.url, scopes=["operator.read"])
        self.assertTrue(response["ok"], response)
        hello = response["payload"]
        self.assertEqual(hello["type"], "hello-ok")
        self.assertEqual(hello["protocol"], 4)
        self.assertEqual(hello["auth"]["scopes"], ["operator.read"])
        health = yield client.request("health", {})
        self.assertTrue(health["ok"])
        self.assertTrue(health["payload"]["ok"])
        yield client.close()

    @inlineCallbacks
    def test_device_connect_is_paired_silently_and_gets_a_token(self):
        running = yield start_gateway(self)
        key = DeviceKeyPair.generate()
        client, response = yield connect(self, running.url, device=key)
        self.assertTrue(response["ok"], response)
        auth = response["payload"]["auth"]
        self.assertIn("deviceToken", auth)
        self.assertIsNotNone(running.gateway.pairing.store.paired(key.device_id))
        yield client.close()
