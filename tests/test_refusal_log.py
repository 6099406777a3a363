"""Refused connects leave one server log line each, bounded per address (never the secret).

Real loopback sockets; the gateway's own clock is a ``task.Clock`` so the per-address log
budget's one-minute window is driven without sleeping.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.connection.limits import REFUSAL_LINES_PER_IP, REFUSAL_WINDOW_S, RefusalLogBudget

from .support.gateway import start_gateway
from .support.wsclient import connect_params, open_client

WRONG = "wrong-secret-do-not-log"
TOKEN_MISMATCH = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"


class _LogCapture:
    def capture(self) -> list[tuple[str, str, str]]:
        lines: list[tuple[str, str, str]] = []

        def observer(event: dict[str, Any]) -> None:
            lines.append((event["log_level"].name, event.get("log_namespace", ""), formatEvent(event)))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return lines

    @staticmethod
    def refusals(lines: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
        return [(level, text) for level, _, text in lines if text.startswith("connect refused from ")]


class RefusedConnectLogTests(_LogCapture, TestCase):
    @inlineCallbacks
    def refuse(self, running: Any, params: dict[str, Any]):
        client = yield open_client(self, running.url)
        client.send({"type": "req", "id": "c1", "method": "connect", "params": params})
        response = yield client.next_frame()
        self.assertFalse(response["ok"], response)
        code, reason = yield client.closed
        return client, code, reason

    @inlineCallbacks
    def test_wrong_secret_is_logged_once_without_the_secret(self):
        lines = self.capture()
        running = yield start_gateway(self, clock=Clock())
        client, code, _ = yield self.refuse(running, connect_params(token=WRONG))
        self.assertEqual(code, 1008)
        [(level, text)] = self.refusals(lines)
        self.assertEqual(level, "info")
        self.assertTrue(
            text.startswith(f"connect refused from 127.0.0.1: AUTH_TOKEN_MISMATCH, close 1008 {TOKEN_MISMATCH!r} "),
            text,
        )
        self.assertIn("(client cli, mode cli, role operator, conn ", text)
        self.assertFalse([text for _, _, text in lines if WRONG in text], "the secret must never be logged")

    @inlineCallbacks
    def test_protocol_mismatch_is_logged(self):
        lines = self.capture()
        running = yield start_gateway(self, clock=Clock())
        _, code, _ = yield self.refuse(running, connect_params(min_protocol=2, max_protocol=3))
        self.assertEqual(code, 1002)
        [(level, text)] = self.refusals(lines)
        self.assertIn("PROTOCOL_MISMATCH, close 1002 'protocol mismatch'", text)

    @inlineCallbacks
    def test_lockout_is_a_warning(self):
        lines = self.capture()
        running = yield start_gateway(self, clock=Clock(), rate_limit_exempt_loopback=False)
        for _ in range(10):
            yield self.refuse(running, connect_params(token=WRONG))
        _, code, _ = yield self.refuse(running, connect_params())  # even the right token
        self.assertEqual(code, 1008)
        warnings = [text for level, text in self.refusals(lines) if level == "warn"]
        self.assertEqual(len(warnings), 1, self.refusals(lines))
        self.assertIn("AUTH_RATE_LIMITED, close 1008", warnings[0])

    @inlineCallbacks
    def test_a_flood_is_bounded_per_address(self):
        lines = self.capture()
        clock = Clock()
        running = yield start_gateway(self, clock=clock)
        for _ in range(REFUSAL_LINES_PER_IP + 3):
            yield self.refuse(running, connect_params(token=WRONG))
        logged = self.refusals(lines)
        self.assertEqual(len(logged), REFUSAL_LINES_PER_IP)
        self.assertTrue(logged[-1][1].endswith("; further refusals from this address are not logged for 60 s"), logged[-1])
        clock.advance(REFUSAL_WINDOW_S)
        yield self.refuse(running, connect_params(token=WRONG))
        logged = self.refusals(lines)
        self.assertEqual(len(logged), REFUSAL_LINES_PER_IP + 1)
        self.assertTrue(logged[-1][1].endswith("; 3 earlier refusals from this address were not logged"), logged[-1])
        # The metric still counts every one.
        self.assertIn(b'openclaw_auth_failures_total{kind="shared-secret"} 9', running.gateway.metrics.render())


class RefusalLogBudgetTests(SynchronousTestCase):
    def test_budget_per_address_and_kind(self):
        clock = Clock()
        budget = RefusalLogBudget(clock, per_ip=2, window_s=10)
        self.assertEqual(budget.allow("10.0.0.1"), (True, ""))
        self.assertEqual(budget.allow("10.0.0.1"), (True, "further refusals from this address are not logged for 10 s"))
        self.assertEqual(budget.allow("10.0.0.1"), (False, ""))
        self.assertEqual(budget.allow("10.0.0.1", "lockout"), (True, ""))  # its own budget
        self.assertEqual(budget.allow("10.0.0.2"), (True, ""))
        clock.advance(10)
        self.assertEqual(budget.allow("10.0.0.1"), (True, "1 earlier refusals from this address were not logged"))

    def test_many_addresses_share_one_budget_beyond_the_cap(self):
        clock = Clock()
        budget = RefusalLogBudget(clock, per_ip=1, window_s=10, max_tracked=3)
        allowed = [budget.allow(f"10.0.0.{n}")[0] for n in range(100)]
        self.assertEqual(allowed.count(True), 4)  # three tracked addresses, then one shared budget
        self.assertEqual(len(budget._entries), 4)
        clock.advance(10)
        self.assertTrue(budget.allow("10.9.9.9")[0])  # stale entries are pruned
