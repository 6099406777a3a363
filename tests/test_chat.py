"""chat.send / chat.history / chat.abort over a real WebSocket against a real streaming upstream."""
from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.security.scopes import ADMIN, READ, WRITE

from .support.gateway import start_gateway
from .support.upstream import FakeUpstream
from .support.wsclient import connect

ALL = [ADMIN, READ, WRITE]


def chat_event(state, run_id=None):
    def matches(frame):
        payload = frame.get("payload") or {}
        return (
            frame.get("type") == "event"
            and frame.get("event") == "chat"
            and payload.get("state") == state
            and (run_id is None or payload.get("runId") == run_id)
        )

    return matches


class ChatSendTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.upstream = FakeUpstream().start(self)
        self.running = yield start_gateway(self, config=self.upstream.config(contextWindow=8192, maxTokens=256))
        self.client, hello = yield connect(self, self.running.url, scopes=ALL)
        self.assertTrue(hello["ok"], hello)

    @inlineCallbacks
    def test_send_streams_and_history_reads_back(self):
        response = yield self.client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": "k1"})
        self.assertEqual(response["payload"], {"runId": "k1", "status": "started"})
        final = yield self.client.next_matching(chat_event("final", "k1"))
        payload = final["payload"]
        self.assertEqual(payload["sessionKey"], "agent:main:main")
        self.assertEqual(payload["message"]["content"], [{"type": "text", "text": "Hello there!"}])
        self.assertEqual(payload["stopReason"], "stop")
        history = yield self.client.request("chat.history", {"sessionKey": "agent:main:main"})
        messages = history["payload"]["messages"]
        self.assertEqual([m["role"] for m in messages], ["user", "assistant"])
        self.assertEqual(messages[0]["content"], "hi")
        self.assertEqual(messages[1]["content"][0]["text"], "Hello there!")
        sent = self.upstream.requests[0]
        self.assertEqual(sent["body"]["model"], "m1")
        self.assertEqual(sent["body"]["messages"], [{"role": "user", "content": "hi"}])
        self.assertEqual(sent["authorization"], "Bearer sk-test")
