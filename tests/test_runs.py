"""Agent runs end to end: a real WebSocket client, a real gateway and a real streaming upstream.

Gateways that need timeouts run their timers on a ``task.Clock`` (sockets stay real), so a
model that hangs is timed out by advancing the clock, never by waiting.
"""
from __future__ import annotations

import uuid

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from openclaw.methods.session_views import THINKING_OFF
from openclaw.agents.live_text import LIVE_TEXT_COPIES, LIVE_TEXT_FREE_CHARS
from openclaw.agents.runs import TIMEOUT_MESSAGE, Run
from openclaw.providers.streaming import DEFAULT_IDLE_TIMEOUT_S
from openclaw.security.scopes import ADMIN, READ, WRITE
from openclaw.services.agents import AgentService

from .support.gateway import start_gateway
from .support.loopback import loopback_http, wait_until, watch_upstream
from .support.upstream import Behaviour, FakeUpstream
from .support.wsclient import connect

ALL = [ADMIN, READ, WRITE]
MAIN = "agent:main:main"


def is_event(frame, name, run_id=None):
    return (
        isinstance(frame, dict)
        and frame.get("type") == "event"
        and frame.get("event") == name
        and (run_id is None or (frame.get("payload") or {}).get("runId") == run_id)
    )


def is_chat(state, run_id=None):
    return lambda frame: is_event(frame, "chat", run_id) and frame["payload"].get("state") == state


def is_lifecycle(phase, run_id=None):
    return lambda frame: (
        is_event(frame, "agent", run_id)
        and frame["payload"]["stream"] == "lifecycle"
        and frame["payload"]["data"].get("phase") == phase
    )


def is_res(request_id):
    return lambda frame: isinstance(frame, dict) and frame.get("type") == "res" and frame.get("id") == request_id


@inlineCallbacks
def run_events(client, run_id, until, limit=200):
    """The run's chat/agent event frames, in order, up to and including the first ``until`` one.

    Events can reach the client before the response of the request that caused them, in which
    case ``request()`` parked them in ``client.skipped``; those are taken first.
    """

    def mine(frame):
        return is_event(frame, "chat", run_id) or is_event(frame, "agent", run_id)

    frames = []
    parked, client.skipped[:] = list(client.skipped), []
    for frame in parked:
        if mine(frame) and not any(until(f) for f in frames):
            frames.append(frame)
        else:
            client.skipped.append(frame)
    for _ in range(limit):
        if any(until(f) for f in frames):
            return frames
        frame = yield client.next_frame()
        if mine(frame):
            frames.append(frame)
        else:
            client.skipped.append(frame)
    raise AssertionError(f"run {run_id} never reached the expected event; got {frames}")


def payloads(frames, name):
    return [f["payload"] for f in frames if f["event"] == name]


class _RunTestBase(TestCase):
    timeout = 15  # a Deferred that never fires fails the test instead of hanging trial
    clock = None

    def config(self):
        return self.upstream.config(contextWindow=8192, maxTokens=256)

    @inlineCallbacks
    def setUp(self):
        self.upstream = watch_upstream(FakeUpstream().start(self))
        http = loopback_http(self, self.upstream)
        self.running = yield start_gateway(self, clock=self.clock, config=self.config(), http=http)
        self.gateway = self.running.gateway
        self.client, hello = yield connect(self, self.running.url, scopes=ALL)
        self.assertTrue(hello["ok"], hello)

    def send(self, message="hi", key=None, client=None, **extra):
        params = {"sessionKey": "main", "message": message, "idempotencyKey": key or uuid.uuid4().hex, **extra}
        return (client or self.client).request("chat.send", params)

    @inlineCallbacks
    def history(self, session_key=MAIN):
        response = yield self.client.request("chat.history", {"sessionKey": session_key})
        self.assertTrue(response["ok"], response)
        return response["payload"]["messages"]

    def upstream_closed(self):
        return self.upstream.open_requests.when(lambda requests: not requests)


class ChatStreamingTests(_RunTestBase):
    @inlineCallbacks
    def test_deltas_carry_accumulated_text_then_final(self):
        response = yield self.send("hi", key="k1")
        self.assertEqual(response["payload"], {"runId": "k1", "status": "started"})
        frames = yield run_events(self.client, "k1", is_chat("final", "k1"))
        chats = payloads(frames, "chat")
        deltas = [p for p in chats if p["state"] == "delta"]
        self.assertTrue(deltas)
        self.assertEqual([p["state"] for p in chats], ["delta"] * len(deltas) + ["final"])
        accumulated = ""
        for delta in deltas:
            accumulated += delta["deltaText"]
            self.assertEqual(delta["message"]["role"], "assistant")
            self.assertEqual(delta["message"]["content"], [{"type": "text", "text": accumulated}])
            self.assertIsInstance(delta["message"]["timestamp"], int)
            self.assertEqual((delta["runId"], delta["sessionKey"], delta["agentId"]), ("k1", MAIN, "main"))
        self.assertEqual(accumulated, "Hello there!")
        final = chats[-1]
        self.assertEqual(final["stopReason"], "stop")
        self.assertEqual(final["message"]["content"], [{"type": "text", "text": "Hello there!"}])
        self.assertEqual(final["message"]["role"], "assistant")
        seqs = [p["seq"] for p in chats]
        self.assertEqual(seqs, sorted(seqs))

    @inlineCallbacks
    def test_agent_event_sequence(self):
        yield self.send("hi", key="k1")
        frames = yield run_events(self.client, "k1", is_chat("final", "k1"))
        agent = payloads(frames, "agent")
        kinds = [(p["stream"], p["data"].get("phase")) for p in agent]
        self.assertEqual(kinds[0], ("lifecycle", "start"))
        self.assertEqual(kinds[-1], ("lifecycle", "end"))
        self.assertIn(("lifecycle", "model"), kinds)
        # Text goes out in batches: the first chunk at once, the rest paced (75 ms) or flushed
        # before the end; each event's text is everything so far, its delta the new batch.
        assistant = [p["data"] for p in agent if p["stream"] == "assistant"]
        self.assertEqual(assistant[0], {"text": "Hel", "delta": "Hel"})
        so_far = ""
        for data in assistant:
            so_far += data["delta"]
            self.assertEqual(data["text"], so_far)
        self.assertEqual(so_far, "Hello there!")
        # Each batch is one assistant event and one chat delta with the same text.
        chat_deltas = [p["deltaText"] for p in payloads(frames, "chat") if p["state"] == "delta"]
        self.assertEqual(chat_deltas, [data["delta"] for data in assistant])
        first_assistant = kinds.index(("assistant", None))
        self.assertLess(kinds.index(("lifecycle", "start")), first_assistant)
        usage = [p["data"] for p in agent if p["stream"] == "usage"]
        self.assertEqual(len(usage), 1)
        # seq is one per-run counter, strictly increasing from 1 across agent events.
        self.assertEqual([p["seq"] for p in agent], list(range(1, len(agent) + 1)))
        for payload in agent:
            self.assertEqual((payload["runId"], payload["sessionKey"], payload["agentId"]), ("k1", MAIN, "main"))
            self.assertIs(payload["isHeartbeat"], False)
            self.assertIsInstance(payload["ts"], int)
        end = agent[-1]["data"]
        self.assertEqual(end["stopReason"], "stop")
        self.assertIs(end["aborted"], False)
        self.assertLessEqual(end["startedAt"], end["endedAt"])
        model = next(p["data"] for p in agent if p["data"].get("phase") == "model")
        self.assertEqual((model["provider"], model["model"]), ("fake", "m1"))
        # chat events share the counter: the final carries the seq of the last agent event.
        final = payloads(frames, "chat")[-1]
        self.assertEqual(final["seq"], agent[-1]["seq"])
        # Everything the run emitted arrives before its final chat event.
        self.assertEqual(frames[-1]["payload"]["state"], "final")

    @inlineCallbacks
    def test_history_records_the_answer_with_model_and_usage(self):
        yield self.send("hi", key="k1")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        messages = yield self.history()
        self.assertEqual([m["role"] for m in messages], ["user", "assistant"])
        answer = messages[1]
        self.assertEqual(answer["content"], [{"type": "text", "text": "Hello there!"}])
        self.assertEqual((answer["provider"], answer["model"], answer["stopReason"]), ("fake", "m1", "stop"))
        self.assertEqual(answer["usage"], {"input": 11, "output": 3, "totalTokens": 14})

    @inlineCallbacks
    def test_second_turn_sends_history(self):
        yield self.send("one", key="k1")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        yield self.send("two", key="k2")
        yield run_events(self.client, "k2", is_chat("final", "k2"))
        self.assertEqual(
            self.upstream.requests[1]["body"]["messages"],
            [{"role": "user", "content": "one"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "two"}],
        )

    @inlineCallbacks
    def test_abort_mid_stream(self):
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        yield self.send("hi", key="k1")
        yield run_events(self.client, "k1", is_chat("delta", "k1"))
        self.assertEqual(len(self.upstream.open_requests), 1)
        response = yield self.client.request("chat.abort", {"sessionKey": "main"})
        self.assertEqual(response["payload"], {"ok": True, "aborted": True, "runIds": ["k1"]})
        frames = yield run_events(self.client, "k1", is_chat("aborted", "k1"))
        aborted = payloads(frames, "chat")[-1]
        self.assertEqual(aborted["state"], "aborted")
        self.assertEqual((aborted["runId"], aborted["sessionKey"]), ("k1", MAIN))
        end = [p for p in payloads(frames, "agent") if p["stream"] == "lifecycle"][-1]["data"]
        self.assertEqual((end["phase"], end["aborted"]), ("end", True))
        yield self.upstream_closed()
        messages = yield self.history()
        self.assertEqual([m["role"] for m in messages], ["user", "assistant"])
        self.assertEqual(messages[1]["content"], [{"type": "text", "text": "Hel"}])
        self.assertEqual(messages[1]["stopReason"], "aborted")
        # Nothing is running any more.
        again = yield self.client.request("chat.abort", {"sessionKey": "main"})
        self.assertEqual(again["payload"], {"ok": True, "aborted": False, "runIds": []})

    @inlineCallbacks
    def test_abort_by_run_id_lets_the_queued_run_go_next(self):
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        yield self.send("one", key="k1")
        yield run_events(self.client, "k1", is_chat("delta", "k1"))
        queued = yield self.send("two", key="k2")
        self.assertEqual(queued["payload"], {"runId": "k2", "status": "started"})
        # A full round trip later the second run still has not reached the upstream.
        yield self.client.request("health")
        self.assertEqual(len(self.upstream.requests), 1)
        self.upstream.behaviour = Behaviour()
        response = yield self.client.request("chat.abort", {"sessionKey": "main", "runId": "k1"})
        self.assertEqual(response["payload"]["runIds"], ["k1"])
        yield run_events(self.client, "k2", is_chat("final", "k2"))
        self.assertEqual(len(self.upstream.requests), 2)
        self.assertEqual(self.upstream.requests[1]["body"]["messages"][-1], {"role": "user", "content": "two"})

    @inlineCallbacks
    def test_one_run_at_a_time_per_session(self):
        self.upstream.behaviour = Behaviour(mode="slow", interval_s=0.005)
        first_status_on_arrival = []
        runs = self.gateway.runs

        class Requests(list):
            def append(self, item):
                first_status_on_arrival.append(runs.get("k1").status)
                super().append(item)

        self.upstream.requests = Requests()
        first = yield self.send("one", key="k1")
        second = yield self.send("two", key="k2")
        self.assertEqual(first["payload"]["status"], "started")
        self.assertEqual(second["payload"]["status"], "started")
        self.assertEqual(runs.get("k2").status, "queued")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        yield run_events(self.client, "k2", is_chat("final", "k2"))
        # The second upstream request arrived only once the first run had finished.
        self.assertEqual(first_status_on_arrival, ["running", "ok"])
        # The second run's prompt contains the first run's whole answer: it started after.
        self.assertEqual(
            self.upstream.requests[1]["body"]["messages"],
            [{"role": "user", "content": "one"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "two"}],
        )
        messages = yield self.history()
        self.assertEqual(
            [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]) for m in messages],
            [("user", "one"), ("assistant", "Hello there!"), ("user", "two"), ("assistant", "Hello there!")],
        )

    @inlineCallbacks
    def test_runs_in_different_sessions_run_concurrently(self):
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        yield self.send("one", key="k1")
        yield self.client.request("chat.send", {"sessionKey": "other", "message": "two", "idempotencyKey": "k2"})
        yield self.upstream.open_requests.when(lambda requests: len(requests) == 2)
        response = yield self.client.request("chat.abort", {"sessionKey": "other"})
        self.assertEqual(response["payload"]["runIds"], ["k2"])
        response = yield self.client.request("chat.abort", {"sessionKey": "main"})
        self.assertEqual(response["payload"]["runIds"], ["k1"])
        yield self.upstream_closed()

    @inlineCallbacks
    def test_sender_disconnecting_does_not_stop_its_run(self):
        """Like the reference: a CLI that sends and disconnects still gets its message answered."""
        self.upstream.behaviour = Behaviour(mode="slow", interval_s=0.01)
        other, hello = yield connect(self, self.running.url, scopes=[WRITE])
        self.assertTrue(hello["ok"], hello)
        yield self.send("hi", key="gone", client=other)
        yield other.close()
        frames = yield run_events(self.client, "gone", is_chat("final", "gone"))
        self.assertEqual(payloads(frames, "chat")[-1]["message"]["content"][0]["text"], "Hello there!")
        messages = yield self.history()
        self.assertEqual([m["role"] for m in messages], ["user", "assistant"])

    @inlineCallbacks
    def test_owner_disconnect_aborts_owned_run(self):
        """Runs owned by a connection (HTTP requests) stop when it goes away."""
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        run = Run(
            run_id="owned", session_key="agent:main:main", agent_id="main", message="hi",
            accepted_at=self.gateway.now_ms(), owner="http-1", timeout_s=60.0,
        )
        self.gateway.runs.submit(run)
        yield run_events(self.client, "owned", is_chat("delta", "owned"))
        self.gateway.runs.connection_lost("someone-else")
        self.assertFalse(run.finished)
        self.gateway.runs.connection_lost("http-1")
        frames = yield run_events(self.client, "owned", is_chat("aborted", "owned"))
        self.assertEqual(payloads(frames, "chat")[-1]["state"], "aborted")
        yield self.upstream_closed()
        self.assertEqual(self.gateway.runs.active_count, 0)

    @inlineCallbacks
    def test_idempotent_replay_and_conflict(self):
        first = yield self.send("hi", key="same")
        self.assertEqual(first["payload"], {"runId": "same", "status": "started"})
        yield run_events(self.client, "same", is_chat("final", "same"))
        replay = yield self.send("hi", key="same")
        self.assertTrue(replay["ok"], replay)
        self.assertEqual(replay["payload"], {"runId": "same", "status": "ok"})
        self.assertEqual(len(self.upstream.requests), 1)
        conflict = yield self.send("something else", key="same")
        self.assertFalse(conflict["ok"])
        self.assertEqual(conflict["error"]["code"], "INVALID_REQUEST")
        self.assertTrue(conflict["error"]["message"].startswith("This message ID was already used for different input"))
        self.assertEqual(conflict["error"]["details"], {"reason": "chat-request-conflict"})
        self.assertEqual(len(self.upstream.requests), 1)
        messages = yield self.history()
        self.assertEqual(len(messages), 2)

    @inlineCallbacks
    def test_status_and_health_count_sessions_after_a_chat(self):
        yield self.send("hi", key="k1")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        status = yield self.client.request("status")
        self.assertTrue(status["ok"], status)
        self.assertEqual(status["payload"]["sessions"]["count"], 1)
        self.assertEqual(status["payload"]["sessions"]["recent"][0]["key"], MAIN)
        # Plain ``health`` may serve the snapshot cached ~2 s ago (documented); probe rebuilds it.
        health = yield self.client.request("health", {"probe": True})
        self.assertEqual(health["payload"]["sessions"]["count"], 1)
        self.assertEqual(health["payload"]["runs"], {"active": 0, "queued": 0})


class LongAnswerTests(_RunTestBase):
    timeout = 120

    @inlineCallbacks
    def test_a_long_answer_costs_readers_linear_bytes_and_closes_nobody(self):
        """10,000 chunks of 5 characters: once an event per chunk with the text so far (250 MB
        to every reader, closing them as slow consumers); now batches within a linear budget."""
        chunks, size = 10_000, 5
        answer = chunks * size
        self.upstream.behaviour = Behaviour(chunks=("abcde",) * chunks)
        reader, hello = yield connect(self, self.running.url, scopes=[READ])
        self.assertTrue(hello["ok"], hello)
        readers = {"requester": self.client, "reader": reader}
        for client in readers.values():
            client.received_bytes = 0
        yield self.send("write at length", key="long")
        for name, client in readers.items():
            frames = yield run_events(client, "long", is_chat("final", "long"), limit=100_000)
            self.assertIsNone(client.close_code, name)
            final = payloads(frames, "chat")[-1]
            self.assertEqual(len(final["message"]["content"][0]["text"]), answer)
            assistant = [p["data"] for p in payloads(frames, "agent") if p["stream"] == "assistant"]
            self.assertEqual(sum(len(data["delta"]) for data in assistant), answer)
            self.assertLess(len(assistant), chunks)
            # Each batch carries the text so far twice (agent text, chat message); the budget
            # bounds those copies by COPIES x answer + FREE, the last flush and the final add a
            # few answers more, and every frame's envelope is well under 1 KB.
            bound = 2 * ((LIVE_TEXT_COPIES + 2) * answer + LIVE_TEXT_FREE_CHARS) + 1024 * len(frames)
            self.assertLess(client.received_bytes, bound, name)
        yield self.upstream_closed()


class FallbackTests(_RunTestBase):
    def config(self):
        return self.upstream.config(models=("m1", "m2"), fallbacks=("fake/m2",))

    @inlineCallbacks
    def test_primary_500_falls_back_to_second_model(self):
        self.upstream.per_model["m1"] = Behaviour(mode="error", status=500)
        yield self.send("hi", key="k1")
        frames = yield run_events(self.client, "k1", is_chat("final", "k1"))
        final = payloads(frames, "chat")[-1]
        self.assertEqual(final["message"]["content"], [{"type": "text", "text": "Hello there!"}])
        self.assertEqual([r["body"]["model"] for r in self.upstream.requests], ["m1", "m2"])
        self.assertNotIn("error", [p["state"] for p in payloads(frames, "chat")])
        messages = yield self.history()
        self.assertEqual((messages[1]["provider"], messages[1]["model"]), ("fake", "m2"))

    @inlineCallbacks
    def test_both_fail(self):
        self.upstream.behaviour = Behaviour(mode="error", status=503)
        yield self.send("hi", key="k1")
        frames = yield run_events(self.client, "k1", is_chat("error", "k1"))
        error = payloads(frames, "chat")[-1]
        self.assertIn("fake/m2 returned HTTP 503", error["errorMessage"])
        self.assertEqual([r["body"]["model"] for r in self.upstream.requests], ["m1", "m2"])


class UpstreamErrorTests(_RunTestBase):
    @inlineCallbacks
    def test_500_without_fallback_is_a_chat_error(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)
        yield self.send("hi", key="k1")
        frames = yield run_events(self.client, "k1", is_chat("error", "k1"))
        error = payloads(frames, "chat")[-1]
        self.assertIn("HTTP 500", error["errorMessage"])
        self.assertIn("upstream says 500", error["errorMessage"])
        self.assertEqual(error["errorDetail"]["failoverReason"], "server_error")
        self.assertEqual((error["errorDetail"]["provider"], error["errorDetail"]["model"]), ("fake", "m1"))
        self.assertEqual((error["runId"], error["sessionKey"], error["agentId"]), ("k1", MAIN, "main"))
        lifecycle = [p["data"] for p in payloads(frames, "agent") if p["stream"] == "lifecycle"]
        self.assertEqual(lifecycle[-1]["phase"], "error")
        waited = yield self.client.request("agent.wait", {"runId": "k1", "timeoutMs": 0})
        self.assertEqual(waited["payload"]["status"], "error")
        self.assertIn("HTTP 500", waited["payload"]["error"])

    @inlineCallbacks
    def test_429_failover_reason(self):
        self.upstream.behaviour = Behaviour(mode="error", status=429)
        yield self.send("hi", key="k1")
        frames = yield run_events(self.client, "k1", is_chat("error", "k1"))
        error = payloads(frames, "chat")[-1]
        self.assertEqual(error["errorKind"], "rate_limit")
        self.assertEqual(error["errorDetail"]["failoverReason"], "rate_limit")

    @inlineCallbacks
    def test_failed_turn_is_left_out_of_the_next_prompt(self):
        self.upstream.behaviour = Behaviour(mode="error", status=400)
        yield self.send("one", key="k1")
        yield run_events(self.client, "k1", is_chat("error", "k1"))
        self.upstream.behaviour = Behaviour()
        yield self.send("two", key="k2")
        yield run_events(self.client, "k2", is_chat("final", "k2"))
        self.assertEqual(
            self.upstream.requests[1]["body"]["messages"],
            [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
        )


class NoProviderTests(TestCase):
    timeout = 15
    @inlineCallbacks
    def test_chat_without_a_provider_errors_instead_of_hanging(self):
        running = yield start_gateway(self)
        client, hello = yield connect(self, running.url, scopes=ALL)
        self.assertTrue(hello["ok"], hello)
        response = yield client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": "k1"})
        self.assertEqual(response["payload"], {"runId": "k1", "status": "started"})
        frames = yield run_events(client, "k1", is_chat("error", "k1"))
        error = payloads(frames, "chat")[-1]
        self.assertIn("models.providers", error["errorMessage"])
        self.assertEqual(running.gateway.runs.active_count, 0)
        models = yield client.request("models.list", {})
        self.assertEqual(models["payload"], {"models": []})


class ClockTimeoutTests(_RunTestBase):
    def setUp(self):
        self.clock = Clock()
        return super().setUp()

    @inlineCallbacks
    def test_hang_times_out_at_timeout_ms(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        response = yield self.send("hi", key="slow", timeoutMs=5000)
        self.assertEqual(response["payload"]["status"], "started")
        yield self.upstream.open_requests.when(bool)
        # agent.wait on the running run gives up after its own timeoutMs.
        waiting = self.client.request("agent.wait", {"runId": "slow", "timeoutMs": 1000})
        yield wait_until(lambda: "slow" in self.gateway.runs._waiters)
        self.clock.advance(1)
        waited = yield waiting
        self.assertEqual(waited["payload"]["status"], "timeout")
        self.assertEqual(waited["payload"]["runId"], "slow")
        self.clock.advance(3.9)
        self.assertEqual(len(self.upstream.open_requests), 1)
        self.clock.advance(0.1)
        frames = yield run_events(self.client, "slow", is_chat("error", "slow"))
        error = payloads(frames, "chat")[-1]
        self.assertEqual(error["errorMessage"], TIMEOUT_MESSAGE)
        self.assertEqual(error["errorKind"], "timeout")
        yield self.upstream_closed()
        finished = yield self.client.request("agent.wait", {"runId": "slow", "timeoutMs": 0})
        self.assertEqual(finished["payload"]["status"], "timeout")
        self.assertEqual(finished["payload"]["error"], TIMEOUT_MESSAGE)

    @inlineCallbacks
    def test_model_idle_timeout_uses_the_gateway_clock(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        yield self.send("hi", key="idle", timeoutMs=10_000_000)
        yield self.upstream.open_requests.when(bool)
        self.clock.advance(DEFAULT_IDLE_TIMEOUT_S)
        frames = yield run_events(self.client, "idle", is_chat("error", "idle"))
        error = payloads(frames, "chat")[-1]
        self.assertEqual(error["errorKind"], "timeout")
        self.assertEqual(error["errorDetail"]["failoverReason"], "timeout")
        yield self.upstream_closed()

    @inlineCallbacks
    def test_health_cache_catches_up_with_new_sessions(self):
        yield self.send("hi", key="k1")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        status = yield self.client.request("status")
        self.assertEqual(status["payload"]["sessions"]["count"], 1)
        self.clock.advance(2.001)  # past the documented ~2 s health cache
        health = yield self.client.request("health")
        self.assertEqual(health["payload"]["sessions"]["count"], 1)
        self.assertEqual(health["payload"]["sessions"]["recent"][0]["key"], MAIN)

    @inlineCallbacks
    def test_agent_wait_unknown_run(self):
        waiting = self.client.request("agent.wait", {"runId": "ghost", "timeoutMs": 250})
        yield wait_until(lambda: "ghost" in self.gateway.runs._waiters)
        self.clock.advance(0.25)
        waited = yield waiting
        self.assertTrue(waited["ok"], waited)
        self.assertEqual(waited["payload"], {"runId": "ghost", "status": "timeout"})
        self.assertNotIn("ghost", self.gateway.runs._waiters)


class AbortBeforeTheUpstreamAnswersTests(_RunTestBase):
    """Every way a run can stop closes its upstream connection at once, even when the upstream
    has not sent its response headers yet (those connections used to stay ESTABLISHED)."""

    def setUp(self):
        self.clock = Clock()
        return super().setUp()

    @inlineCallbacks
    def start_waiting_run(self, key, **extra):
        self.upstream.behaviour = Behaviour(mode="silent")
        response = yield self.send("hi", key=key, **extra)
        self.assertEqual(response["payload"]["status"], "started")
        yield self.upstream.open_requests.when(bool)
        self.assertEqual(len(self.upstream.connections), 1)

    def upstream_disconnected(self):
        return self.upstream.connections.when(lambda connections: not connections)

    @inlineCallbacks
    def test_chat_abort(self):
        yield self.start_waiting_run("k1")
        response = yield self.client.request("chat.abort", {"sessionKey": "main"})
        self.assertEqual(response["payload"]["runIds"], ["k1"])
        yield self.upstream_disconnected()
        frames = yield run_events(self.client, "k1", is_chat("aborted", "k1"))
        self.assertNotIn("message", payloads(frames, "chat")[-1])  # nothing was streamed

    @inlineCallbacks
    def test_run_timeout(self):
        yield self.start_waiting_run("slow", timeoutMs=5000)
        self.clock.advance(5)
        yield self.upstream_disconnected()
        frames = yield run_events(self.client, "slow", is_chat("error", "slow"))
        self.assertEqual(payloads(frames, "chat")[-1]["errorKind"], "timeout")

    @inlineCallbacks
    def test_model_idle_timeout(self):
        yield self.start_waiting_run("idle", timeoutMs=10_000_000)
        self.clock.advance(DEFAULT_IDLE_TIMEOUT_S)
        yield self.upstream_disconnected()
        yield run_events(self.client, "idle", is_chat("error", "idle"))

    @inlineCallbacks
    def test_gateway_stop(self):
        yield self.start_waiting_run("k1")
        yield AgentService(self.gateway).stopService()
        yield self.upstream_disconnected()
        frames = yield run_events(self.client, "k1", is_chat("aborted", "k1"))
        self.assertEqual(payloads(frames, "chat")[-1]["stopReason"], "aborted")


class AgentMethodTests(_RunTestBase):
    def agent_request(self, params, request_id, client=None):
        (client or self.client).send({"type": "req", "id": request_id, "method": "agent", "params": params})

    @inlineCallbacks
    def test_two_responses_with_the_same_id(self):
        self.agent_request({"message": "hi", "idempotencyKey": "run-1", "sessionKey": "main"}, "req-1")
        accepted = yield self.client.next_matching(is_res("req-1"))
        self.assertTrue(accepted["ok"], accepted)
        payload = accepted["payload"]
        self.assertEqual(
            {k: payload[k] for k in ("runId", "sessionKey", "agentId", "status")},
            {"runId": "run-1", "sessionKey": MAIN, "agentId": "main", "status": "accepted"},
        )
        self.assertIsInstance(payload["acceptedAt"], int)
        final = yield self.client.next_matching(is_res("req-1"))
        self.assertTrue(final["ok"], final)
        result = final["payload"]
        self.assertEqual((result["runId"], result["status"], result["summary"]), ("run-1", "ok", "completed"))
        self.assertEqual(result["result"]["payloads"], [{"text": "Hello there!", "mediaUrl": None}])
        meta = result["result"]["meta"]
        self.assertIsInstance(meta["durationMs"], int)
        self.assertGreaterEqual(meta["durationMs"], 0)
        self.assertEqual((meta["agentMeta"]["provider"], meta["agentMeta"]["model"]), ("fake", "m1"))
        self.assertIsInstance(meta["agentMeta"]["sessionId"], str)
        # The run's events went out as usual, and agent.wait now has the outcome.
        self.assertTrue(any(is_chat("final", "run-1")(f) for f in self.client.skipped))
        waited = yield self.client.request("agent.wait", {"runId": "run-1"})
        self.assertEqual(waited["payload"]["status"], "ok")
        self.assertEqual(waited["payload"]["runId"], "run-1")
        self.assertLessEqual(waited["payload"]["startedAt"], waited["payload"]["endedAt"])

    @inlineCallbacks
    def test_default_session_is_the_main_session(self):
        self.agent_request({"message": "hi", "idempotencyKey": "run-1"}, "req-1")
        accepted = yield self.client.next_matching(is_res("req-1"))
        self.assertEqual(accepted["payload"]["sessionKey"], MAIN)
        yield self.client.next_matching(is_res("req-1"))

    @inlineCallbacks
    def test_failure_carries_payload_and_unavailable(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)
        self.agent_request({"message": "hi", "idempotencyKey": "bad-1", "sessionKey": "main"}, "req-2")
        accepted = yield self.client.next_matching(is_res("req-2"))
        self.assertEqual(accepted["payload"]["status"], "accepted")
        final = yield self.client.next_matching(is_res("req-2"))
        self.assertFalse(final["ok"])
        self.assertEqual(final["error"]["code"], "UNAVAILABLE")
        self.assertIn("HTTP 500", final["error"]["message"])
        self.assertEqual(final["payload"]["runId"], "bad-1")
        self.assertEqual(final["payload"]["status"], "error")
        self.assertIn("HTTP 500", final["payload"]["summary"])

    @inlineCallbacks
    def test_replay_of_finished_agent_run(self):
        self.agent_request({"message": "hi", "idempotencyKey": "run-1", "sessionKey": "main"}, "req-1")
        yield self.client.next_matching(is_res("req-1"))
        yield self.client.next_matching(is_res("req-1"))
        replay = yield self.client.request("agent", {"message": "hi", "idempotencyKey": "run-1", "sessionKey": "main"})
        self.assertEqual(replay["payload"]["status"], "ok")
        self.assertEqual(replay["payload"]["runId"], "run-1")
        self.assertEqual(len(self.upstream.requests), 1)
        conflict = yield self.client.request("agent", {"message": "other", "idempotencyKey": "run-1", "sessionKey": "main"})
        self.assertEqual(conflict["error"]["details"], {"reason": "chat-request-conflict"})

    @inlineCallbacks
    def test_new_needs_admin(self):
        writer, hello = yield connect(self, self.running.url, scopes=[WRITE])
        self.assertTrue(hello["ok"], hello)
        denied = yield writer.request("agent", {"message": "/new", "idempotencyKey": "r1", "sessionKey": "main"})
        self.assertFalse(denied["ok"])
        self.assertEqual(denied["error"]["code"], "FORBIDDEN")
        self.assertIn(ADMIN, denied["error"]["message"])
        # An ordinary message from the same client is fine.
        writer.send({"type": "req", "id": "ok-1", "method": "agent", "params": {"message": "hello", "idempotencyKey": "r2", "sessionKey": "main"}})
        accepted = yield writer.next_matching(is_res("ok-1"))
        self.assertTrue(accepted["ok"], accepted)
        yield writer.next_matching(is_res("ok-1"))

    @inlineCallbacks
    def test_new_as_admin_resets_the_session(self):
        yield self.send("hi", key="k1")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        before = yield self.client.request("chat.history", {"sessionKey": "main"})
        reset = yield self.client.request("agent", {"message": "/new", "idempotencyKey": "r1", "sessionKey": "main"})
        self.assertTrue(reset["ok"], reset)
        self.assertEqual(reset["payload"]["status"], "ok")
        after = yield self.client.request("chat.history", {"sessionKey": "main"})
        self.assertNotEqual(after["payload"]["sessionId"], before["payload"]["sessionId"])
        self.assertEqual(after["payload"]["messages"], [])

    @inlineCallbacks
    def test_retried_new_does_not_reset_again(self):
        """A client retrying "/new" with its idempotencyKey keeps what was said in between."""
        first = yield self.client.request("agent", {"message": "/new", "idempotencyKey": "r1", "sessionKey": "main"})
        self.assertTrue(first["ok"], first)
        yield self.send("hi", key="k1")
        yield run_events(self.client, "k1", is_chat("final", "k1"))
        before = yield self.client.request("chat.history", {"sessionKey": "main"})
        replay = yield self.client.request("agent", {"message": "/new", "idempotencyKey": "r1", "sessionKey": "main"})
        self.assertEqual(replay["payload"], first["payload"])
        after = yield self.client.request("chat.history", {"sessionKey": "main"})
        self.assertEqual(after["payload"]["sessionId"], before["payload"]["sessionId"])
        self.assertEqual(len(after["payload"]["messages"]), len(before["payload"]["messages"]))
        other = yield self.client.request("agent", {"message": "/reset", "idempotencyKey": "r1", "sessionKey": "main"})
        self.assertEqual(other["error"]["details"], {"reason": "chat-request-conflict"})

    @inlineCallbacks
    def test_agent_wait_unknown_run_with_zero_timeout(self):
        waited = yield self.client.request("agent.wait", {"runId": "nope", "timeoutMs": 0})
        self.assertTrue(waited["ok"], waited)
        self.assertEqual(waited["payload"], {"runId": "nope", "status": "timeout"})


class CatalogMethodTests(_RunTestBase):
    def config(self):
        config = self.upstream.config(models=("m1", "m2"), fallbacks=("fake/m2",), contextWindow=8192, maxTokens=256)
        config["agents"]["list"] = [{"id": "main", "name": "Main"}, {"id": "coder", "model": "fake/m2", "identity": {"emoji": "x"}}]
        return config

    @inlineCallbacks
    def test_models_list(self):
        # What the reference CLI's table shows: a loopback server with a key set.
        ROW = {"input": ["text"], "local": True, "available": True}
        response = yield self.client.request("models.list", {})
        self.assertEqual(
            response["payload"],
            {
                "models": [
                    {"id": "m1", "name": "M1", "provider": "fake", "contextWindow": 8192, "maxTokens": 256, **ROW},
                    {"id": "m2", "name": "M2", "provider": "fake", "contextWindow": 8192, "maxTokens": 256, **ROW},
                ]
            },
        )

    @inlineCallbacks
    def test_agents_list(self):
        response = yield self.client.request("agents.list", {})
        self.assertEqual(
            response["payload"],
            {
                "defaultId": "main",
                "ownership": "sole",
                "selectionRequired": False,
                "mainKey": "main",
                "scope": "per-sender",
                "agents": [
                    {"id": "main", "kind": "agent", "name": "Main", **THINKING_OFF, "model": {"primary": "fake/m1", "fallbacks": ["fake/m2"]}},
                    {
                        "id": "coder",
                        "kind": "agent",
                        "identity": {"emoji": "x"},
                        **THINKING_OFF,
                        "model": {"primary": "fake/m2", "fallbacks": ["fake/m2"]},
                    },
                ],
            },
        )

    @inlineCallbacks
    def test_agent_model_is_used_for_its_sessions(self):
        yield self.client.request("chat.send", {"sessionKey": "agent:coder:main", "message": "hi", "idempotencyKey": "c1"})
        frames = yield run_events(self.client, "c1", is_chat("final", "c1"))
        self.assertEqual(payloads(frames, "chat")[-1]["agentId"], "coder")
        self.assertEqual(self.upstream.requests[0]["body"]["model"], "m2")

    @inlineCallbacks
    def test_unknown_agent_refused(self):
        response = yield self.client.request("chat.send", {"sessionKey": "main", "agentId": "ghost", "message": "hi", "idempotencyKey": "g1"})
        self.assertFalse(response["ok"])
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertEqual(self.upstream.requests, [])
