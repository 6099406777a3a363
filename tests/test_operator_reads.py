"""What the reference CLI reads besides sessions: stability, usage and cost, channels, skills,
slash commands, ``wake``, ``status`` with the CLI projection, and the published model catalog."""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import uuid

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.protocol.constants import SERVER_CAPABILITIES
from openclaw.security.scopes import ADMIN, READ, WRITE
from openclaw.state.diagnostics import StabilityRecord
from openclaw.stores import usage
from openclaw.stores.sessions import MIGRATIONS

from .support.gateway import start_gateway
from .support.loopback import loopback_http, watch_upstream
from .support.upstream import FakeUpstream
from .support.wsclient import connect
from .test_runs import is_chat, run_events

DAY_MS = 86_400_000


class StabilityRecordTests(SynchronousTestCase):
    def test_ring_is_bounded_and_counts_what_it_dropped(self):
        clock = Clock()
        record = StabilityRecord(clock, capacity=3)
        for index in range(5):
            clock.advance(1)
            record.record("tick", reason=str(index))
        snapshot = record.snapshot(limit=10)
        self.assertEqual((snapshot["count"], snapshot["dropped"], snapshot["capacity"]), (3, 2, 3))
        self.assertEqual([event["seq"] for event in snapshot["events"]], [3, 4, 5])
        self.assertEqual((snapshot["firstSeq"], snapshot["lastSeq"]), (3, 5))
        self.assertEqual(snapshot["summary"]["byType"], {"tick": 3})
        self.assertEqual(snapshot["events"][-1]["ts"], 5000)

    def test_limit_type_and_since_filter_the_events_not_the_totals(self):
        record = StabilityRecord(Clock())
        for kind in ("a", "b", "a", "a"):
            record.record(kind)
        snapshot = record.snapshot(limit=1, event_type="a")
        self.assertEqual([event["seq"] for event in snapshot["events"]], [4])
        self.assertEqual(snapshot["summary"]["byType"], {"a": 3, "b": 1})
        self.assertEqual([e["seq"] for e in record.snapshot(since_seq=2)["events"]], [3, 4])

    def test_run_lifecycle_becomes_start_and_one_completion(self):
        record = StabilityRecord(Clock())
        record.run_event({"runId": "r", "stream": "lifecycle", "data": {"phase": "start", "startedAt": 10}})
        record.run_event({"runId": "r", "stream": "assistant", "data": {"delta": "x"}})
        aborted = {"phase": "error", "startedAt": 10, "endedAt": 30, "error": "aborted", "aborted": True}
        record.run_event({"runId": "r", "stream": "lifecycle", "data": aborted})
        record.run_event({"runId": "r", "stream": "lifecycle", "data": {**aborted, "phase": "end"}})
        events = record.snapshot()["events"]
        self.assertEqual([e["type"] for e in events], ["run.started", "run.completed"])
        self.assertEqual((events[1]["outcome"], events[1]["durationMs"]), ("aborted", 20))

    def test_memory_summary_tracks_the_peak(self):
        readings = iter([{"rssBytes": 5}, {"rssBytes": 3}])
        record = StabilityRecord(Clock(), memory=lambda: next(readings))
        record.snapshot()
        memory = record.snapshot()["summary"]["memory"]
        self.assertEqual((memory["latest"]["rssBytes"], memory["maxRssBytes"]), (3, 5))


class UsageLedgerTests(SynchronousTestCase):
    def setUp(self):
        self.connection = sqlite3.connect(":memory:")
        for migration in MIGRATIONS:
            if callable(migration):
                migration(self.connection)
            else:
                self.connection.executescript(migration)

    def answer(self, ts, provider="p", model="m", **counts):
        message = {"role": "assistant", "timestamp": ts, "provider": provider, "model": model, "usage": counts}
        usage.record_message(self.connection, "agent:main:main", message)

    def test_user_messages_and_empty_usage_write_nothing(self):
        usage.record_message(self.connection, "agent:main:main", {"role": "user", "usage": {"input": 5}})
        self.answer(1, input=0, output=0)
        self.assertEqual(self.connection.execute("SELECT count(*) FROM usage_ledger").fetchone(), (0,))

    def test_days_totals_and_prices(self):
        now = 20 * DAY_MS + 5000
        self.answer(now - 1000, input=1_000_000, output=500_000, totalTokens=1_500_000)
        self.answer(now - DAY_MS, model="unpriced", input=10, output=2)  # yesterday, no price
        self.answer(now - 40 * DAY_MS, input=7)  # outside the window
        prices = {("p", "m"): {"input": 2.0, "output": 8.0}}
        summary = usage.cost_summary(self.connection, now, 2, prices)
        self.assertEqual([day["date"] for day in summary["daily"]], ["1970-01-20", "1970-01-21"])
        today = summary["daily"][-1]
        self.assertEqual((today["input"], today["output"], today["totalTokens"]), (1_000_000, 500_000, 1_500_000))
        self.assertEqual((today["inputCost"], today["outputCost"], today["totalCost"]), (2.0, 4.0, 6.0))
        yesterday = summary["daily"][0]
        self.assertEqual((yesterday["totalTokens"], yesterday["missingCostEntries"]), (12, 1))
        self.assertEqual((summary["totals"]["totalTokens"], summary["totals"]["totalCost"]), (1_500_012, 6.0))
        self.assertEqual(summary["days"], 2)

    def test_prices_come_from_the_config(self):
        config = {"models": {"providers": {"p": {"models": [{"id": "m", "cost": {"input": 1}}, {"id": "free"}]}}}}
        self.assertEqual(usage.configured_prices(config), {("p", "m"): {"input": 1}})
        self.assertEqual(usage.configured_prices({"models": "nonsense"}), {})


class OperatorReadMethodTests(TestCase):
    timeout = 15

    @inlineCallbacks
    def setUp(self):
        self.upstream = watch_upstream(FakeUpstream().start(self))
        config = self.upstream.config(contextWindow=8192)
        config["models"]["providers"]["fake"]["models"][0]["cost"] = {"input": 1_000_000, "output": 1_000_000}
        self.running = yield start_gateway(self, config=config, http=loopback_http(self, self.upstream))
        self.client, hello = yield connect(self, self.running.url, scopes=[ADMIN, READ, WRITE])
        self.hello = hello["payload"]

    @inlineCallbacks
    def reader(self):
        client, _ = yield connect(self, self.running.url, scopes=[READ])
        return client

    @inlineCallbacks
    def ok(self, method, params=None, client=None):
        response = yield (client or self.client).request(method, params if params is not None else {})
        self.assertTrue(response["ok"], response)
        return response["payload"]

    def test_hello_advertises_the_published_catalog(self):
        self.assertIn("published-model-catalog", self.hello["features"]["capabilities"])
        self.assertEqual(self.hello["features"]["capabilities"], list(SERVER_CAPABILITIES))
        for method in ("diagnostics.stability", "usage.cost", "channels.status", "skills.status", "commands.list", "wake"):
            self.assertIn(method, self.hello["features"]["methods"])

    @inlineCallbacks
    def test_models_list_rows_and_provider_filter(self):
        reader = yield self.reader()
        listed = yield self.ok("models.list", {"view": "default", "includeDetails": True}, client=reader)
        self.assertEqual(len(listed["models"]), 1)
        row = listed["models"][0]
        self.assertEqual((row["provider"], row["id"], row["input"], row["local"], row["available"]), ("fake", "m1", ["text"], True, True))
        empty = yield self.ok("models.list", {"view": "all", "provider": "other"}, client=reader)
        self.assertEqual(empty["models"], [])

    @inlineCallbacks
    def test_a_run_shows_in_stability_and_usage_cost(self):
        response = yield self.client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": uuid.uuid4().hex})
        self.assertTrue(response["ok"], response)
        yield run_events(self.client, response["payload"]["runId"], is_chat("final"))
        reader = yield self.reader()
        stability = yield self.ok("diagnostics.stability", {"limit": 25}, client=reader)
        types = [event["type"] for event in stability["events"]]
        self.assertEqual(types[0], "gateway.started")
        self.assertIn("run.started", types)
        completed = [event for event in stability["events"] if event["type"] == "run.completed"]
        self.assertEqual(completed[-1]["outcome"], "ok")
        cost = yield self.ok("usage.cost", {"days": 30}, client=reader)
        self.assertEqual(len(cost["daily"]), 30)
        # The fake upstream reports 11 prompt and 3 completion tokens; the price is $1 per token.
        self.assertEqual((cost["totals"]["input"], cost["totals"]["output"], cost["totals"]["totalTokens"]), (11, 3, 14))
        self.assertEqual((cost["totals"]["totalCost"], cost["totals"]["missingCostEntries"]), (14.0, 0))
        self.assertEqual(cost["daily"][-1]["totalTokens"], 14)

    @inlineCallbacks
    def test_channels_skills_and_commands_are_truthful(self):
        reader = yield self.reader()
        channels = yield self.ok("channels.status", {"probe": False, "timeoutMs": 60000}, client=reader)
        self.assertEqual((channels["channels"], channels["channelOrder"], channels["statusIssues"]), ({}, [], []))
        self.assertIn("delayP99Ms", channels["eventLoop"])
        skills = yield self.ok("skills.status", {"agentId": "main"}, client=reader)
        self.assertEqual(skills, {"agentId": "main", "skills": []})
        commands = yield self.ok("commands.list", {"agentId": "main", "scope": "text", "includeArgs": False}, client=reader)
        self.assertEqual(sorted(c["name"] for c in commands["commands"]), ["new", "reset"])

    @inlineCallbacks
    def test_wake_needs_write_and_queues_the_text(self):
        reader = yield self.reader()
        refused = yield reader.request("wake", {"mode": "next-heartbeat", "text": "hello"})
        self.assertEqual(refused["error"]["message"], "missing scope: operator.write")
        yield self.ok("wake", {"mode": "next-heartbeat", "text": "hello"})
        status = yield self.ok("status", {"includeChannelSummary": False, "includeCliProjection": True}, client=reader)
        self.assertEqual(status["queuedSystemEvents"], ["hello"])
        self.assertEqual(status["cliProjection"]["agents"]["defaultId"], "main")
        self.assertEqual(status["cliProjection"]["agents"]["rows"], [{"id": "main"}])
        bad = yield self.client.request("wake", {"mode": "later", "text": "x"})
        self.assertEqual(bad["error"]["code"], "INVALID_REQUEST")

    @inlineCallbacks
    def test_usage_cost_survives_a_session_reset(self):
        response = yield self.client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": uuid.uuid4().hex})
        yield run_events(self.client, response["payload"]["runId"], is_chat("final"))
        yield self.ok("sessions.reset", {"key": "main"})
        cost = yield self.ok("usage.cost", {})
        self.assertEqual(cost["totals"]["totalTokens"], 14)
        self.assertTrue(os.path.exists(self.running.gateway.sessions.path))


class StabilityFromTheGatewayTests(SynchronousTestCase):
    def test_event_loop_and_reload_are_recorded(self):
        from .support.gateway import make_gateway

        gateway = make_gateway(self, state_dir=tempfile.mkdtemp(prefix="openclaw-stab-"))
        gateway.event_loop_changed(True, 512.0)
        gateway.event_loop_changed(False, 3.0)
        gateway.auth_failed("token_mismatch")
        types = [(e["type"], e.get("reason")) for e in gateway.stability.snapshot()["events"]]
        self.assertEqual(
            types[1:],
            [("eventLoop.degraded", "event-loop-delay"), ("eventLoop.recovered", None), ("auth.failed", "token_mismatch")],
        )


class ConnectLogLevelTests(SynchronousTestCase):
    """`openclaw logs --follow` reconnects per poll as a "backend" client: those connects must not
    feed the log it follows at info level; interactive clients still log at info."""

    def test_one_shot_backend_connects_log_at_debug(self):
        from twisted.logger import globalLogPublisher

        from openclaw.state.clients import ConnectedClient

        from .support.gateway import make_gateway

        gateway = make_gateway(self, state_dir=tempfile.mkdtemp(prefix="openclaw-connlog-"))
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        for conn_id, mode in (("c1", "backend"), ("c2", "probe"), ("c3", "cli"), ("c4", "ui")):
            client = ConnectedClient(
                conn_id=conn_id, role="operator", scopes=frozenset(), client={"id": "x", "mode": mode},
                sink=lambda frame: None, connected_at_ms=0,
            )
            gateway.client_admitted(client)
        levels = {event["conn_id"]: event["log_level"].name for event in seen if "conn_id" in event and "connected from" in event["log_format"]}
        self.assertEqual(levels, {"c1": "debug", "c2": "debug", "c3": "info", "c4": "info"})

    def test_the_connect_line_says_the_same_facts_formatted_once(self):
        """The line is formatted by the gateway (each observer formatting a five-field template
        was most of the line's cost); every observer still shows the same text, braces in a
        client's id are data, and the facts stay in the event as fields."""
        from twisted.logger import formatEvent, formatEventAsClassicLogText, globalLogPublisher

        from openclaw.services.log_file import format_line
        from openclaw.state.clients import ConnectedClient

        from .support.gateway import make_gateway

        gateway = make_gateway(self, state_dir=tempfile.mkdtemp(prefix="openclaw-connlog-"))
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        client = ConnectedClient(
            conn_id="c9", role="operator", scopes=frozenset(), client={"id": "app{0}", "mode": "ui"},
            sink=lambda frame: None, connected_at_ms=0, remote_ip="10.0.0.7", auth_method="device-token",
        )
        gateway.client_admitted(client)
        [event] = [event for event in seen if event.get("conn_id") == "c9"]
        text = "operator app{0} connected from 10.0.0.7 (conn c9, auth device-token)"
        self.assertEqual(formatEvent(event), text)
        self.assertIn(text, formatEventAsClassicLogText(event))
        self.assertEqual(json.loads(format_line(event))["message"], text)
        self.assertEqual(
            {key: event[key] for key in ("role", "client_id", "ip", "conn_id", "auth")},
            {"role": "operator", "client_id": "app{0}", "ip": "10.0.0.7", "conn_id": "c9", "auth": "device-token"},
        )
