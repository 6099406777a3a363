"""Valid JSON the gateway cannot use is answered, never dropped (issue 13, item 10).

Over a real loopback WebSocket: after ``hello-ok`` a request nested 10,000 levels deep, or one
whose ``sessions.patch`` params hold a lone surrogate key (``"\\ud800"``), used to get no answer at
all — the JSON decoder refused it and the frame was taken for garbage. Now each gets
INVALID_REQUEST under its own id, and the connection keeps working.
"""
from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.protocol.text_checks import MAX_FRAME_DEPTH

from .support.gateway import start_gateway
from .support.wsclient import connect


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


class HostileFrameTests(TestCase):
    timeout = 15

    @inlineCallbacks
    def setUp(self):
        running = yield start_gateway(self)
        self.client, hello = yield connect(self, running.url)
        self.assertTrue(hello["ok"], hello)

    @inlineCallbacks
    def answer_to(self, text: str, request_id: str):
        self.client.send_raw(text.encode("utf-8"))
        response = yield self.client.next_matching(lambda f: f.get("type") == "res" and f.get("id") == request_id)
        return response

    @inlineCallbacks
    def assert_still_serving(self):
        health = yield self.client.request("health", {})
        self.assertTrue(health["ok"], health)

    @inlineCallbacks
    def test_ten_thousand_deep_nesting_is_refused_for_its_id(self):
        text = '{"type":"req","id":"deep-1","method":"sessions.patch","params":{"key":"main","label":' + nested(10_000) + "}}"
        response = yield self.answer_to(text, "deep-1")
        self.assertFalse(response["ok"])
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(
            response["error"]["message"], f"invalid request frame: the frame is nested deeper than {MAX_FRAME_DEPTH} levels"
        )
        yield self.assert_still_serving()

    @inlineCallbacks
    def test_nesting_the_decoder_takes_but_replies_could_not_carry_is_refused(self):
        # 300 levels parse, but no reply or event could carry them back (orjson writes at most 254).
        text = '{"type":"req","id":"deep-2","method":"node.event","params":{"event":"x","payload":' + nested(300) + "}}"
        response = yield self.answer_to(text, "deep-2")
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertIn(f"is nested deeper than {MAX_FRAME_DEPTH} levels", response["error"]["message"])
        yield self.assert_still_serving()

    @inlineCallbacks
    def test_nesting_within_the_limit_is_served(self):
        params = '{"key":"main","label":"x","extra":' + nested(MAX_FRAME_DEPTH - 3) + "}"
        response = yield self.answer_to('{"type":"req","id":"ok-1","method":"sessions.patch","params":' + params + "}", "ok-1")
        self.assertNotIn("nested deeper", response.get("error", {}).get("message", ""))

    @inlineCallbacks
    def test_lone_surrogate_key_in_sessions_patch(self):
        text = '{"type":"req","id":"sur-1","method":"sessions.patch","params":{"key":"main","\\ud800":1}}'
        response = yield self.answer_to(text, "sur-1")
        self.assertFalse(response["ok"])
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertIn("lone surrogate", response["error"]["message"])
        yield self.assert_still_serving()

    @inlineCallbacks
    def test_lone_surrogate_value_and_low_half(self):
        text = '{"type":"req","id":"sur-2","method":"sessions.patch","params":{"key":"main","label":"a\\udc00b"}}'
        response = yield self.answer_to(text, "sur-2")
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertIn("lone surrogate", response["error"]["message"])

    @inlineCallbacks
    def test_a_proper_surrogate_pair_is_fine(self):
        text = '{"type":"req","id":"pair-1","method":"sessions.patch","params":{"key":"main","label":"\\ud83d\\ude00"}}'
        response = yield self.answer_to(text, "pair-1")
        self.assertNotIn("surrogate", response.get("error", {}).get("message", ""))

    @inlineCallbacks
    def test_an_id_that_is_itself_a_lone_surrogate_is_answered_as_invalid(self):
        text = '{"type":"req","id":"\\ud800","method":"health","params":{}}'
        response = yield self.answer_to(text, "invalid")
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        yield self.assert_still_serving()

    @inlineCallbacks
    def test_garbage_is_still_ignored(self):
        self.client.send_raw(b"not json [[[")
        yield self.assert_still_serving()
        self.assertEqual([f for f in self.client.skipped if f.get("type") == "res"], [])
