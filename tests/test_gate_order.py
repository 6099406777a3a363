"""The connect gate's order and error shapes, through Autobahn's in-memory testing agent.

A real Autobahn client talks to the gateway's protocol over in-memory transports
(``autobahn.twisted.testing``), so the upgrade, the challenge and the frames are the real ones
while no socket is opened. Each test breaks two rules at once and checks that the gate reports
the one it checks first, in the reference's order: readiness, protocol, role, origin, then the
credentials, each with its own code and close.
"""
from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.testing import create_memory_agent, create_pumper
from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from openclaw.connection.factory import GatewayWebSocketFactory
from openclaw.protocol.constants import CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR, CLOSE_TRY_AGAIN_LATER

from .support.gateway import make_gateway
from .support.wsclient import connect_params

URL = "ws://127.0.0.1:18789/"


class _Client(WebSocketClientProtocol):
    """Collects frames and the close code; the test reads them in order."""

    def onOpen(self) -> None:
        self.frames: DeferredQueue = DeferredQueue()
        self.closed: Deferred = Deferred()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.put(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if hasattr(self, "closed") and not self.closed.called:
            self.closed.callback(code)

    def send_json(self, frame: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(frame).encode("utf-8"), isBinary=False)


class GateOrderTests(TestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pumper = create_pumper()
        self.pumper.start()
        self.addCleanup(self.pumper.stop)
        self.gateway = make_gateway(self, clock=self.reactor, allowed_origins=())
        factory = GatewayWebSocketFactory(self.gateway, reactor=self.reactor)
        self.agent = create_memory_agent(self.reactor, self.pumper, lambda: factory.buildProtocol(None))

    @inlineCallbacks
    def refusal(self, options: dict[str, Any] | None = None, **params: Any) -> Any:
        """Connect with ``params`` (connect_params keywords); the error and the close code."""
        client = yield self.agent.open(URL, options or {}, protocol_class=_Client)
        challenge = yield client.frames.get()
        self.assertEqual(challenge["event"], "connect.challenge")
        client.send_json({"type": "req", "id": "c1", "method": "connect", "params": connect_params(**params)})
        response = yield client.frames.get()
        code = yield client.closed
        self.assertEqual((response["id"], response["ok"]), ("c1", False))
        return response["error"], code

    @inlineCallbacks
    def test_readiness_comes_before_the_protocol_check(self) -> None:
        self.gateway.pairing.loaded = False
        error, code = yield self.refusal(min_protocol=1, max_protocol=1)
        self.assertEqual((error["code"], error["retryable"], error["retryAfterMs"]), ("UNAVAILABLE", True, 500))
        self.assertEqual(code, CLOSE_TRY_AGAIN_LATER)

    @inlineCallbacks
    def test_protocol_comes_before_the_role(self) -> None:
        error, code = yield self.refusal(min_protocol=1, max_protocol=1, role="emperor")
        self.assertEqual(error["details"]["code"], "PROTOCOL_MISMATCH")
        self.assertEqual(code, CLOSE_PROTOCOL_ERROR)

    @inlineCallbacks
    def test_role_comes_before_the_origin(self) -> None:
        error, code = yield self.refusal({"origin": "https://evil.example"}, role="emperor")
        self.assertEqual((error["code"], error["message"]), ("INVALID_REQUEST", "invalid role"))
        self.assertEqual(code, CLOSE_POLICY_VIOLATION)

    @inlineCallbacks
    def test_origin_comes_before_the_credentials(self) -> None:
        error, code = yield self.refusal({"origin": "https://evil.example"}, token="wrong")
        self.assertEqual(error["details"], {"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "origin": "https://evil.example"})
        self.assertEqual(code, CLOSE_POLICY_VIOLATION)

    @inlineCallbacks
    def test_a_wrong_token_is_refused_with_the_auth_shape(self) -> None:
        error, code = yield self.refusal(token="wrong")
        self.assertEqual(error["code"], "INVALID_REQUEST")
        self.assertEqual(error["details"]["code"], "AUTH_TOKEN_MISMATCH")
        self.assertEqual(code, CLOSE_POLICY_VIOLATION)
