"""The heartbeat service and ``last-heartbeat`` / ``set-heartbeats`` (spec §7, protocol §9.7).

Scheduling is tested on a ``task.Clock`` with the heartbeat itself replaced, so only the timer is
under test; the outcomes (ok-token, ok-empty, sent, failed, skipped) run real turns against the
streaming FakeUpstream over loopback, with the gateway's timers on a Clock as in test_runs.
"""
from __future__ import annotations

import uuid

import attrs
from twisted.internet.defer import fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.runs import TIMEOUT_MESSAGE
from openclaw.methods import heartbeat as heartbeat_methods
from openclaw.protocol.schema.methods import METHOD_PARAMS
from openclaw.protocol.schema.operations import OPERATION_EVENT_PAYLOADS, OPERATION_METHOD_PARAMS
from openclaw.protocol.validation import ProtocolValidators, SchemaValidator
from openclaw.security.scopes import ADMIN, READ, WRITE
from openclaw.services.heartbeat import (
    DEFAULT_PROMPT,
    REASON_BUSY,
    REASON_DISABLED,
    HeartbeatService,
    classify_reply,
    heartbeat_settings,
    parse_duration,
)

from .support.gateway import make_gateway, start_gateway
from .support.loopback import loopback_http, watch_upstream
from .support.upstream import Behaviour, FakeUpstream
from .support.wsclient import connect

MAIN = "agent:main:main"
HEARTBEAT_EVENT = SchemaValidator(OPERATION_EVENT_PAYLOADS["heartbeat"])


def with_heartbeat(config, **heartbeat):
    config = dict(config)
    agents = dict(config.get("agents") or {})
    defaults = dict(agents.get("defaults") or {})
    defaults["heartbeat"] = heartbeat
    agents["defaults"] = defaults
    config["agents"] = agents
    return config


def wire(testcase, gateway, clock):
    """What the gateway's wiring will do: the service, its methods and their params schemas."""
    service = HeartbeatService(gateway, clock)
    gateway.heartbeat = service
    if gateway.methods.get("last-heartbeat") is None:  # until the gateway registers them itself
        gateway.methods.add_all(heartbeat_methods.methods())
    gateway.validators = ProtocolValidators({**METHOD_PARAMS, **OPERATION_METHOD_PARAMS})
    service.startService()
    testcase.addCleanup(lambda: service.stopService() if service.running else None)
    return service


class ParseDurationTests(SynchronousTestCase):
    def test_units(self):
        self.assertEqual(parse_duration("30m"), 1800)
        self.assertEqual(parse_duration("1h"), 3600)
        self.assertEqual(parse_duration("45s"), 45)
        self.assertEqual(parse_duration("500ms"), 0.5)
        self.assertEqual(parse_duration("1d"), 86400)
        self.assertEqual(parse_duration("1h30m"), 5400)
        self.assertEqual(parse_duration(" 2H "), 7200)
        self.assertEqual(parse_duration("1.5m"), 90)

    def test_bare_number_is_minutes(self):
        self.assertEqual(parse_duration("5"), 300)
        self.assertEqual(parse_duration(5), 300)

    def test_zero_is_zero(self):
        self.assertEqual(parse_duration("0m"), 0)

    def test_junk_is_a_clear_error(self):
        for junk in ("", "soon", "30 minutes", "-5m", "m", "5x", "1h-", None, True, [1]):
            with self.subTest(junk=junk):
                with self.assertRaises(ValueError) as caught:
                    parse_duration(junk)
                self.assertIn("invalid duration", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            parse_duration("soon")
        self.assertIn("'30m'", str(caught.exception))


class ClassifyTests(SynchronousTestCase):
    def test_tokens_and_empty(self):
        self.assertEqual(classify_reply(""), ("ok-empty", None))
        self.assertEqual(classify_reply("  \n "), ("ok-empty", None))
        self.assertEqual(classify_reply("NO_REPLY"), ("ok-token", None))
        self.assertEqual(classify_reply("  HEARTBEAT_OK\n"), ("ok-token", None))

    def test_short_text_around_heartbeat_ok_is_an_acknowledgement(self):
        self.assertEqual(classify_reply("HEARTBEAT_OK all quiet"), ("ok-token", None))
        self.assertEqual(classify_reply("nothing to do. HEARTBEAT_OK"), ("ok-token", None))

    def test_real_message_is_sent_with_a_preview(self):
        self.assertEqual(classify_reply("Your build failed."), ("sent", "Your build failed."))
        long = "x" * 500
        self.assertEqual(classify_reply(long), ("sent", "x" * 200))
        self.assertEqual(classify_reply("HEARTBEAT_OK " + long), ("sent", "x" * 200))
        # NO_REPLY is only a token on its own.
        self.assertEqual(classify_reply("NO_REPLY but also this"), ("sent", "NO_REPLY but also this"))

    def test_agent_entry_overrides_defaults(self):
        config = {
            "agents": {
                "defaults": {"heartbeat": {"every": "30m", "prompt": "p"}},
                "list": [{"id": "Main", "heartbeat": {"every": "5m"}}, {"id": "other", "heartbeat": {"every": "1m"}}],
            }
        }
        self.assertEqual(heartbeat_settings(config, "main"), {"every": "5m", "prompt": "p"})
        self.assertEqual(heartbeat_settings({}, "main"), {})


class ScheduleTests(SynchronousTestCase):
    """Only the timer: ``run_once`` is replaced by a recorder."""

    def make(self, **heartbeat):
        self.clock = Clock()
        config = with_heartbeat({}, **heartbeat) if heartbeat else {}
        self.gateway = make_gateway(self, clock=self.clock, config=config)
        self.service = HeartbeatService(self.gateway, self.clock)
        self.calls = []
        self.service.run_once = lambda: self.calls.append(self.clock.seconds()) or succeed(None)
        self.service.startService()
        self.addCleanup(lambda: self.service.stopService() if self.service.running else None)
        return self.service

    def timers(self):
        """The heartbeat's pending timers (the gateway's own services share the Clock)."""
        return [call for call in self.clock.getDelayedCalls() if call.func == self.service._tick]

    def test_default_every_30_minutes(self):
        service = self.make()
        self.assertEqual(service.interval_s, 1800)
        self.assertEqual(service.summary(), {"enabled": True, "every": "30m", "everyMs": 1_800_000})
        self.clock.advance(1799)
        self.assertEqual(self.calls, [])
        self.clock.advance(1)
        self.assertEqual(self.calls, [1800])
        self.clock.advance(1800)
        self.assertEqual(self.calls, [1800, 3600])

    def test_every_from_config(self):
        self.make(every="45s")
        self.clock.pump([45, 45, 45])
        self.assertEqual(self.calls, [45, 90, 135])

    def test_zero_disables(self):
        service = self.make(every="0m")
        self.assertIsNone(service.interval_s)
        self.assertEqual(service.summary(), {"enabled": False, "every": "off", "everyMs": 0})
        self.assertEqual(self.timers(), [])
        self.clock.advance(10 * 86400)
        self.assertEqual(self.calls, [])

    def test_junk_every_disables_instead_of_failing(self):
        service = self.make(every="whenever")
        self.assertIsNone(service.interval_s)
        self.assertEqual(self.timers(), [])

    def test_reschedule_reads_the_new_interval(self):
        service = self.make(every="10m")
        self.clock.advance(300)
        self.gateway.settings = attrs.evolve(self.gateway.settings, config=with_heartbeat({}, every="1m"))
        service.reschedule()
        self.assertEqual(service.next_due, 360)  # a new interval counts from now
        self.clock.advance(60)
        self.assertEqual(self.calls, [360])

    def test_reschedule_with_the_same_interval_keeps_the_timer(self):
        service = self.make(every="10m", prompt="old")
        self.clock.advance(300)
        self.gateway.settings = attrs.evolve(self.gateway.settings, config=with_heartbeat({}, every="10m", prompt="new"))
        service.reschedule()
        self.assertEqual(service.next_due, 600)

    def test_reschedule_to_zero_and_back(self):
        service = self.make(every="10m")
        self.gateway.settings = attrs.evolve(self.gateway.settings, config=with_heartbeat({}, every="0m"))
        service.reschedule()
        self.assertIsNone(service.next_due)
        self.assertEqual(self.timers(), [])
        self.gateway.settings = attrs.evolve(self.gateway.settings, config=with_heartbeat({}, every="2m"))
        service.reschedule()
        self.clock.advance(120)
        self.assertEqual(self.calls, [120])

    def test_stop_cancels_the_timer(self):
        service = self.make(every="1m")
        self.assertEqual(len(self.timers()), 1)
        service.stopService()
        self.assertEqual(self.timers(), [])
        self.clock.advance(600)
        self.assertEqual(self.calls, [])

    def test_schedule_survives_a_heartbeat_that_raises(self):
        service = self.make(every="1m")

        def explode():
            self.calls.append(self.clock.seconds())
            if len(self.calls) == 1:
                raise RuntimeError("boom")
            if len(self.calls) == 2:
                return fail(RuntimeError("async boom"))
            return succeed(None)

        service.run_once = explode
        self.clock.advance(60)
        self.clock.advance(60)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.clock.advance(60)
        self.assertEqual(self.calls, [60, 120, 180])
        self.assertEqual(service.next_due, 240)


class OutcomeWithoutUpstreamTests(SynchronousTestCase):
    """Skips and crashes that never reach a model."""

    def setUp(self):
        self.clock = Clock()
        self.gateway = make_gateway(self, clock=self.clock, config=with_heartbeat({}, every="1m"))
        self.service = wire(self, self.gateway, self.clock)

    def test_skipped_when_the_main_session_is_busy(self):
        self.gateway.runs.has_activity = lambda key: key == MAIN
        event = self.successResultOf(self.service.run_once())
        self.assertEqual(event, {"ts": self.gateway.now_ms(), "status": "skipped", "reason": REASON_BUSY})
        self.assertEqual(self.service.last, event)
        self.assertEqual(HEARTBEAT_EVENT.errors(event), [])

    def test_skipped_when_disabled(self):
        self.service.enabled = False
        event = self.successResultOf(self.service.run_once())
        self.assertEqual((event["status"], event["reason"]), ("skipped", REASON_DISABLED))
        self.assertNotIn("indicatorType", event)

    def test_a_heartbeat_that_raises_is_logged_and_the_next_one_runs(self):
        def submit(run):
            raise RuntimeError("store exploded")

        self.gateway.runs.submit = submit
        self.clock.advance(60)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIsNone(self.service.last)
        self.assertEqual(self.service.next_due, 120)
        self.gateway.runs.has_activity = lambda key: True
        self.clock.advance(60)
        self.assertEqual(self.service.last["reason"], REASON_BUSY)


class _LoopbackBase(TestCase):
    timeout = 15

    heartbeat = {"every": "30m"}

    @inlineCallbacks
    def setUp(self):
        self.clock = Clock()
        self.upstream = watch_upstream(FakeUpstream().start(self))
        http = loopback_http(self, self.upstream)
        config = with_heartbeat(self.upstream.config(), **self.heartbeat)
        self.running = yield start_gateway(self, clock=self.clock, config=config, http=http)
        self.gateway = self.running.gateway
        self.service = wire(self, self.gateway, self.clock)
        self.client, hello = yield connect(self, self.running.url, scopes=[ADMIN, READ, WRITE])
        self.assertTrue(hello["ok"], hello)

    def heartbeat_event(self):
        return self.client.next_matching(
            lambda f: isinstance(f, dict) and f.get("type") == "event" and f.get("event") == "heartbeat", limit=500
        )

    @inlineCallbacks
    def beat(self):
        """Fire the timer and return the broadcast heartbeat event's frame."""
        self.clock.advance(self.service.next_due - self.clock.seconds())
        frame = yield self.heartbeat_event()
        self.assertEqual(HEARTBEAT_EVENT.errors(frame["payload"]), [])
        return frame


class HeartbeatTurnTests(_LoopbackBase):
    @inlineCallbacks
    def test_no_reply_is_ok_token(self):
        self.upstream.behaviour = Behaviour(chunks=("NO_", "REPLY"))
        frame = yield self.beat()
        payload = frame["payload"]
        self.assertEqual(payload["status"], "ok-token")
        self.assertEqual(payload["indicatorType"], "ok")
        self.assertEqual(payload["ts"], 1_800_000)
        self.assertEqual(payload["durationMs"], 0)  # the Clock did not move during the turn
        self.assertNotIn("preview", payload)
        self.assertEqual(self.service.last, payload)
        # The turn ran in the main session with the default prompt.
        body = self.upstream.requests[-1]["body"]
        self.assertEqual(body["messages"][-1], {"role": "user", "content": DEFAULT_PROMPT})

    @inlineCallbacks
    def test_queued_system_events_go_into_the_next_heartbeat_once(self):
        """``wake``/``system event`` texts wait for the next heartbeat, which carries them once."""
        self.gateway.presence.queue_system_text("deploy finished")
        self.upstream.behaviour = Behaviour(chunks=("NO_REPLY",))
        yield self.beat()
        content = self.upstream.requests[-1]["body"]["messages"][-1]["content"]
        self.assertEqual(content, DEFAULT_PROMPT + "\n\nSystem events since the last heartbeat:\n- deploy finished")
        self.assertEqual(self.gateway.presence.queued_system_events(), [])

    @inlineCallbacks
    def test_heartbeat_ok_is_ok_token(self):
        self.upstream.behaviour = Behaviour(chunks=(" HEARTBEAT_OK ",))
        frame = yield self.beat()
        self.assertEqual(frame["payload"]["status"], "ok-token")

    @inlineCallbacks
    def test_empty_reply_is_ok_empty(self):
        self.upstream.behaviour = Behaviour(chunks=())
        frame = yield self.beat()
        self.assertEqual(frame["payload"]["status"], "ok-empty")
        self.assertEqual(frame["payload"]["indicatorType"], "ok")

    @inlineCallbacks
    def test_real_reply_is_sent_with_preview(self):
        text = "Reminder: " + "y" * 300
        self.upstream.behaviour = Behaviour(chunks=(text[:100], text[100:]))
        frame = yield self.beat()
        payload = frame["payload"]
        self.assertEqual(payload["status"], "sent")
        self.assertEqual(payload["indicatorType"], "alert")
        self.assertEqual(payload["preview"], text[:200])

    @inlineCallbacks
    def test_upstream_error_is_failed(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)
        frame = yield self.beat()
        payload = frame["payload"]
        self.assertEqual(payload["status"], "failed")
        self.assertEqual(payload["indicatorType"], "error")
        self.assertIn("HTTP 500", payload["message"])

    @inlineCallbacks
    def test_agent_events_are_marked_as_heartbeat(self):
        self.upstream.behaviour = Behaviour(chunks=("NO_REPLY",))
        self.clock.advance(1800)
        frame = yield self.client.next_matching(lambda f: isinstance(f, dict) and f.get("event") == "agent", limit=500)
        payload = frame["payload"]
        self.assertTrue(payload["runId"].startswith("heartbeat-"))
        self.assertEqual(payload["sessionKey"], MAIN)
        self.assertIs(payload["isHeartbeat"], True)
        yield self.heartbeat_event()

    @inlineCallbacks
    def test_last_heartbeat_is_null_then_the_event(self):
        response = yield self.client.request("last-heartbeat", {})
        self.assertTrue(response["ok"], response)
        self.assertIn("payload", response)
        self.assertIsNone(response["payload"])
        self.upstream.behaviour = Behaviour(chunks=("NO_REPLY",))
        frame = yield self.beat()
        response = yield self.client.request("last-heartbeat", {})
        self.assertEqual(response["payload"], frame["payload"])

    @inlineCallbacks
    def test_set_heartbeats_false_skips_and_true_resumes(self):
        response = yield self.client.request("set-heartbeats", {"enabled": False})
        self.assertEqual(response["payload"], {"ok": True, "enabled": False})
        self.assertIs(self.service.enabled, False)
        frame = yield self.beat()
        self.assertEqual((frame["payload"]["status"], frame["payload"]["reason"]), ("skipped", REASON_DISABLED))
        self.assertEqual(self.upstream.requests, [])
        response = yield self.client.request("set-heartbeats", {"enabled": True})
        self.assertEqual(response["payload"], {"ok": True, "enabled": True})
        self.upstream.behaviour = Behaviour(chunks=("NO_REPLY",))
        frame = yield self.beat()
        self.assertEqual(frame["payload"]["status"], "ok-token")

    @inlineCallbacks
    def test_set_heartbeats_rejects_a_non_boolean_with_the_reference_message(self):
        for params in ({}, {"enabled": "yes"}, {"enabled": 1}, {"enabled": None}):
            with self.subTest(params=params):
                response = yield self.client.request("set-heartbeats", params)
                self.assertIs(response["ok"], False)
                self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
                self.assertEqual(
                    response["error"]["message"], "invalid set-heartbeats params: enabled (boolean) required"
                )
        self.assertIs(self.service.enabled, True)
        # Like the reference, other keys are ignored.
        response = yield self.client.request("set-heartbeats", {"enabled": False, "source": "ui"})
        self.assertEqual(response["payload"], {"ok": True, "enabled": False})

    @inlineCallbacks
    def test_scopes(self):
        reader, hello = yield connect(self, self.running.url, scopes=[READ])
        self.assertTrue(hello["ok"], hello)
        response = yield reader.request("last-heartbeat", {})
        self.assertTrue(response["ok"], response)
        response = yield reader.request("set-heartbeats", {"enabled": False})
        self.assertEqual(response["error"]["code"], "FORBIDDEN")
        self.assertEqual(response["error"]["details"]["missingScope"], ADMIN)


class BusyTests(_LoopbackBase):
    # Shorter than the chat run's own timeouts, so the chat run is still going at the heartbeat.
    heartbeat = {"every": "1m"}

    @inlineCallbacks
    def test_skipped_while_a_chat_run_is_going(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        response = yield self.client.request(
            "chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": uuid.uuid4().hex}
        )
        self.assertTrue(response["ok"], response)
        yield self.upstream.open_requests.when(bool)
        frame = yield self.beat()
        self.assertEqual(frame["payload"], {"ts": 60_000, "status": "skipped", "reason": REASON_BUSY})
        self.assertEqual(len(self.upstream.requests), 1)  # no model call for the heartbeat
        self.assertEqual(self.service.next_due, 120)


class HeartbeatConfigTurnTests(_LoopbackBase):
    heartbeat = {"every": "5m", "prompt": "Check the oven.", "timeoutSeconds": 7}

    @inlineCallbacks
    def test_configured_prompt_and_timeout(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        self.clock.advance(300)
        yield self.upstream.open_requests.when(bool)
        self.assertEqual(self.upstream.requests[-1]["body"]["messages"][-1], {"role": "user", "content": "Check the oven."})
        self.clock.advance(7)
        frame = yield self.heartbeat_event()
        payload = frame["payload"]
        self.assertEqual(payload["status"], "failed")
        self.assertEqual(payload["message"], TIMEOUT_MESSAGE)
        self.assertEqual(payload["durationMs"], 7000)
        yield self.upstream.open_requests.when(lambda requests: not requests)


class MethodsWithoutServiceTests(SynchronousTestCase):
    def test_no_service(self):
        from openclaw.methods.registry import RequestContext
        from openclaw.protocol.errors import GatewayError

        gateway = make_gateway(self)
        ctx = RequestContext(gateway=gateway, client=None, request_id="1", method="last-heartbeat", params={})
        self.assertIsNone(heartbeat_methods.last_heartbeat(ctx))
        ctx.params = {"enabled": True}
        with self.assertRaises(GatewayError) as caught:
            heartbeat_methods.set_heartbeats(ctx)
        self.assertEqual(caught.exception.code, "UNAVAILABLE")
        ctx.params = {"enabled": "no"}
        with self.assertRaises(GatewayError) as caught:
            heartbeat_methods.set_heartbeats(ctx)
        self.assertEqual(caught.exception.message, "invalid set-heartbeats params: enabled (boolean) required")
