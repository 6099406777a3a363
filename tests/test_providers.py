"""UpstreamStream, ModelClient and FallbackStream against FakeUpstream over real loopback HTTP.

The model streams use a ``task.Clock`` for their idle timers, so timeouts are driven by the test
while the HTTP traffic is real.
"""
from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.agents.catalog import Catalog
from openclaw.providers import openai_completions, openai_responses
from openclaw.providers.client import Completion, ModelClient
from openclaw.providers.errors import (
    KIND_CONTEXT_LENGTH,
    KIND_RATE_LIMIT,
    KIND_REFUSAL,
    KIND_TIMEOUT,
    ProviderError,
    ProviderNotConfigured,
    StreamAborted,
)
from openclaw.providers.sse import SSEEvent
from openclaw.providers.streaming import StreamResult

from .support.loopback import loopback_http, watch_upstream
from .support.upstream import Behaviour, FakeUpstream

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "again"}]


class _Base(TestCase):
    timeout = 15  # a Deferred that never fires fails the test instead of hanging trial
    api = "openai-completions"
    idle_timeout_s = 5.0

    def setUp(self):
        self.upstream = watch_upstream(FakeUpstream().start(self))
        self.http = loopback_http(self, self.upstream)
        self.clock = Clock()
        self.client = ModelClient(self.http, self.clock, idle_timeout_s=self.idle_timeout_s)
        self.deltas: list[str] = []
        self.delta_waiters: list[Deferred] = []

    def catalog(self, **kwargs):
        return Catalog.from_config(self.upstream.config(api=self.api, **kwargs))

    def target(self, ref="fake/m1", **kwargs):
        target = self.catalog(**kwargs).resolve(ref)
        self.assertIsNotNone(target)
        return target

    def on_delta(self, delta):
        self.deltas.append(delta)
        waiters, self.delta_waiters = self.delta_waiters, []
        for d in waiters:
            d.callback(delta)

    def next_delta(self):
        d = Deferred()
        self.delta_waiters.append(d)
        return d

    def open_stream(self, target=None):
        return self.client.open(target or self.target(), MESSAGES, self.on_delta)

    def upstream_gone(self):
        return self.upstream.open_requests.when(lambda requests: not requests)


class CompletionsStreamTests(_Base):
    @inlineCallbacks
    def test_streams_deltas_and_final_result(self):
        stream = self.open_stream(self.target(maxTokens=256))
        result = yield stream.start()
        self.assertIsInstance(result, StreamResult)
        self.assertEqual(self.deltas, ["Hel", "lo", " there!"])
        self.assertEqual(result.text, "Hello there!")
        self.assertEqual(result.usage, {"input": 11, "output": 3, "totalTokens": 14})
        self.assertEqual(result.stop_reason, "stop")
        self.assertEqual(result.model, "m1")
        self.assertTrue(stream.emitted_text)

    @inlineCallbacks
    def test_request_body_and_authorization(self):
        yield self.open_stream(self.target(maxTokens=256)).start()
        [sent] = self.upstream.requests
        self.assertEqual(sent["path"], "/v1/chat/completions")
        self.assertEqual(sent["authorization"], "Bearer sk-test")
        self.assertEqual(
            sent["body"],
            {
                "model": "m1",
                "messages": MESSAGES,
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": 256,
            },
        )

    @inlineCallbacks
    def test_no_max_tokens_when_not_configured(self):
        yield self.open_stream().start()
        self.assertNotIn("max_tokens", self.upstream.requests[0]["body"])

    def test_no_authorization_without_api_key_and_provider_headers_kept(self):
        config = self.upstream.config()
        provider = config["models"]["providers"]["fake"]
        del provider["apiKey"]
        provider["headers"] = {"X-Org": "acme"}
        target = Catalog.from_config(config).resolve("fake/m1")
        stream = self.client.open(target, MESSAGES, self.on_delta)
        self.assertEqual(dict(stream.request.headers), {"X-Org": "acme"})
        self.assertEqual(stream.request.url, self.upstream.base_url + "/chat/completions")
        self.assertEqual(stream.request.label, "fake/m1")

    @inlineCallbacks
    def test_http_500_is_retryable_provider_error(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)
        error = yield self.assertFailure(self.open_stream().start(), ProviderError)
        self.assertTrue(error.retryable)
        self.assertEqual(error.status, 500)
        self.assertIn("fake/m1 returned HTTP 500", error.message)
        self.assertIn("upstream says 500", error.message)

    @inlineCallbacks
    def test_http_429_is_rate_limit(self):
        self.upstream.behaviour = Behaviour(mode="error", status=429)
        error = yield self.assertFailure(self.open_stream().start(), ProviderError)
        self.assertEqual(error.kind, KIND_RATE_LIMIT)
        self.assertEqual(error.status, 429)
        self.assertTrue(error.retryable)

    @inlineCallbacks
    def test_http_400_is_not_retryable(self):
        self.upstream.behaviour = Behaviour(mode="error", status=400)
        error = yield self.assertFailure(self.open_stream().start(), ProviderError)
        self.assertFalse(error.retryable)
        self.assertEqual(error.status, 400)
        self.assertEqual(self.deltas, [])

    @inlineCallbacks
    def test_hang_becomes_idle_timeout_and_closes_the_request(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        stream = self.open_stream()
        d = stream.start()
        yield self.upstream.open_requests.when(bool)
        self.assertFalse(d.called)
        self.clock.advance(self.idle_timeout_s - 0.1)
        self.assertFalse(d.called)
        self.clock.advance(0.1)
        error = yield self.assertFailure(d, ProviderError)
        self.assertEqual(error.kind, KIND_TIMEOUT)
        self.assertFalse(error.retryable)
        self.assertIn("sent nothing for 5 s", error.message)
        yield self.upstream_gone()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @inlineCallbacks
    def test_each_chunk_resets_the_idle_timer(self):
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        stream = self.open_stream()
        d = stream.start()
        self.clock.advance(4)  # the timer started at 0 would fire at 5 ...
        yield self.next_delta()  # ... but the response and its first chunk reset it to 4 + 5
        self.clock.advance(4)
        self.assertFalse(d.called)
        self.clock.advance(1)
        error = yield self.assertFailure(d, ProviderError)
        self.assertEqual(error.kind, KIND_TIMEOUT)
        self.assertEqual(self.deltas, ["Hel"])
        yield self.upstream_gone()

    @inlineCallbacks
    def test_byte_cap(self):
        self.client.max_bytes = 60
        stream = self.open_stream()
        error = yield self.assertFailure(stream.start(), ProviderError)
        self.assertIn("streamed more than 60 bytes", error.message)
        self.assertFalse(error.retryable)
        yield self.upstream_gone()

    @inlineCallbacks
    def test_cancel_aborts_and_disconnects_upstream(self):
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        stream = self.open_stream()
        d = stream.start()
        yield self.next_delta()
        self.assertEqual(len(self.upstream.open_requests), 1)
        stream.cancel("rpc")
        error = yield self.assertFailure(d, StreamAborted)
        self.assertEqual(str(error), "rpc")
        yield self.upstream_gone()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @inlineCallbacks
    def test_cancel_while_waiting_for_headers(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        stream = self.open_stream()
        d = stream.start()
        yield self.upstream.open_requests.when(bool)
        stream.cancel()
        yield self.assertFailure(d, StreamAborted)
        yield self.upstream_gone()

    @inlineCallbacks
    def test_cancel_before_the_response_headers_closes_the_connection(self):
        """The upstream has the request but has not answered: cancelling must close the socket
        (it stayed ESTABLISHED for as long as the upstream kept quiet)."""
        self.upstream.behaviour = Behaviour(mode="silent")
        stream = self.open_stream()
        d = stream.start()
        yield self.upstream.open_requests.when(bool)
        self.assertEqual(len(self.upstream.connections), 1)
        stream.cancel("rpc")
        yield self.assertFailure(d, StreamAborted)
        yield self.upstream.connections.when(lambda connections: not connections)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @inlineCallbacks
    def test_idle_timeout_before_the_response_headers_closes_the_connection(self):
        self.upstream.behaviour = Behaviour(mode="silent")
        d = self.open_stream().start()
        yield self.upstream.open_requests.when(bool)
        self.clock.advance(self.idle_timeout_s)
        error = yield self.assertFailure(d, ProviderError)
        self.assertEqual(error.kind, KIND_TIMEOUT)
        yield self.upstream.connections.when(lambda connections: not connections)

    @inlineCallbacks
    def test_cancel_before_connecting(self):
        stream = self.open_stream()
        d = stream.start()
        stream.cancel()
        yield self.assertFailure(d, StreamAborted)
        self.assertEqual(self.deltas, [])

    @inlineCallbacks
    def test_idle_timeout_while_connecting_is_a_timeout(self):
        d = self.open_stream().start()
        self.clock.advance(self.idle_timeout_s)
        error = yield self.assertFailure(d, ProviderError)
        self.assertEqual(error.kind, KIND_TIMEOUT)

    @inlineCallbacks
    def test_connection_refused_is_retryable(self):
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        config = self.upstream.config()
        config["models"]["providers"]["fake"]["baseUrl"] = f"http://127.0.0.1:{number}/v1"
        target = Catalog.from_config(config).resolve("fake/m1")
        error = yield self.assertFailure(self.client.open(target, MESSAGES, self.on_delta).start(), ProviderError)
        self.assertTrue(error.retryable)
        self.assertIn("cannot reach fake/m1", error.message)

    @inlineCallbacks
    def test_connection_dropped_before_text_is_retryable_after_text_not(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        d = self.open_stream().start()
        yield self.upstream.open_requests.when(bool)
        self.upstream.open_requests[0].channel.transport.abortConnection()
        error = yield self.assertFailure(d, ProviderError)
        # Depending on whether the response headers got through first this is "cannot reach"
        # or "closed the stream early"; either way nothing was shown, so a fallback may retry.
        self.assertTrue(error.retryable)
        self.assertIn("fake/m1", error.message)

        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        d = self.open_stream().start()
        yield self.next_delta()
        self.upstream.open_requests[0].channel.transport.abortConnection()
        error = yield self.assertFailure(d, ProviderError)
        self.assertFalse(error.retryable)


class ResponsesStreamTests(_Base):
    api = "openai-responses"

    @inlineCallbacks
    def test_streams_deltas_and_final_result(self):
        stream = self.open_stream()
        result = yield stream.start()
        self.assertEqual(self.deltas, ["Hel", "lo", " there!"])
        self.assertEqual(result.text, "Hello there!")
        self.assertEqual(result.usage, {"input": 11, "output": 3, "totalTokens": 14})
        self.assertEqual(result.model, "m1")
        self.assertEqual(result.stop_reason, "stop")

    @inlineCallbacks
    def test_request_body(self):
        yield self.open_stream(self.target(maxTokens=128)).start()
        [sent] = self.upstream.requests
        self.assertEqual(sent["path"], "/v1/responses")
        self.assertEqual(sent["authorization"], "Bearer sk-test")
        self.assertEqual(
            sent["body"],
            {
                "model": "m1",
                "input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "again"}],
                "stream": True,
                "store": False,
                "instructions": "be brief",
                "max_output_tokens": 128,
            },
        )

    @inlineCallbacks
    def test_http_503_retryable(self):
        self.upstream.behaviour = Behaviour(mode="error", status=503)
        error = yield self.assertFailure(self.open_stream().start(), ProviderError)
        self.assertTrue(error.retryable)
        self.assertEqual(error.status, 503)

    @inlineCallbacks
    def test_hang_times_out(self):
        self.upstream.behaviour = Behaviour(mode="hang")
        d = self.open_stream().start()
        yield self.upstream.open_requests.when(bool)
        self.clock.advance(self.idle_timeout_s)
        error = yield self.assertFailure(d, ProviderError)
        self.assertEqual(error.kind, KIND_TIMEOUT)
        yield self.upstream_gone()


class FallbackTests(_Base):
    def complete(self, refs, **config):
        catalog = self.catalog(**config)
        targets = [catalog.resolve(ref) for ref in refs]
        return self.client.complete(targets, MESSAGES, self.on_delta)

    @inlineCallbacks
    def test_falls_back_from_500_to_working_model(self):
        self.upstream.per_model["m1"] = Behaviour(mode="error", status=500)
        completion = yield self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start()
        self.assertIsInstance(completion, Completion)
        self.assertEqual(completion.target.ref, "fake/m2")
        self.assertEqual(completion.attempts, ("fake/m1", "fake/m2"))
        self.assertEqual(completion.result.text, "Hello there!")
        self.assertEqual([r["body"]["model"] for r in self.upstream.requests], ["m1", "m2"])

    @inlineCallbacks
    def test_falls_back_on_429(self):
        self.upstream.per_model["m1"] = Behaviour(mode="error", status=429)
        completion = yield self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start()
        self.assertEqual(completion.target.ref, "fake/m2")

    @inlineCallbacks
    def test_last_error_surfaces_when_all_fail(self):
        self.upstream.per_model["m1"] = Behaviour(mode="error", status=500)
        self.upstream.per_model["m2"] = Behaviour(mode="error", status=502)
        error = yield self.assertFailure(self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start(), ProviderError)
        self.assertEqual(error.status, 502)
        self.assertIn("fake/m2", error.message)
        self.assertEqual(len(self.upstream.requests), 2)

    @inlineCallbacks
    def test_no_fallback_on_400(self):
        self.upstream.per_model["m1"] = Behaviour(mode="error", status=400)
        error = yield self.assertFailure(self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start(), ProviderError)
        self.assertEqual(error.status, 400)
        self.assertEqual([r["body"]["model"] for r in self.upstream.requests], ["m1"])

    @inlineCallbacks
    def test_no_fallback_after_text_streamed(self):
        self.upstream.per_model["m1"] = Behaviour(mode="hang-after-first")
        d = self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start()
        yield self.next_delta()
        # A retryable kind of failure (the connection drops) but the user already saw text.
        self.upstream.open_requests[0].channel.transport.abortConnection()
        error = yield self.assertFailure(d, ProviderError)
        self.assertIn("closed the stream early", error.message)
        self.assertEqual(self.deltas, ["Hel"])
        self.assertEqual([r["body"]["model"] for r in self.upstream.requests], ["m1"])

    @inlineCallbacks
    def test_dropped_before_text_falls_back(self):
        self.upstream.per_model["m1"] = Behaviour(mode="hang")
        d = self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start()
        yield self.upstream.open_requests.when(bool)
        self.upstream.open_requests[0].channel.transport.abortConnection()
        completion = yield d
        self.assertEqual(completion.target.ref, "fake/m2")
        self.assertEqual(self.deltas, ["Hel", "lo", " there!"])

    @inlineCallbacks
    def test_timeout_after_text_does_not_fall_back(self):
        self.upstream.per_model["m1"] = Behaviour(mode="hang-after-first")
        d = self.complete(["fake/m1", "fake/m2"], models=("m1", "m2")).start()
        yield self.next_delta()
        self.clock.advance(self.idle_timeout_s)
        error = yield self.assertFailure(d, ProviderError)
        self.assertEqual(error.kind, KIND_TIMEOUT)
        self.assertEqual(len(self.upstream.requests), 1)
        yield self.upstream_gone()

    @inlineCallbacks
    def test_cancel_after_text_aborts_without_fallback(self):
        self.upstream.per_model["m1"] = Behaviour(mode="hang-after-first")
        stream = self.complete(["fake/m1", "fake/m2"], models=("m1", "m2"))
        d = stream.start()
        yield self.next_delta()
        stream.cancel("rpc")
        yield self.assertFailure(d, StreamAborted)
        yield self.upstream_gone()
        self.assertEqual(len(self.upstream.requests), 1)

    @inlineCallbacks
    def test_cancel_while_connecting_single_target(self):
        stream = self.complete(["fake/m1"])
        d = stream.start()
        stream.cancel("rpc")
        error = yield self.assertFailure(d, StreamAborted)
        self.assertEqual(str(error), "rpc")

    @inlineCallbacks
    def test_no_targets(self):
        error = yield self.assertFailure(self.client.complete([], MESSAGES, self.on_delta).start(), ProviderNotConfigured)
        self.assertIn("models.providers", error.message)
        self.assertEqual(self.upstream.requests, [])


class StatusErrorTests(TestCase):
    def test_for_status(self):
        self.assertEqual(ProviderError.for_status(429, "slow down", "p/m").kind, KIND_RATE_LIMIT)
        self.assertTrue(ProviderError.for_status(502, "", "p/m").retryable)
        error = ProviderError.for_status(400, "This model's maximum context length is 8192 tokens", "p/m")
        self.assertEqual(error.kind, KIND_CONTEXT_LENGTH)
        self.assertFalse(error.retryable)
        self.assertEqual(ProviderError.for_status(401, "", "p/m").message, "p/m returned HTTP 401")
        self.assertFalse(ProviderError.for_status(404, "nope", "p/m").retryable)


def _json_event(data, event="message"):
    import json

    return SSEEvent(event, json.dumps(data))


class CompletionsInterpreterTests(TestCase):
    def setUp(self):
        self.interpreter = openai_completions.CompletionsInterpreter("p/m")

    def test_deltas_finish_reason_and_done(self):
        feed = self.interpreter.feed
        self.assertEqual(feed(_json_event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})), [])
        self.assertEqual(feed(_json_event({"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "x"}}]})), ["a"])
        self.assertEqual(feed(_json_event({"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "length"}]})), ["b"])
        self.assertFalse(self.interpreter.finished)
        self.assertEqual(feed(SSEEvent("message", "[DONE]")), [])
        self.assertTrue(self.interpreter.finished)
        self.assertEqual(self.interpreter.conclude().text, "ab")
        self.assertEqual(self.interpreter.result.stop_reason, "length")

    def test_tool_calls_reason_mapped(self):
        self.interpreter.feed(_json_event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
        self.assertEqual(self.interpreter.result.stop_reason, "toolUse")

    def test_not_json(self):
        error = self.assertRaises(ProviderError, self.interpreter.feed, SSEEvent("message", "{nope"))
        self.assertIn("not JSON", error.message)

    def test_in_stream_error(self):
        error = self.assertRaises(ProviderError, self.interpreter.feed, _json_event({"error": {"message": "context length exceeded"}}))
        self.assertEqual(error.kind, KIND_CONTEXT_LENGTH)

    def test_refusal(self):
        error = self.assertRaises(ProviderError, self.interpreter.feed, _json_event({"choices": [{"index": 0, "delta": {"refusal": "no"}}]}))
        self.assertEqual(error.kind, KIND_REFUSAL)

    def test_non_object_chunk_ignored(self):
        self.assertEqual(self.interpreter.feed(SSEEvent("message", "[1, 2]")), [])


class ResponsesInterpreterTests(TestCase):
    def setUp(self):
        self.interpreter = openai_responses.ResponsesInterpreter("p/m")

    def test_event_name_used_when_type_missing(self):
        self.assertEqual(self.interpreter.feed(_json_event({"delta": "hi"}, "response.output_text.delta")), ["hi"])

    def test_incomplete_is_length(self):
        self.interpreter.feed(_json_event({"type": "response.output_text.delta", "delta": "x"}))
        self.interpreter.feed(_json_event({"type": "response.incomplete", "response": {"status": "incomplete", "usage": {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}}}))
        self.assertTrue(self.interpreter.finished)
        self.assertEqual(self.interpreter.result.stop_reason, "length")
        self.assertEqual(self.interpreter.result.usage, {"input": 1, "output": 2, "totalTokens": 3})
        self.assertEqual(self.interpreter.conclude().text, "x")

    def test_failed_with_rate_limit_code(self):
        error = self.assertRaises(
            ProviderError,
            self.interpreter.feed,
            _json_event({"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded", "message": "slow"}}}),
        )
        self.assertEqual(error.kind, KIND_RATE_LIMIT)
        self.assertIn("slow", error.message)

    def test_error_event(self):
        error = self.assertRaises(ProviderError, self.interpreter.feed, _json_event({"type": "error", "error": {"code": "context_length_exceeded", "message": "too long"}}))
        self.assertEqual(error.kind, KIND_CONTEXT_LENGTH)

    def test_refusal(self):
        error = self.assertRaises(ProviderError, self.interpreter.feed, _json_event({"type": "response.refusal.delta", "delta": "no"}))
        self.assertEqual(error.kind, KIND_REFUSAL)

    def test_other_events_ignored(self):
        self.assertEqual(self.interpreter.feed(_json_event({"type": "response.created", "response": {}})), [])
        self.assertFalse(self.interpreter.finished)


class AnthropicAndOllamaFlavourTests(SynchronousTestCase):
    """The two non-OpenAI flavours' requests and stream events, without a network."""

    def test_anthropic_request(self):
        from openclaw.providers import anthropic_messages

        history = [
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "content": "left over from a trimmed history"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
        path, body = anthropic_messages.build_request("claude-x", history, None, {"temperature": 0.2, "stop": "END"})
        self.assertEqual(body["system"], "be brief")
        self.assertEqual(body["messages"], [{"role": "user", "content": "a\n\nb"}, {"role": "assistant", "content": "c"}])
        self.assertEqual((body["max_tokens"], body["temperature"], body["stop_sequences"]), (4096, 0.2, ["END"]))
        self.assertEqual(anthropic_messages.messages_path("https://api.anthropic.com"), "/v1/messages")
        self.assertEqual(anthropic_messages.messages_path("https://proxy.example/anthropic/v1/"), "/messages")
        self.assertEqual(anthropic_messages.headers("k"), {"anthropic-version": "2023-06-01", "x-api-key": "k"})

    def test_anthropic_events(self):
        from openclaw.providers import anthropic_messages

        interpreter = anthropic_messages.MessagesInterpreter("anthropic/x")

        def feed(kind, payload):
            return interpreter.feed(SSEEvent(kind, json.dumps({"type": kind, **payload})))

        feed("message_start", {"message": {"model": "claude-x-1", "usage": {"input_tokens": 7, "output_tokens": 1}}})
        self.assertEqual(feed("ping", {}), [])
        self.assertEqual(feed("content_block_delta", {"delta": {"type": "text_delta", "text": "Hi"}}), ["Hi"])
        self.assertEqual(feed("content_block_delta", {"delta": {"type": "input_json_delta", "partial_json": "{"}}), [])
        feed("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 5}})
        self.assertFalse(interpreter.finished)
        feed("message_stop", {})
        self.assertTrue(interpreter.finished)
        result = interpreter.conclude()
        self.assertEqual((result.text, result.stop_reason, result.model), ("Hi", "length", "claude-x-1"))
        self.assertEqual(result.usage, {"input": 7, "output": 5, "totalTokens": 12})

    def test_anthropic_error_event(self):
        from openclaw.providers import anthropic_messages

        interpreter = anthropic_messages.MessagesInterpreter("anthropic/x")
        event = SSEEvent("error", json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
        with self.assertRaises(ProviderError) as caught:
            interpreter.feed(event)
        self.assertEqual(caught.exception.message, "anthropic/x: Overloaded")
        self.assertTrue(caught.exception.retryable)

    def test_ollama_lines_split_anywhere(self):
        from openclaw.providers import ollama_chat

        decoder, interpreter = ollama_chat.LineDecoder(), ollama_chat.ChatInterpreter("ollama/llama")
        body = (
            b'{"model":"llama","message":{"role":"assistant","content":"Hel"},"done":false}\n'
            b'{"model":"llama","message":{"role":"assistant","content":"lo"},"done":false}\n'
            b'{"model":"llama","message":{"content":""},"done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":2}\n'
        )
        deltas = []
        for index in range(0, len(body), 7):
            for event in decoder.feed(body[index : index + 7]):
                deltas.extend(interpreter.feed(event))
        self.assertEqual(deltas, ["Hel", "lo"])
        self.assertTrue(interpreter.finished)
        self.assertEqual(interpreter.conclude().usage, {"input": 4, "output": 2, "totalTokens": 6})
        with self.assertRaises(ProviderError):
            ollama_chat.ChatInterpreter("ollama/llama").feed(SSEEvent("message", '{"error": "model not found"}'))
        path, request = ollama_chat.build_request("llama", [{"role": "user", "content": "hi"}], 64, {"temperature": 0})
        self.assertEqual((path, request["options"]), ("/api/chat", {"temperature": 0, "num_predict": 64}))
