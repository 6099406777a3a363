"""GET /metrics: Prometheus text, behind the gateway auth, fed by requests, events and auth failures."""
from __future__ import annotations

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from .support.gateway import TOKEN, start_gateway
from .support.wsclient import connect


class MetricsTests(TestCase):
    @inlineCallbacks
    def get(self, running, token=TOKEN):
        from twisted.internet import reactor

        pool = HTTPConnectionPool(reactor, persistent=False)
        client = treq.client.HTTPClient(Agent(reactor, pool=pool))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = yield client.get(f"{running.http_url}/metrics", headers=headers)
        body = yield response.text()
        return response, body

    @inlineCallbacks
    def test_counts_requests_events_connections_and_auth_failures(self):
        running = yield start_gateway(self)
        client, hello = yield connect(self, running.url)
        self.assertTrue(hello["ok"])
        yield client.request("health", {})
        yield client.request("no.such.method", {})
        running.gateway.broadcast_tick()
        _, refused = yield connect(self, running.url, token="wrong")
        self.assertFalse(refused["ok"])
        response, body = yield self.get(running)
        self.assertEqual(response.code, 200)
        self.assertIn(b"text/plain", response.headers.getRawHeaders(b"content-type")[0])
        self.assertIn('openclaw_connections{role="operator"} 1.0', body)
        self.assertIn('openclaw_requests_total{method="health",outcome="ok"} 1.0', body)
        # Unknown method names are folded into one label value, so series stay bounded.
        self.assertIn('openclaw_requests_total{method="unknown",outcome="INVALID_REQUEST"} 1.0', body)
        self.assertIn('openclaw_request_duration_seconds_count{method="health"} 1.0', body)
        self.assertIn('openclaw_events_sent_total{event="tick"} 1.0', body)
        self.assertIn('openclaw_auth_failures_total{kind="shared-secret"} 1.0', body)
        self.assertIn("openclaw_sessions 0.0", body)

    @inlineCallbacks
    def test_needs_the_gateway_secret(self):
        running = yield start_gateway(self)
        response, body = yield self.get(running, token=None)
        self.assertEqual(response.code, 401)
        self.assertNotIn("openclaw_", body)

    @inlineCallbacks
    def test_auth_and_endpoint_can_be_switched_off(self):
        running = yield start_gateway(self, config={"gateway": {"metrics": {"auth": False}}})
        response, _ = yield self.get(running, token=None)
        self.assertEqual(response.code, 200)
        running = yield start_gateway(self, config={"gateway": {"metrics": {"enabled": False}}})
        response, body = yield self.get(running)
        self.assertEqual((response.code, body), (404, "Not Found"))
