"""The OpenAI-compatible HTTP API (http spec §0–§2) on a real loopback gateway and upstream.

Three kinds of client talk to the gateway here:

* the official ``openai`` Python SDK, which is synchronous, so every call runs in a thread
  (``deferToThread``) and closes its client in that same thread;
* ``twisted.web.client.Agent`` with a non-persistent pool (each request says
  ``Connection: close``) for exact statuses, headers and bodies;
* a raw TCP protocol where the wire itself matters: bodies that never finish arriving,
  oversized bodies, and clients that hang up mid-answer.

Every test waits, without sleeping, until no connection to the gateway port is left, so the
reactor is clean whichever client was used.
"""
from __future__ import annotations

import json
import re
import uuid
from io import BytesIO
from typing import Any

import openai
from klein import Klein
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http import HTTPChannel, Request
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.server import Site
from zope.interface import implementer

from openclaw.agents.runs import STATUS_ABORTED, STATUS_OK
from openclaw.http.app import GatewayHttpApp
from openclaw.http.openai.sse import SSEWriter
from openclaw.http.request import BODY_TIMEOUT_S
from openclaw.security.scopes import ADMIN, READ, WRITE
from openclaw.security.shared_secret import AuthSettings

from .support.gateway import TOKEN, start_gateway
from .support.loopback import (
    _upstream_connections,
    loopback_http,
    parse_wire,
    wait_until,
    watch_upstream,
)
from .support.upstream import Behaviour, FakeUpstream
from .support.wsclient import connect
from .test_runs import is_chat, is_lifecycle, payloads, run_events

ENABLED = {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": True}, "responses": {"enabled": True}}}}}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(self), geolocation=()",
}
JSON_UTF8 = "application/json; charset=utf-8"
TEXT_UTF8 = "text/plain; charset=utf-8"
UNAUTHORIZED = {"error": {"message": "Unauthorized", "type": "unauthorized"}}
HI = [{"role": "user", "content": "hi"}]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RESPONSE_STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def sse_frames(body: bytes) -> list[dict[str, Any]]:
    """``[{"event": name or None, "data": raw data text}]`` for each SSE frame."""
    frames = []
    for block in body.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        frame: dict[str, Any] = {"event": None, "data": None}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            frame[name] = value
        frames.append(frame)
    return frames


@implementer(IBodyProducer)
class ChunkedBody:
    """A body of unknown length, so the Agent sends it with ``Transfer-Encoding: chunked``."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes):
        self._data = data

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class RawClient(Protocol):
    """Bytes as they arrive on a plain TCP connection; ``when`` waits for a condition on them."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred = Deferred()
        self._watchers: list[tuple[Any, Deferred]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for entry in list(self._watchers):
            predicate, d = entry
            if predicate(self.received):
                self._watchers.remove(entry)
                d.callback(self.received)

    def connectionLost(self, reason: Any) -> None:
        watchers, self._watchers = self._watchers, []
        for _, d in watchers:
            d.errback(ConnectionError(f"closed before the expected bytes arrived: {self.received!r}"))
        self.lost.callback(self.received)

    def when(self, predicate: Any) -> Deferred:
        if predicate(self.received):
            return succeed(self.received)
        d: Deferred = Deferred()
        self._watchers.append((predicate, d))
        return d


class _GatewayTestBase(TestCase):
    timeout = 20  # a Deferred that never fires fails the test instead of hanging trial
    clock: Any = None
    overrides: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return merge(self.upstream.config(), ENABLED)

    @inlineCallbacks
    def setUp(self):
        self.upstream = watch_upstream(FakeUpstream().start(self))
        http = loopback_http(self, self.upstream)
        self.running = yield start_gateway(self, clock=self.clock, config=self.config(), http=http, **self.overrides)
        self.gateway = self.running.gateway
        self.port = self.running.port.getHost().port
        # Registered last, so it runs first: every client of the test is done with by then.
        self.addCleanup(self._no_connections_left)

    @inlineCallbacks
    def _no_connections_left(self):
        """Wait until both ends of every connection to the gateway are gone (no sleeping)."""
        try:
            yield wait_until(lambda: not _upstream_connections(self.port), limit=3000)
        except AssertionError:
            left = _upstream_connections(self.port)
            for connection in left:
                connection.abortConnection()
            yield wait_until(lambda: not _upstream_connections(self.port))
            raise AssertionError(f"connections to the gateway were left open: {left}") from None

    # -- clients --------------------------------------------------------------------------------

    def sdk(self, work: Any, api_key: str = TOKEN) -> Deferred:
        """Run ``work(client)`` with an ``openai.OpenAI`` client in a thread; the client is closed there."""
        base_url = self.running.http_url + "/v1"

        def call() -> Any:
            client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=10)
            try:
                return work(client)
            finally:
                client.close()

        return deferToThread(call)

    def agent(self) -> Agent:
        return Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    @inlineCallbacks
    def request(self, method: str, path: bytes | str, body: Any = None, headers: dict[str, str] | None = None, token: str | None = TOKEN, chunked: bool = False):
        """``(response, raw body bytes)``; ``body`` may be bytes or anything JSON-encodable."""
        raw_headers = Headers()
        if token is not None:
            raw_headers.addRawHeader("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            raw_headers.addRawHeader(name, value)
        producer = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            raw_headers.addRawHeader("Content-Type", "application/json")
            producer = ChunkedBody(data) if chunked else FileBodyProducer(BytesIO(data))
        if isinstance(path, str):
            path = path.encode("ascii")
        url = self.running.http_url.encode("ascii") + path
        response = yield self.agent().request(method.encode("ascii"), url, raw_headers, producer)
        content = yield readBody(response)
        return response, content

    @inlineCallbacks
    def post_json(self, path: str, body: Any, **kwargs: Any):
        response, content = yield self.request("POST", path, body, **kwargs)
        return response, json.loads(content)

    def chat(self, body: Any = None, **kwargs: Any) -> Deferred:
        return self.post_json("/v1/chat/completions", {"model": "openclaw", "messages": HI, **(body or {})}, **kwargs)

    def responses(self, body: Any = None, **kwargs: Any) -> Deferred:
        return self.post_json("/v1/responses", {"model": "openclaw", "input": "hi", **(body or {})}, **kwargs)

    @inlineCallbacks
    def raw(self) -> Any:
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), RawClient())

        def close() -> Any:
            if not client.lost.called:
                client.transport.abortConnection()
            return client.lost

        self.addCleanup(close)
        return client

    def request_bytes(self, body: dict[str, Any], path: bytes = b"/v1/chat/completions", session_key: str | None = None, close: bool = False) -> bytes:
        """A complete POST for a raw connection."""
        data = json.dumps(body).encode()
        extra = b"x-openclaw-session-key: " + session_key.encode() + b"\r\n" if session_key else b""
        if close:
            extra += b"Connection: close\r\n"
        return (
            b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n" + extra
            + b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
        )

    @inlineCallbacks
    def operator(self):
        client, hello = yield connect(self, self.running.url, scopes=[ADMIN, READ, WRITE])
        self.assertTrue(hello["ok"], hello)
        return client

    # -- assertions -----------------------------------------------------------------------------

    def header(self, response: Any, name: str) -> str | None:
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None

    def assertSecurityHeaders(self, response: Any) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(response.headers.getRawHeaders(name), [value], name)
        self.assertIsNone(response.headers.getRawHeaders("Server"), "no version banner")

    def assertOpenAIError(self, response: Any, body: Any, status: int, message: str, error_type: str = "invalid_request_error") -> None:
        self.assertEqual(response.code, status, body)
        self.assertEqual(body, {"error": {"message": message, "type": error_type}})
        self.assertEqual(self.header(response, "Content-Type"), JSON_UTF8)

    def session_of(self, run_id: str) -> str:
        run = self.gateway.runs.get(run_id)
        self.assertIsNotNone(run, run_id)
        return run.session_key

    def transcript(self, session_key: str) -> list[tuple[str, str]]:
        """``(role, text)`` of each message stored for ``session_key`` (the store runs inline)."""
        entry = self.successResultOf(self.gateway.sessions.get(session_key))
        self.assertIsNotNone(entry, session_key)
        lines, _ = self.successResultOf(self.gateway.sessions.history(entry["sessionId"], 100))
        messages = [line["message"] for _, line in lines if line.get("type") == "message"]
        return [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]) for m in messages]


# ------------------------------------------------------------------------------------------------
# 1. The official SDK
# ------------------------------------------------------------------------------------------------


class SdkChatCompletionsTests(_GatewayTestBase):
    @inlineCallbacks
    def test_non_streaming(self):
        completion = yield self.sdk(lambda c: c.chat.completions.create(model="openclaw", messages=HI))
        self.assertRegex(completion.id, rf"^chatcmpl_{UUID}$")
        self.assertEqual(completion.object, "chat.completion")
        self.assertEqual(completion.model, "openclaw")
        self.assertEqual(len(completion.choices), 1)
        choice = completion.choices[0]
        self.assertEqual((choice.index, choice.finish_reason), (0, "stop"))
        self.assertEqual((choice.message.role, choice.message.content), ("assistant", "Hello there!"))
        usage = completion.usage
        self.assertEqual((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (11, 3, 14))
        self.assertIsInstance(completion.created, int)
        # The id is the run id of a real run on the gateway.
        self.assertEqual(self.gateway.runs.get(completion.id).status, STATUS_OK)

    @inlineCallbacks
    def test_model_is_echoed(self):
        completion = yield self.sdk(lambda c: c.chat.completions.create(model="openclaw/main", messages=HI))
        self.assertEqual(completion.model, "openclaw/main")
        self.assertEqual(self.gateway.runs.get(completion.id).agent_id, "main")

    @inlineCallbacks
    def test_streaming_with_usage(self):
        def work(client):
            stream = client.chat.completions.create(
                model="openclaw", messages=HI, stream=True, stream_options={"include_usage": True}
            )
            return list(stream)

        chunks = yield self.sdk(work)
        ids = {chunk.id for chunk in chunks}
        self.assertEqual(len(ids), 1)
        self.assertRegex(ids.pop(), rf"^chatcmpl_{UUID}$")
        self.assertTrue(all(chunk.object == "chat.completion.chunk" and chunk.model == "openclaw" for chunk in chunks))
        first = chunks[0].choices[0]
        self.assertEqual((first.delta.role, first.delta.content, first.finish_reason), ("assistant", None, None))
        content = [chunk.choices[0].delta.content for chunk in chunks[1:-2]]
        self.assertEqual(content, ["Hel", "lo", " there!"])
        self.assertTrue(all(chunk.choices[0].finish_reason is None for chunk in chunks[:-2]))
        final = chunks[-2].choices[0]
        self.assertEqual((final.finish_reason, final.delta.content), ("stop", None))
        usage_chunk = chunks[-1]
        self.assertEqual(usage_chunk.choices, [])
        usage = usage_chunk.usage
        self.assertEqual((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (11, 3, 14))

    @inlineCallbacks
    def test_streaming_without_usage_has_no_usage_chunk(self):
        chunks = yield self.sdk(lambda c: list(c.chat.completions.create(model="openclaw", messages=HI, stream=True)))
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")
        self.assertTrue(all(chunk.usage is None for chunk in chunks))
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), "Hello there!")

    @inlineCallbacks
    def test_streaming_upstream_error_raises_in_the_sdk(self):
        self.upstream.behaviour = Behaviour(mode="error", status=500)

        def work(client):
            received = []
            try:
                for chunk in client.chat.completions.create(model="openclaw", messages=HI, stream=True):
                    received.append(chunk)
            except openai.APIError as exc:
                return received, exc
            return received, None

        received, error = yield self.sdk(work)
        self.assertIsNotNone(error, "the SDK must see the in-stream error")
        self.assertIn("HTTP 500", error.message)
        self.assertEqual(received[0].choices[0].delta.role, "assistant")


class SdkResponsesTests(_GatewayTestBase):
    @inlineCallbacks
    def test_non_streaming(self):
        response = yield self.sdk(lambda c: c.responses.create(model="openclaw", input="hi"))
        self.assertRegex(response.id, rf"^resp_{UUID}$")
        self.assertEqual((response.object, response.status, response.model), ("response", "completed", "openclaw"))
        self.assertEqual(len(response.output), 1)
        item = response.output[0]
        self.assertEqual((item.type, item.role, item.status), ("message", "assistant", "completed"))
        self.assertRegex(item.id, rf"^msg_{UUID}$")
        self.assertEqual(item.content[0].type, "output_text")
        self.assertEqual(item.content[0].text, "Hello there!")
        self.assertEqual(response.output_text, "Hello there!")
        usage = response.usage
        self.assertEqual((usage.input_tokens, usage.output_tokens, usage.total_tokens), (11, 3, 14))
        self.assertIsNone(response.error)

    @inlineCallbacks
    def test_streaming_event_order(self):
        events = yield self.sdk(lambda c: list(c.responses.create(model="openclaw", input="hi", stream=True)))
        self.assertEqual([event.type for event in events], RESPONSE_STREAM_ORDER)
        created, in_progress = events[0].response, events[1].response
        self.assertEqual((created.status, created.output), ("in_progress", []))
        self.assertEqual(in_progress.id, created.id)
        self.assertEqual([e.delta for e in events if e.type == "response.output_text.delta"], ["Hel", "lo", " there!"])
        added = events[2].item
        self.assertEqual((added.type, added.role, added.status, added.content), ("message", "assistant", "in_progress", []))
        self.assertTrue(all(e.item_id == added.id for e in events[3:9]))
        self.assertEqual(events[7].text, "Hello there!")
        self.assertEqual(events[8].part.text, "Hello there!")
        done_item = events[9].item
        self.assertEqual((done_item.id, done_item.status, done_item.content[0].text), (added.id, "completed", "Hello there!"))
        completed = events[10].response
        self.assertEqual((completed.id, completed.status), (created.id, "completed"))
        self.assertEqual(completed.output[0].content[0].text, "Hello there!")
        self.assertEqual((completed.usage.input_tokens, completed.usage.output_tokens, completed.usage.total_tokens), (11, 3, 14))


class SdkModelsAndErrorsTests(_GatewayTestBase):
    @inlineCallbacks
    def test_models_list(self):
        models = yield self.sdk(lambda c: [(m.id, m.object, m.owned_by) for m in c.models.list()])
        self.assertEqual(
            models,
            [("openclaw", "model", "openclaw"), ("openclaw/default", "model", "openclaw"), ("openclaw/main", "model", "openclaw")],
        )

    @inlineCallbacks
    def test_models_retrieve(self):
        model = yield self.sdk(lambda c: c.models.retrieve("openclaw/main"))
        self.assertEqual((model.id, model.owned_by, model.created), ("openclaw/main", "openclaw", 0))

    @inlineCallbacks
    def test_wrong_api_key_is_authentication_error(self):
        error = yield self.assertFailure(
            self.sdk(lambda c: c.chat.completions.create(model="openclaw", messages=HI), api_key="wrong"),
            openai.AuthenticationError,
        )
        self.assertEqual(error.status_code, 401)
        self.assertEqual(error.body, {"message": "Unauthorized", "type": "unauthorized"})
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_wrong_api_key_on_responses_and_models(self):
        yield self.assertFailure(self.sdk(lambda c: c.responses.create(model="openclaw", input="hi"), api_key="x"), openai.AuthenticationError)
        yield self.assertFailure(self.sdk(lambda c: list(c.models.list()), api_key="x"), openai.AuthenticationError)

    @inlineCallbacks
    def test_unknown_agent_is_bad_request(self):
        error = yield self.assertFailure(
            self.sdk(lambda c: c.chat.completions.create(model="openclaw/nope", messages=HI)), openai.BadRequestError
        )
        self.assertEqual(error.status_code, 400)
        self.assertEqual(error.body["message"], "Unknown agent 'nope'.")
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_provider_model_name_is_bad_request(self):
        for call in (
            lambda c: c.chat.completions.create(model="gpt-4o", messages=HI),
            lambda c: c.responses.create(model="gpt-4o", input="hi"),
        ):
            error = yield self.assertFailure(self.sdk(call), openai.BadRequestError)
            self.assertEqual(error.body["message"], "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.")
            self.assertEqual(error.body["type"], "invalid_request_error")
        self.assertEqual(self.upstream.requests, [])


# ------------------------------------------------------------------------------------------------
# 2. Raw HTTP: enable flags, methods, auth, limits, validation
# ------------------------------------------------------------------------------------------------


class DisabledEndpointsTests(_GatewayTestBase):
    def config(self):
        return self.upstream.config()  # both endpoints off, as by default

    @inlineCallbacks
    def test_disabled_endpoints_are_plain_404_for_every_method(self):
        for method, path in (
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/chat/completions"),
            ("POST", "/v1/responses"),
            ("GET", "/v1/responses"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/openclaw"),
            ("POST", "/v1/models"),
        ):
            for token in (TOKEN, None):
                response, body = yield self.request(method, path, {"messages": HI} if method == "POST" else None, token=token)
                self.assertEqual((response.code, body), (404, b"Not Found"), (method, path, token))
                self.assertEqual(self.header(response, "Content-Type"), TEXT_UTF8)
                self.assertSecurityHeaders(response)
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_flags_are_read_on_every_request(self):
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 404)

        only_responses = merge(self.upstream.config(), {"gateway": {"http": {"endpoints": {"responses": {"enabled": True}}}}})
        self.patch(self.gateway, "current_config", lambda: only_responses)
        response, body = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200, body)
        self.assertEqual(json.loads(body)["object"], "list")
        response, body = yield self.responses()
        self.assertEqual((response.code, body["status"]), (200, "completed"))
        response, body = yield self.request("POST", "/v1/chat/completions", {"messages": HI})
        self.assertEqual((response.code, body), (404, b"Not Found"))

        only_chat = merge(self.upstream.config(), {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": True}}}}})
        self.patch(self.gateway, "current_config", lambda: only_chat)
        response, body = yield self.chat()
        self.assertEqual(response.code, 200)
        response, _ = yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "hi"})
        self.assertEqual(response.code, 404)

        # Anything but literal ``true`` is off.
        truthy = merge(self.upstream.config(), {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": "yes"}}}}})
        self.patch(self.gateway, "current_config", lambda: truthy)
        response, _ = yield self.request("POST", "/v1/chat/completions", {"messages": HI})
        self.assertEqual(response.code, 404)
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 404)


class MethodAndAuthTests(_GatewayTestBase):
    @inlineCallbacks
    def test_wrong_method_is_405_before_auth(self):
        for method, path, allow in (
            ("GET", "/v1/chat/completions", "POST"),
            ("PUT", "/v1/chat/completions", "POST"),
            ("GET", "/v1/responses", "POST"),
            ("DELETE", "/v1/responses", "POST"),
            ("POST", "/v1/models", "GET"),
            ("POST", "/v1/models/openclaw", "GET"),
        ):
            response, body = yield self.request(method, path, token=None)
            self.assertEqual((response.code, body), (405, b"Method Not Allowed"), (method, path))
            self.assertEqual(self.header(response, "Allow"), allow)
            self.assertEqual(self.header(response, "Content-Type"), TEXT_UTF8)
            self.assertSecurityHeaders(response)

    @inlineCallbacks
    def test_missing_or_wrong_token_is_401(self):
        for token in (None, "wrong", ""):
            for method, path, body in (
                ("POST", "/v1/chat/completions", {"messages": HI}),
                ("POST", "/v1/responses", {"model": "openclaw", "input": "hi"}),
                ("GET", "/v1/models", None),
                ("GET", "/v1/models/openclaw", None),
            ):
                response, content = yield self.request(method, path, body, token=token)
                self.assertEqual(response.code, 401, (token, path))
                self.assertEqual(content, b'{"error":{"message":"Unauthorized","type":"unauthorized"}}')
                self.assertEqual(self.header(response, "Content-Type"), JSON_UTF8)
                self.assertSecurityHeaders(response)
        # Basic auth with the right secret is still not a bearer token.
        response, content = yield self.request("GET", "/v1/models", token=None, headers={"Authorization": f"Basic {TOKEN}"})
        self.assertEqual((response.code, json.loads(content)), (401, UNAUTHORIZED))
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_loopback_is_exempt_from_the_lockout_by_default(self):
        for _ in range(12):
            response, _ = yield self.request("GET", "/v1/models", token="wrong")
            self.assertEqual(response.code, 401)
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_security_headers_on_every_response(self):
        results = [
            (yield self.chat()),
            (yield self.responses()),
            (yield self.request("GET", "/v1/models")),
            (yield self.request("GET", "/v1/models/openclaw%2Fnope")),
            (yield self.request("POST", "/v1/chat/completions", b"{not json")),
            (yield self.request("GET", "/v1/nothing-here")),
            (yield self.request("POST", "/v1/chat/completions", {"model": "openclaw", "messages": HI, "stream": True})),
            (yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "hi", "stream": True})),
        ]
        for response, _ in results:
            self.assertSecurityHeaders(response)

    @inlineCallbacks
    def test_streaming_headers(self):
        for path, body in (
            ("/v1/chat/completions", {"model": "openclaw", "messages": HI, "stream": True}),
            ("/v1/responses", {"model": "openclaw", "input": "hi", "stream": True}),
        ):
            response, content = yield self.request("POST", path, body)
            self.assertEqual(response.code, 200)
            self.assertEqual(self.header(response, "Content-Type"), "text/event-stream; charset=utf-8")
            self.assertEqual(self.header(response, "Cache-Control"), "no-cache")
            self.assertTrue(content.endswith(b"data: [DONE]\n\n"), content)

    @inlineCallbacks
    def test_chat_stream_frames_are_data_only(self):
        _response, content = yield self.request(
            "POST", "/v1/chat/completions", {"model": "openclaw", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
        )
        frames = sse_frames(content)
        self.assertTrue(all(frame["event"] is None for frame in frames), "chat completions streams have no event: lines")
        self.assertEqual(frames[-1]["data"], "[DONE]")
        chunks = [json.loads(frame["data"]) for frame in frames[:-1]]
        self.assertEqual(chunks[0]["choices"], [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
        self.assertEqual(chunks[-2]["choices"], [{"index": 0, "delta": {}, "finish_reason": "stop"}])
        self.assertEqual(chunks[-1]["usage"], {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14})
        self.assertEqual(chunks[-1]["choices"], [])

    @inlineCallbacks
    def test_responses_stream_frames_name_their_event(self):
        _response, content = yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "hi", "stream": True})
        frames = sse_frames(content)
        self.assertEqual(frames[-1], {"event": None, "data": "[DONE]"})
        names = [frame["event"] for frame in frames[:-1]]
        self.assertEqual(names, RESPONSE_STREAM_ORDER)
        self.assertEqual([json.loads(frame["data"])["type"] for frame in frames[:-1]], names)


class ScopeTests(_GatewayTestBase):
    """With ``auth.mode`` none the caller's ``x-openclaw-scopes`` are honoured; a bearer secret's are not."""

    overrides = {"auth": AuthSettings(mode="none")}

    @inlineCallbacks
    def test_no_secret_needed_and_default_scopes_are_the_owners(self):
        response, body = yield self.chat(token=None)
        self.assertEqual((response.code, body["choices"][0]["message"]["content"]), (200, "Hello there!"))
        response, _ = yield self.request("GET", "/v1/models", token=None)
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_missing_write_scope_is_403_with_ok_false(self):
        for path, body in (("/v1/chat/completions", {"messages": HI}), ("/v1/responses", {"model": "openclaw", "input": "hi"})):
            response, content = yield self.post_json(path, body, token=None, headers={"x-openclaw-scopes": "operator.read"})
            self.assertEqual(response.code, 403)
            self.assertEqual(
                content,
                {
                    "ok": False,
                    "error": {
                        "type": "forbidden",
                        "message": "missing scope: operator.write",
                        "details": {"code": "MISSING_SCOPE", "missingScope": "operator.write", "requiredScopes": ["operator.write"]},
                    },
                },
            )
        response, _ = yield self.request("GET", "/v1/models", token=None, headers={"x-openclaw-scopes": "operator.read"})
        self.assertEqual(response.code, 200)
        response, content = yield self.request("GET", "/v1/models", token=None, headers={"x-openclaw-scopes": "operator.pairing"})
        self.assertEqual((response.code, json.loads(content)["error"]["message"]), (403, "missing scope: operator.read"))
        self.assertEqual(self.upstream.requests, [])


class BearerScopeTests(_GatewayTestBase):
    @inlineCallbacks
    def test_shared_secret_ignores_scope_header(self):
        response, body = yield self.chat(headers={"x-openclaw-scopes": "operator.read"})
        self.assertEqual(response.code, 200, body)


class RateLimitTests(_GatewayTestBase):
    """Loopback is exempt by default; this gateway counts loopback failures like any other."""

    overrides = {"rate_limit_exempt_loopback": False}

    def setUp(self):
        self.clock = Clock()
        return super().setUp()

    @inlineCallbacks
    def test_429_after_ten_failures_then_lifted(self):
        for attempt in range(10):
            response, body = yield self.request("GET", "/v1/models", token=f"wrong-{attempt}")
            self.assertEqual((response.code, json.loads(body)), (401, UNAUTHORIZED), attempt)
        for method, path, body in (
            ("GET", "/v1/models", None),
            ("POST", "/v1/chat/completions", {"messages": HI}),
            ("POST", "/v1/responses", {"model": "openclaw", "input": "hi"}),
        ):
            # Even the right token is refused during the lockout.
            response, content = yield self.request(method, path, body)
            self.assertEqual(response.code, 429, path)
            self.assertEqual(
                json.loads(content),
                {"error": {"message": "Too many failed authentication attempts. Please try again later.", "type": "rate_limited"}},
            )
            self.assertEqual(self.header(response, "Retry-After"), "300")
            self.assertSecurityHeaders(response)
        # 405 is decided before auth, so it is not locked out.
        response, _ = yield self.request("GET", "/v1/chat/completions")
        self.assertEqual(response.code, 405)
        self.clock.advance(299)
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual((response.code, self.header(response, "Retry-After")), (429, "1"))
        self.clock.advance(1)
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_success_clears_the_count(self):
        for _ in range(9):
            response, _ = yield self.request("GET", "/v1/models", token="wrong")
            self.assertEqual(response.code, 401)
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200)
        for _ in range(9):
            response, _ = yield self.request("GET", "/v1/models", token="wrong")
            self.assertEqual(response.code, 401)
        response, _ = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200)


class BodyLimitTests(_GatewayTestBase):
    """The Site's body cap and body timeout, on a real socket."""

    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: setattr(self, "site", self.running.port.factory))
        return d

    def head(self, path: bytes = b"/v1/chat/completions", **headers: Any) -> bytes:
        lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Authorization: Bearer " + TOKEN.encode()]
        lines += [name.replace("_", "-").encode() + b": " + str(value).encode() for name, value in headers.items()]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def assertRawError(self, wire: bytes, status_line: str, message: str) -> None:
        status, headers, body = parse_wire(wire)
        self.assertEqual(status, status_line)
        self.assertEqual(json.loads(body), {"error": {"message": message, "type": "invalid_request_error"}})
        self.assertEqual(headers["content-type"], JSON_UTF8)
        self.assertEqual(headers["content-length"], str(len(body)))
        self.assertEqual(headers["connection"], "close")
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(headers[name.lower()], value)
        self.assertNotIn("server", headers)

    @inlineCallbacks
    def test_declared_length_over_the_cap_is_413_before_the_body(self):
        self.patch(self.site, "max_body_bytes", 1000)
        client = yield self.raw()
        client.transport.write(self.head(Content_Length=1001, Content_Type="application/json"))
        wire = yield client.lost  # answered and closed without the body ever being sent
        self.assertRawError(wire, "HTTP/1.1 413 Payload Too Large", "Payload too large")
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_length_at_the_cap_is_accepted(self):
        self.patch(self.site, "max_body_bytes", 1000)
        body = json.dumps({"model": "openclaw", "messages": HI}).encode()
        body += b" " * (1000 - len(body))
        response, content = yield self.request("POST", "/v1/chat/completions", body)
        self.assertEqual(response.code, 200, content)
        self.assertEqual(json.loads(content)["choices"][0]["message"]["content"], "Hello there!")

    @inlineCallbacks
    def test_chunked_body_over_the_cap_is_413(self):
        self.patch(self.site, "max_body_bytes", 1000)
        client = yield self.raw()
        client.transport.write(self.head(Transfer_Encoding="chunked", Content_Type="application/json"))
        client.transport.write(b"258\r\n" + b"x" * 600 + b"\r\n")
        client.transport.write(b"258\r\n" + b"x" * 600 + b"\r\n")
        wire = yield client.lost
        self.assertRawError(wire, "HTTP/1.1 413 Payload Too Large", "Payload too large")
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_chunked_body_under_the_cap_is_served(self):
        self.patch(self.site, "max_body_bytes", 1000)
        response, content = yield self.request("POST", "/v1/chat/completions", {"model": "openclaw", "messages": HI}, chunked=True)
        self.assertEqual(response.code, 200, content)

    @inlineCallbacks
    def test_agent_client_gets_413_for_a_large_body(self):
        self.patch(self.site, "max_body_bytes", 1000)
        response, content = yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "x" * 2000})
        self.assertEqual(response.code, 413)
        self.assertEqual(json.loads(content), {"error": {"message": "Payload too large", "type": "invalid_request_error"}})
        self.assertSecurityHeaders(response)

    @inlineCallbacks
    def test_body_that_stops_arriving_is_408(self):
        clock = Clock()
        self.patch(self.site, "reactor", clock)  # the site's timers; the sockets stay real
        client = yield self.raw()
        client.transport.write(self.head(Content_Length=100, Content_Type="application/json") + b'{"model":')

        def body_timer():
            return [call for call in clock.getDelayedCalls() if getattr(call.func, "__name__", "") == "_reject"]

        yield wait_until(lambda: body_timer())
        self.assertEqual([call.getTime() for call in body_timer()], [BODY_TIMEOUT_S])
        clock.advance(BODY_TIMEOUT_S - 0.001)
        self.assertEqual(client.received, b"")
        clock.advance(0.001)
        wire = yield client.lost
        self.assertRawError(wire, "HTTP/1.1 408 Request Timeout", "Request body timeout")
        self.assertEqual(self.upstream.requests, [])


class ValidationTests(_GatewayTestBase):
    @inlineCallbacks
    def test_invalid_json(self):
        for path in ("/v1/chat/completions", "/v1/responses"):
            response, content = yield self.request("POST", path, b'{"model": "openclaw",')
            body = json.loads(content)
            self.assertEqual(response.code, 400)
            self.assertEqual(body["error"]["type"], "invalid_request_error")
            self.assertTrue(body["error"]["message"])
            self.assertEqual(self.header(response, "Content-Type"), JSON_UTF8)

    @inlineCallbacks
    def test_body_that_is_not_an_object(self):
        response, content = yield self.request("POST", "/v1/chat/completions", b"[1, 2]")
        self.assertEqual((response.code, json.loads(content)["error"]["type"]), (400, "invalid_request_error"))

    @inlineCallbacks
    def test_empty_body_is_an_empty_object(self):
        response, body = yield self.post_json("/v1/chat/completions", b"  ")
        self.assertOpenAIError(response, body, 400, "messages: expected an array")
        response, body = yield self.post_json("/v1/responses", b"")
        self.assertEqual(response.code, 400)
        self.assertIn("model", body["error"]["message"])

    @inlineCallbacks
    def test_missing_user_message(self):
        for messages in ([], [{"role": "system", "content": "be nice"}], [{"role": "assistant", "content": "hello"}], [{"role": "user", "content": ""}]):
            response, body = yield self.chat({"messages": messages})
            self.assertOpenAIError(response, body, 400, "Missing user message in `messages`.")
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_sampling_validation(self):
        cases = [
            ({"temperature": 3}, "`temperature` must be between 0 and 2."),
            ({"temperature": -0.1}, "`temperature` must be between 0 and 2."),
            ({"temperature": "hot"}, "`temperature` must be between 0 and 2."),
            ({"top_p": 1.5}, "`top_p` must be between 0 and 1."),
            ({"frequency_penalty": 2.5}, "`frequency_penalty` must be between -2 and 2."),
            ({"presence_penalty": -3}, "`presence_penalty` must be between -2 and 2."),
            ({"seed": 1.5}, "`seed` must be an integer."),
            ({"max_tokens": 0}, "max_tokens must be a positive safe integer"),
            ({"max_tokens": 2**53}, "max_tokens must be a positive safe integer"),
            ({"max_completion_tokens": -1}, "max_completion_tokens must be a positive safe integer"),
            ({"max_completion_tokens": 10, "max_tokens": True}, "max_tokens must be a positive safe integer"),
            ({"stop": ["a", "b", "c", "d", "e"]}, "Invalid stop: stop supports at most 4 sequences"),
            ({"stop": ["a", ""]}, "Invalid stop: stop entries must be non-empty strings"),
            ({"stop": 5}, "Invalid stop: expected a string or an array of strings"),
            ({"response_format": {"type": "yaml"}}, "Invalid response_format: type must be text, json_object or json_schema"),
            ({"stream": "yes"}, "stream: expected a boolean"),
            ({"messages": "hi"}, "messages: expected an array"),
            ({"messages": [{"content": "hi"}]}, "messages.0.role: required"),
        ]
        for extra, message in cases:
            response, body = yield self.chat(extra)
            self.assertOpenAIError(response, body, 400, message)
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_tools_and_tool_choice_validation(self):
        tool = {"type": "function", "function": {"name": "lookup"}}
        for extra in (
            {"tool_choice": "sometimes"},
            {"tool_choice": {"type": "function", "function": {"name": "lookup"}}},  # no such tool declared
            {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            {"tools": [tool], "tool_choice": {"type": "other"}},
            {"tools": {"lookup": tool}},
            {"tools": [{"type": "retrieval"}]},
            {"tools": [{"type": "function", "function": {}}]},
        ):
            response, body = yield self.chat(extra)
            self.assertEqual(response.code, 400, extra)
            self.assertTrue(body["error"]["message"].startswith("Invalid tools/tool_choice: "), body)
        for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "lookup"}}):
            response, body = yield self.chat({"tools": [tool], "tool_choice": choice})
            self.assertEqual(response.code, 200, (choice, body))

    @inlineCallbacks
    def test_bad_model(self):
        for model in ("gpt-4o", "openclaw/", "openclaw/-x", 7, "agent:a:b"):
            response, body = yield self.chat({"model": model})
            self.assertOpenAIError(response, body, 400, "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.")
        response, body = yield self.chat({"model": "openclaw/nope"})
        self.assertOpenAIError(response, body, 400, "Unknown agent 'nope'.")

    @inlineCallbacks
    def test_model_aliases_accepted(self):
        for model in ("OpenClaw", "openclaw/default", "openclaw/MAIN", "openclaw:main", "agent:main"):
            response, body = yield self.chat({"model": model})
            self.assertEqual(response.code, 200, (model, body))
            self.assertEqual(body["model"], model)

    @inlineCallbacks
    def test_responses_schema_is_strict(self):
        response, body = yield self.responses({"frobnicate": True})
        self.assertEqual(response.code, 400)
        self.assertIn("frobnicate", body["error"]["message"])
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        for extra in (
            {"temperature": 3},
            {"max_output_tokens": 0},
            {"text": {"format": {"type": "json_object"}}},
            {"input": [{"type": "message", "role": "user", "content": "hi", "extra": 1}]},
            {"input": 5},
        ):
            response, body = yield self.responses(extra)
            self.assertEqual(response.code, 400, (extra, body))
        response, body = yield self.post_json("/v1/responses", {"input": "hi"})
        self.assertEqual(response.code, 400)
        self.assertIn("model", body["error"]["message"])
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_responses_missing_user_message(self):
        for value in ("   ", [], [{"type": "message", "role": "system", "content": "rules"}]):
            response, body = yield self.responses({"input": value})
            self.assertOpenAIError(response, body, 400, "Missing user message in `input`.")


class ModelsTests(_GatewayTestBase):
    @inlineCallbacks
    def test_list_body(self):
        response, content = yield self.request("GET", "/v1/models")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            content,
            b'{"object":"list","data":[{"id":"openclaw","object":"model","created":0,"owned_by":"openclaw","permission":[]},'
            b'{"id":"openclaw/default","object":"model","created":0,"owned_by":"openclaw","permission":[]},'
            b'{"id":"openclaw/main","object":"model","created":0,"owned_by":"openclaw","permission":[]}]}',
        )
        self.assertEqual(self.header(response, "Content-Type"), JSON_UTF8)

    @inlineCallbacks
    def test_get_one(self):
        for raw, model_id in ((b"openclaw%2Fmain", "openclaw/main"), (b"openclaw", "openclaw"), (b"openclaw%2Fdefault", "openclaw/default")):
            response, content = yield self.request("GET", b"/v1/models/" + raw)
            self.assertEqual(response.code, 200, content)
            self.assertEqual(json.loads(content), {"id": model_id, "object": "model", "created": 0, "owned_by": "openclaw", "permission": []})

    @inlineCallbacks
    def test_unknown_agent_is_404(self):
        response, content = yield self.request("GET", "/v1/models/openclaw%2Fnope")
        self.assertOpenAIError(response, json.loads(content), 404, "Model 'openclaw/nope' not found.")

    @inlineCallbacks
    def test_bad_encoding_is_400(self):
        for raw in (b"%E0%A4", b"%zz", b"openclaw%2", b"%FF"):
            response, content = yield self.request("GET", b"/v1/models/" + raw)
            self.assertOpenAIError(response, json.loads(content), 400, "Invalid model id encoding.")

    @inlineCallbacks
    def test_non_agent_id_is_400(self):
        for raw in (b"gpt-4o", b"openai%2Fgpt-4o", b"openclaw%2F"):
            response, content = yield self.request("GET", b"/v1/models/" + raw)
            self.assertOpenAIError(response, json.loads(content), 400, "Invalid model id.")


# ------------------------------------------------------------------------------------------------
# 3. Agent and session routing
# ------------------------------------------------------------------------------------------------


class RoutingTests(_GatewayTestBase):
    def config(self):
        return merge(super().config(), {"agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]}})

    @inlineCallbacks
    def test_user_gives_session_continuity(self):
        _, first = yield self.chat({"user": "Conv:ABC", "messages": [{"role": "user", "content": "one"}]})
        _, second = yield self.chat({"user": "Conv:ABC", "messages": [{"role": "user", "content": "two"}]})
        key = "agent:main:openai-user:conv:abc"
        self.assertEqual((self.session_of(first["id"]), self.session_of(second["id"])), (key, key))
        self.assertEqual(
            self.transcript(key),
            [("user", "one"), ("assistant", "Hello there!"), ("user", "two"), ("assistant", "Hello there!")],
        )
        # The second turn's context came from the session's transcript.
        self.assertEqual(
            self.upstream.requests[1]["body"]["messages"],
            [{"role": "user", "content": "one"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "two"}],
        )

    @inlineCallbacks
    def test_user_session_is_visible_over_websocket(self):
        client = yield self.operator()
        yield self.chat({"user": "Conv:ABC"})
        listed = yield client.request("sessions.list", {})
        self.assertTrue(listed["ok"], listed)
        keys = [row["key"] for row in listed["payload"]["sessions"]]
        self.assertIn("agent:main:openai-user:conv:abc", keys)
        history = yield client.request("chat.history", {"sessionKey": "agent:main:openai-user:conv:abc"})
        self.assertEqual([m["role"] for m in history["payload"]["messages"]], ["user", "assistant"])

    @inlineCallbacks
    def test_without_user_every_call_is_a_fresh_session(self):
        _, first = yield self.chat()
        _, second = yield self.chat()
        keys = [self.session_of(first["id"]), self.session_of(second["id"])]
        for key in keys:
            self.assertRegex(key, rf"^agent:main:openai:{UUID}$")
        self.assertNotEqual(keys[0], keys[1])
        self.assertEqual(self.transcript(keys[1]), [("user", "hi"), ("assistant", "Hello there!")])
        self.assertEqual(self.upstream.requests[1]["body"]["messages"], [{"role": "user", "content": "hi"}])

    @inlineCallbacks
    def test_responses_session_keys(self):
        _, first = yield self.responses({"user": "Conv:ABC"})
        self.assertEqual(self.session_of(first["id"]), "agent:main:openresponses-user:conv:abc")
        _, second = yield self.responses()
        self.assertRegex(self.session_of(second["id"]), rf"^agent:main:openresponses:{UUID}$")

    @inlineCallbacks
    def test_session_key_header(self):
        _, body = yield self.chat(headers={"x-openclaw-session-key": " main "})
        self.assertEqual(self.session_of(body["id"]), "agent:main:main")
        _, body = yield self.chat({"user": "ignored"}, headers={"x-openclaw-session-key": "main"})
        self.assertEqual(self.session_of(body["id"]), "agent:main:main")
        self.assertEqual(
            self.transcript("agent:main:main"),
            [("user", "hi"), ("assistant", "Hello there!"), ("user", "hi"), ("assistant", "Hello there!")],
        )
        _, body = yield self.responses(headers={"x-openclaw-session-key": "main"})
        self.assertEqual(self.session_of(body["id"]), "agent:main:main")

    @inlineCallbacks
    def test_reserved_session_keys_are_refused(self):
        message = "`x-openclaw-session-key` cannot use reserved internal session namespaces."
        for key in ("cron:x", "CRON:x", "subagent:a", "acp:z", "agent:main:subagent:x", "agent:ops:cron:nightly"):
            response, body = yield self.chat(headers={"x-openclaw-session-key": key})
            self.assertOpenAIError(response, body, 400, message)
            response, body = yield self.responses(headers={"x-openclaw-session-key": key})
            self.assertOpenAIError(response, body, 400, message)
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_overlong_session_key_or_user_is_400(self):
        """Bodies may be 20 MiB; a session key built from them may not (the store caps keys)."""
        response, body = yield self.chat(headers={"x-openclaw-session-key": "k" * 513})
        self.assertOpenAIError(response, body, 400, "Invalid `x-openclaw-session-key`: session key is longer than 512 characters")
        response, body = yield self.chat(body={"model": "openclaw", "user": "u" * 513, "messages": [{"role": "user", "content": "hi"}]})
        self.assertOpenAIError(response, body, 400, "`user` is longer than 512 characters.")
        response, body = yield self.responses(body={"model": "openclaw", "user": "u" * 513, "input": "hi"})
        self.assertOpenAIError(response, body, 400, "`user` is longer than 512 characters.")
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_malformed_session_key_is_400_not_500(self):
        for key in ("agent:", "agent:main", "agent::x"):
            response, body = yield self.chat(headers={"x-openclaw-session-key": key})
            self.assertEqual(response.code, 400, (key, body))
            self.assertEqual(body["error"]["type"], "invalid_request_error")
            response, body = yield self.responses(headers={"x-openclaw-session-key": key})
            self.assertEqual(response.code, 400, (key, body))
        self.assertEqual(self.upstream.requests, [])

    @inlineCallbacks
    def test_agent_from_model_and_header(self):
        _, body = yield self.chat({"model": "openclaw/ops"})
        run = self.gateway.runs.get(body["id"])
        self.assertEqual(run.agent_id, "ops")
        self.assertRegex(run.session_key, rf"^agent:ops:openai:{UUID}$")
        # The header wins over the model.
        for name in ("x-openclaw-agent-id", "x-openclaw-agent"):
            _, body = yield self.chat({"model": "openclaw/main"}, headers={name: "ops"})
            self.assertEqual(body["model"], "openclaw/main")
            self.assertEqual(self.gateway.runs.get(body["id"]).agent_id, "ops")
        _, body = yield self.responses({"model": "openclaw", "user": "u"}, headers={"x-openclaw-agent-id": "OPS"})
        self.assertEqual(self.session_of(body["id"]), "agent:ops:openresponses-user:u")
        _, body = yield self.chat(headers={"x-openclaw-agent-id": "ops", "x-openclaw-session-key": "main"})
        self.assertEqual(self.session_of(body["id"]), "agent:ops:main")

    @inlineCallbacks
    def test_unknown_agent_header(self):
        for value in ("nope", "bad agent!"):
            response, body = yield self.chat(headers={"x-openclaw-agent-id": value})
            self.assertOpenAIError(response, body, 400, f"Unknown agent '{value}'.")
        # ``model`` is still validated when the header overrides it.
        response, body = yield self.chat({"model": "gpt-4o"}, headers={"x-openclaw-agent-id": "ops"})
        self.assertOpenAIError(response, body, 400, "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.")

    @inlineCallbacks
    def test_models_list_names_every_agent(self):
        _response, content = yield self.request("GET", "/v1/models")
        ids = [model["id"] for model in json.loads(content)["data"]]
        self.assertEqual(ids, ["openclaw", "openclaw/default", "openclaw/main", "openclaw/ops"])

    @inlineCallbacks
    def test_request_history_is_the_context(self):
        messages = [
            {"role": "system", "content": "S1"},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "developer", "content": [{"type": "text", "text": "D1"}]},
            {"role": "user", "content": [{"type": "text", "text": "q2"}, {"type": "input_text", "text": "more"}]},
        ]
        response, body = yield self.chat({"messages": messages, "user": "ctx"})
        self.assertEqual(response.code, 200, body)
        self.assertEqual(
            self.upstream.requests[-1]["body"]["messages"],
            [
                {"role": "system", "content": "S1\n\nD1"},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2\nmore"},
            ],
        )
        # Only the active turn (and the answer) go into the session's transcript.
        self.assertEqual(self.transcript("agent:main:openai-user:ctx"), [("user", "q2\nmore"), ("assistant", "Hello there!")])

    @inlineCallbacks
    def test_responses_input_items_and_instructions(self):
        body = {
            "instructions": "Be brief.",
            "input": [
                {"type": "message", "role": "developer", "content": "D1"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q1"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a1"}]},
                {"type": "message", "role": "user", "content": "q2"},
            ],
        }
        response, result = yield self.responses(body)
        self.assertEqual(response.code, 200, result)
        self.assertEqual(
            self.upstream.requests[-1]["body"]["messages"],
            [
                {"role": "system", "content": "Be brief.\n\nD1"},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"},
            ],
        )

    @inlineCallbacks
    def test_sampling_options_reach_the_upstream(self):
        yield self.chat({"temperature": 0.5, "max_tokens": 7, "top_p": 0.9, "stop": ["END"], "seed": 42, "presence_penalty": 0.5})
        sent = self.upstream.requests[-1]["body"]
        self.assertEqual(
            {name: sent.get(name) for name in ("temperature", "max_tokens", "top_p", "stop", "seed", "presence_penalty")},
            {"temperature": 0.5, "max_tokens": 7, "top_p": 0.9, "stop": ["END"], "seed": 42, "presence_penalty": 0.5},
        )
        # max_completion_tokens wins over max_tokens.
        yield self.chat({"max_completion_tokens": 5, "max_tokens": 9})
        self.assertEqual(self.upstream.requests[-1]["body"]["max_tokens"], 5)
        yield self.responses({"max_output_tokens": 12, "temperature": 0.25})
        sent = self.upstream.requests[-1]["body"]
        self.assertEqual((sent["max_tokens"], sent["temperature"]), (12, 0.25))
        # Without options nothing is invented.
        yield self.chat()
        sent = self.upstream.requests[-1]["body"]
        self.assertNotIn("temperature", sent)
        self.assertNotIn("stop", sent)

    @inlineCallbacks
    def test_previous_response_id_continues_the_session(self):
        _, first = yield self.responses({"input": "one"})
        _, second = yield self.responses({"input": "two", "previous_response_id": first["id"]})
        key = self.session_of(first["id"])
        self.assertRegex(key, rf"^agent:main:openresponses:{UUID}$")
        self.assertEqual(self.session_of(second["id"]), key)
        self.assertEqual(
            self.upstream.requests[1]["body"]["messages"],
            [{"role": "user", "content": "one"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "two"}],
        )
        # Chained again from the second response.
        _, third = yield self.responses({"input": "three", "previous_response_id": second["id"]})
        self.assertEqual(self.session_of(third["id"]), key)

    @inlineCallbacks
    def test_previous_response_id_needs_the_same_agent_and_session_header(self):
        _, first = yield self.responses({"input": "one"})
        key = self.session_of(first["id"])
        _, other_agent = yield self.responses({"model": "openclaw/ops", "previous_response_id": first["id"]})
        self.assertNotEqual(self.session_of(other_agent["id"]), key)
        self.assertTrue(self.session_of(other_agent["id"]).startswith("agent:ops:openresponses:"))
        _, unknown = yield self.responses({"previous_response_id": "resp_" + str(uuid.uuid4())})
        self.assertNotEqual(self.session_of(unknown["id"]), key)

    @inlineCallbacks
    def test_previous_response_id_after_a_streamed_response(self):
        _response, content = yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "one", "stream": True})
        created = json.loads(sse_frames(content)[0]["data"])["response"]["id"]
        _, second = yield self.responses({"input": "two", "previous_response_id": created})
        self.assertEqual(self.session_of(second["id"]), self.session_of(created))


# ------------------------------------------------------------------------------------------------
# 4. The same run path as the WebSocket
# ------------------------------------------------------------------------------------------------


class SameRunPathTests(_GatewayTestBase):
    @inlineCallbacks
    def test_websocket_operator_sees_the_http_run(self):
        client = yield self.operator()
        _, body = yield self.chat({"user": "watch"})
        run_id = body["id"]
        frames = yield run_events(client, run_id, is_chat("final", run_id))
        final = payloads(frames, "chat")[-1]
        self.assertEqual((final["runId"], final["sessionKey"], final["agentId"]), (run_id, "agent:main:openai-user:watch", "main"))
        self.assertEqual(final["message"]["content"], [{"type": "text", "text": "Hello there!"}])
        lifecycle = [p["data"]["phase"] for p in payloads(frames, "agent") if p["stream"] == "lifecycle"]
        self.assertEqual(lifecycle[0], "start")
        self.assertEqual(lifecycle[-1], "end")
        assistant = [p["data"]["delta"] for p in payloads(frames, "agent") if p["stream"] == "assistant"]
        self.assertEqual((assistant[0], "".join(assistant)), ("Hel", "Hello there!"))

    @inlineCallbacks
    def test_websocket_operator_sees_a_streamed_responses_run(self):
        client = yield self.operator()
        _, content = yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "hi", "stream": True})
        run_id = json.loads(sse_frames(content)[0]["data"])["response"]["id"]
        frames = yield run_events(client, run_id, is_chat("final", run_id))
        self.assertTrue(any(is_lifecycle("end", run_id)(frame) for frame in frames))

    @inlineCallbacks
    def test_http_request_queues_behind_a_websocket_run_in_the_same_session(self):
        """One run at a time per session, whichever door the message came in by."""
        ws = yield self.operator()
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        response = yield ws.request("chat.send", {"sessionKey": "main", "message": "first", "idempotencyKey": "ws-1"})
        self.assertTrue(response["ok"], response)
        yield run_events(ws, "ws-1", is_chat("delta", "ws-1"))
        self.upstream.behaviour = Behaviour()
        client = yield self.raw()
        body = {"model": "openclaw", "messages": [{"role": "user", "content": "second"}], "stream": True}
        client.transport.write(self.request_bytes(body, session_key="main", close=True))
        received = yield client.when(lambda data: b'"role":"assistant"' in data)  # the stream opens at once
        run_id = re.search(rb"chatcmpl_[0-9a-f-]{36}", received).group().decode()
        self.assertEqual((self.gateway.runs.get(run_id).status, self.gateway.runs.queued_count), ("queued", 1))
        self.assertEqual(len(self.upstream.requests), 1)
        aborted = yield ws.request("chat.abort", {"sessionKey": "main", "runId": "ws-1"})
        self.assertEqual(aborted["payload"]["runIds"], ["ws-1"])
        wire = yield client.lost  # the answer streams, then the server closes as asked
        self.assertIn(b'"delta":{"content":" there!"}', wire)
        self.assertIn(b"data: [DONE]", wire)
        self.assertEqual(self.gateway.runs.get(run_id).status, STATUS_OK)
        self.assertEqual(self.upstream.requests[-1]["body"]["messages"][-1], {"role": "user", "content": "second"})
        self.assertEqual(
            self.transcript("agent:main:main"),
            [("user", "first"), ("assistant", "Hel"), ("user", "second"), ("assistant", "Hello there!")],
        )


# ------------------------------------------------------------------------------------------------
# 5. A client that goes away aborts its run
# ------------------------------------------------------------------------------------------------


class DisconnectTests(_GatewayTestBase):
    @inlineCallbacks
    def assertAbortedByDisconnect(self, ws, run_id: str):
        yield self.upstream.open_requests.when(lambda requests: not requests)
        frames = yield run_events(ws, run_id, is_chat("aborted", run_id))
        aborted = payloads(frames, "chat")[-1]
        self.assertEqual((aborted["state"], aborted["stopReason"]), ("aborted", "aborted"))
        end = [p["data"] for p in payloads(frames, "agent") if p["stream"] == "lifecycle"][-1]
        self.assertEqual((end["phase"], end["aborted"]), ("end", True))
        yield wait_until(lambda: self.gateway.runs.active_count == 0)
        run = self.gateway.runs.get(run_id)
        self.assertEqual(run.status, STATUS_ABORTED)
        self.assertEqual(run.text, "Hel")
        self.assertEqual(self.transcript(run.session_key), [("user", "hi"), ("assistant", "Hel")])

    @inlineCallbacks
    def test_streaming_client_disconnect_aborts_the_run(self):
        ws = yield self.operator()
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        client = yield self.raw()
        client.transport.write(self.request_bytes({"model": "openclaw", "messages": HI, "stream": True}))
        received = yield client.when(lambda data: b'"delta":{"content":"Hel"}' in data)
        self.assertTrue(received.startswith(b"HTTP/1.1 200 OK\r\n"), received)
        run_id = re.search(rb"chatcmpl_[0-9a-f-]{36}", received).group().decode()
        self.assertEqual(len(self.upstream.open_requests), 1)
        client.transport.loseConnection()
        yield client.lost
        yield self.assertAbortedByDisconnect(ws, run_id)

    @inlineCallbacks
    def test_streaming_responses_client_disconnect_aborts_the_run(self):
        ws = yield self.operator()
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        client = yield self.raw()
        client.transport.write(self.request_bytes({"model": "openclaw", "input": "hi", "stream": True}, b"/v1/responses"))
        received = yield client.when(lambda data: b'"delta":"Hel"' in data)
        run_id = re.search(rb"resp_[0-9a-f-]{36}", received).group().decode()
        client.transport.abortConnection()
        yield client.lost
        yield self.assertAbortedByDisconnect(ws, run_id)

    @inlineCallbacks
    def test_non_streaming_client_disconnect_aborts_the_run(self):
        ws = yield self.operator()
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        client = yield self.raw()
        client.transport.write(self.request_bytes({"model": "openclaw", "messages": HI}))
        delta = yield ws.next_matching(is_chat("delta"))
        run_id = delta["payload"]["runId"]
        self.assertTrue(run_id.startswith("chatcmpl_"), run_id)
        self.assertEqual(client.received, b"", "nothing is written before the answer is complete")
        client.transport.loseConnection()
        received = yield client.lost
        self.assertEqual(received, b"")
        yield self.assertAbortedByDisconnect(ws, run_id)

    @inlineCallbacks
    def assertDisconnectClosesTheWaitingUpstream(self, path: bytes, body: dict[str, Any]):
        """The upstream has the request but no headers went back yet when the client leaves."""
        self.upstream.behaviour = Behaviour(mode="silent")
        client = yield self.raw()
        client.transport.write(self.request_bytes(body, path))
        yield self.upstream.open_requests.when(bool)
        self.assertEqual(len(self.upstream.connections), 1)
        client.transport.loseConnection()
        yield client.lost
        yield self.upstream.connections.when(lambda connections: not connections)
        yield wait_until(lambda: self.gateway.runs.active_count == 0)

    def test_chat_completions_client_leaving_before_the_upstream_answers(self):
        return self.assertDisconnectClosesTheWaitingUpstream(b"/v1/chat/completions", {"model": "openclaw", "messages": HI})

    def test_streaming_chat_completions_client_leaving_before_the_upstream_answers(self):
        body = {"model": "openclaw", "messages": HI, "stream": True}
        return self.assertDisconnectClosesTheWaitingUpstream(b"/v1/chat/completions", body)

    def test_responses_client_leaving_before_the_upstream_answers(self):
        return self.assertDisconnectClosesTheWaitingUpstream(b"/v1/responses", {"model": "openclaw", "input": "hi"})

    def test_streaming_responses_client_leaving_before_the_upstream_answers(self):
        body = {"model": "openclaw", "input": "hi", "stream": True}
        return self.assertDisconnectClosesTheWaitingUpstream(b"/v1/responses", body)

    @inlineCallbacks
    def test_queued_http_run_is_dropped_when_its_client_leaves(self):
        ws = yield self.operator()
        self.upstream.behaviour = Behaviour(mode="hang-after-first")
        body = {"model": "openclaw", "messages": HI, "stream": True}
        first = yield self.raw()
        first.transport.write(self.request_bytes(body, session_key="main"))
        yield first.when(lambda data: b'"content":"Hel"' in data)
        second = yield self.raw()
        second.transport.write(self.request_bytes(body, session_key="main"))
        received = yield second.when(lambda data: b'"role":"assistant"' in data)  # the stream opens at once
        queued_id = re.search(rb"chatcmpl_[0-9a-f-]{36}", received).group().decode()
        self.assertEqual(self.gateway.runs.queued_count, 1)
        second.transport.loseConnection()
        yield second.lost
        frames = yield run_events(ws, queued_id, is_chat("aborted", queued_id))
        self.assertEqual(payloads(frames, "chat")[-1]["state"], "aborted")
        self.assertEqual(self.gateway.runs.get(queued_id).status, STATUS_ABORTED)
        self.assertEqual(self.gateway.runs.queued_count, 0)
        # The first run is untouched and still streaming from the upstream.
        self.assertEqual((self.gateway.runs.active_count, len(self.upstream.open_requests)), (1, 1))
        self.assertEqual(len(self.upstream.requests), 1)
        first.transport.loseConnection()
        yield first.lost
        yield self.upstream.open_requests.when(lambda requests: not requests)
        yield wait_until(lambda: self.gateway.runs.active_count == 0)
        self.assertEqual(len(self.upstream.requests), 1, "the dropped run never reached the upstream")


class KleinCancellationTests(_GatewayTestBase):
    """A disconnect reaches the run through Klein's own cancellation: the Deferred a ``/v1`` run
    route returns is cancelled when its request's connection is lost, and cancelling it aborts
    the run, which closes the upstream request at once. The client side here is in memory, so
    the test itself calls ``connectionLost`` (or ``cancel``); the upstream is a real socket."""

    ROUTES = {b"/v1/chat/completions": {"model": "openclaw", "messages": HI}, b"/v1/responses": {"model": "openclaw", "input": "hi"}}

    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: setattr(self.upstream, "behaviour", Behaviour(mode="hang-after-first")))
        return d

    def in_memory_connection(self) -> tuple[Any, StringTransport]:
        """A connection to the gateway's own Site (its timers on a Clock), with no socket."""
        site = self.running.port.factory
        self.patch(site, "reactor", Clock())
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = site.buildProtocol(peer)
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", self.port), peerAddress=peer)
        channel.makeConnection(transport)
        return channel, transport

    def route_request(self, path: bytes, body: dict[str, Any]) -> Request:
        """A ``Request`` as the Site would hand it to Klein, for calling a route method directly."""
        channel = HTTPChannel()
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
        channel.makeConnection(transport)
        request = Request(channel, False)
        request.method, request.uri, request.path, request.clientproto = b"POST", path, path, b"HTTP/1.1"
        request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + TOKEN.encode()])
        request.content = BytesIO(json.dumps(body).encode())
        return request

    @inlineCallbacks
    def first_delta(self, ws: Any):
        """The run's id, once "Hel" has streamed from the upstream (which then hangs)."""
        delta = yield ws.next_matching(is_chat("delta"))
        self.assertEqual(len(self.upstream.open_requests), 1)
        return delta["payload"]["runId"]

    @inlineCallbacks
    def assertAbortedAndUpstreamClosed(self, run_id: str):
        yield self.upstream.connections.when(lambda connections: not connections)
        yield self.upstream.open_requests.when(lambda requests: not requests)
        yield wait_until(lambda: self.gateway.runs.active_count == 0)
        run = self.gateway.runs.get(run_id)
        self.assertEqual((run.status, run.abort_reason, run.text), (STATUS_ABORTED, "client-disconnected", "Hel"))

    @inlineCallbacks
    def assertConnectionLossAborts(self, path: bytes, stream: bool):
        ws = yield self.operator()
        channel, transport = self.in_memory_connection()
        channel.dataReceived(self.request_bytes({**self.ROUTES[path], "stream": stream}, path))
        run_id = yield self.first_delta(ws)
        written = transport.value()
        self.assertEqual(b'Hel"' in written, stream)
        channel.connectionLost(Failure(ConnectionDone()))
        yield self.assertAbortedAndUpstreamClosed(run_id)
        self.assertEqual(transport.value(), written, "nothing is written after the loss")
        if not stream:
            self.assertEqual(written, b"", "a JSON answer is written only once the run has ended")

    def test_connection_lost_aborts_chat_completion(self):
        return self.assertConnectionLossAborts(b"/v1/chat/completions", stream=False)

    def test_connection_lost_aborts_streamed_chat_completion(self):
        return self.assertConnectionLossAborts(b"/v1/chat/completions", stream=True)

    def test_connection_lost_aborts_response(self):
        return self.assertConnectionLossAborts(b"/v1/responses", stream=False)

    def test_connection_lost_aborts_streamed_response(self):
        return self.assertConnectionLossAborts(b"/v1/responses", stream=True)

    @inlineCallbacks
    def assertCancelAborts(self, path: bytes, stream: bool):
        """Cancelling the route's Deferred alone (no connection loss) is enough to abort."""
        ws = yield self.operator()
        request = self.route_request(path, {**self.ROUTES[path], "stream": stream})
        app = GatewayHttpApp(self.gateway)
        route = app.chat_completions if path == b"/v1/chat/completions" else app.responses
        answer = route(request)
        run_id = yield self.first_delta(ws)
        self.assertNoResult(answer)
        answer.cancel()
        self.failureResultOf(answer, CancelledError)
        yield self.assertAbortedAndUpstreamClosed(run_id)
        self.assertFalse(request.finished)

    def test_cancel_aborts_chat_completion(self):
        return self.assertCancelAborts(b"/v1/chat/completions", stream=False)

    def test_cancel_aborts_streamed_chat_completion(self):
        return self.assertCancelAborts(b"/v1/chat/completions", stream=True)

    def test_cancel_aborts_response(self):
        return self.assertCancelAborts(b"/v1/responses", stream=False)

    def test_cancel_aborts_streamed_response(self):
        return self.assertCancelAborts(b"/v1/responses", stream=True)


class SSEWriterTests(SynchronousTestCase):
    """The writer under Klein, on a real ``Request``: the route returns ``finished``. While it is
    pending Klein leaves the request alone; when the connection goes, Klein cancels it (and the
    writer writes no more); when it fires, the writer has finished the request itself."""

    def setUp(self) -> None:
        self.open()

    def open(self, **writer_options: Any) -> None:
        """A request for the route, on a connection of its own; the route has run when this returns."""
        self.writers: list[tuple[SSEWriter, Any]] = []
        self.writer_options = writer_options
        app = Klein()
        app.route("/stream")(self.stream)
        site = Site(app.resource(), reactor=Clock())
        self.channel = site.buildProtocol(None)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.writer, self.request = self.writers[0]
        self.lost: list[Any] = []
        self.request.notifyFinish().addErrback(self.lost.append)

    def stream(self, request: Any) -> Deferred:
        writer = SSEWriter(request, **self.writer_options)
        writer.start()
        self.writers.append((writer, request))
        return writer.finished

    def drop(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))

    def test_disconnect_cancels_the_route_deferred(self):
        writer = self.writer
        writer.data({"n": 1})
        writer.stopProducing()  # what the transport does first when the connection goes
        self.assertFalse(writer.finished.called, "the request does not know yet; Klein would finish it")
        self.drop()
        self.assertTrue(writer.finished.called, "Klein cancelled it")
        self.assertEqual(len(self.lost), 1)
        self.assertFalse(self.request.finished)
        writer.data({"n": 2})
        writer.done()  # the run ending later writes nothing and finishes nothing
        self.assertNotIn(b'"n":2', self.transport.value())
        self.assertFalse(self.request.finished)
        self.assertEqual(self.flushLoggedErrors(), [], "a cancelled route is not an error")

    def test_normal_end(self):
        writer = self.writer
        writer.data({"n": 1}, event="e")
        self.assertFalse(self.request.finished, "Klein does not finish the request while the route's Deferred is pending")
        writer.done()
        self.assertTrue(writer.finished.called)
        self.assertTrue(self.request.finished)
        self.assertIsNone(self.request.producer)
        wire = self.transport.value()
        self.assertIn(b"event: e\ndata: {\"n\":1}\n\n", wire)
        self.assertTrue(wire.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), wire)
        self.assertEqual(self.lost, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_paused_frames_wait_then_flush(self):
        writer = self.writer
        before = self.transport.value()
        writer.pauseProducing()
        writer.data({"n": 1})
        writer.done()
        self.assertEqual(self.transport.value(), before)
        self.assertFalse(writer.finished.called)
        writer.resumeProducing()
        self.assertIn(b'data: {"n":1}', self.transport.value())
        self.assertTrue(self.request.finished)
        self.assertTrue(writer.finished.called)

    def test_frames_waiting_when_the_client_goes_are_dropped(self):
        writer = self.writer
        writer.pauseProducing()
        writer.data({"n": 1})
        writer.done()
        self.drop()
        self.assertTrue(writer.finished.called)
        writer.resumeProducing()
        self.assertNotIn(b'"n":1', self.transport.value())
        self.assertFalse(self.request.finished)

    def test_overflow_drops_the_connection(self):
        self.open(max_pending=64)
        writer = self.writer
        writer.pauseProducing()
        writer.data({"text": "x" * 32})
        self.assertFalse(self.transport.disconnecting)
        writer.data({"text": "x" * 32})
        self.assertTrue(self.transport.disconnecting)
        writer.data({"text": "more"})
        writer.resumeProducing()
        self.assertNotIn(b"more", self.transport.value())
        self.assertFalse(writer.finished.called, "only the request hearing of the loss ends it")
        self.drop()
        self.assertTrue(writer.finished.called)
        self.assertFalse(self.request.finished)


# ------------------------------------------------------------------------------------------------
# 6. Upstream failures
# ------------------------------------------------------------------------------------------------


class UpstreamFailureTests(_GatewayTestBase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: setattr(self.upstream, "behaviour", Behaviour(mode="error", status=500)))
        return d

    @inlineCallbacks
    def test_chat_non_streaming_is_500_api_error(self):
        response, body = yield self.chat()
        self.assertEqual(response.code, 500)
        self.assertEqual(set(body), {"error"})
        self.assertEqual(body["error"]["type"], "api_error")
        self.assertIn("HTTP 500", body["error"]["message"])
        self.assertIn("upstream says 500", body["error"]["message"])
        self.assertEqual(self.header(response, "Content-Type"), JSON_UTF8)
        self.assertSecurityHeaders(response)

    @inlineCallbacks
    def test_chat_streaming_error_frame_then_done(self):
        response, content = yield self.request("POST", "/v1/chat/completions", {"model": "openclaw", "messages": HI, "stream": True})
        self.assertEqual(response.code, 200)
        frames = sse_frames(content)
        self.assertEqual([frame["event"] for frame in frames], [None, None, None])
        self.assertEqual(json.loads(frames[0]["data"])["choices"][0]["delta"], {"role": "assistant"})
        error = json.loads(frames[1]["data"])
        self.assertEqual(set(error), {"error"})
        self.assertEqual(error["error"]["type"], "api_error")
        self.assertIn("HTTP 500", error["error"]["message"])
        self.assertEqual(frames[2]["data"], "[DONE]")

    @inlineCallbacks
    def test_responses_non_streaming_is_a_failed_response_object(self):
        response, body = yield self.responses()
        self.assertEqual(response.code, 500)
        self.assertRegex(body["id"], rf"^resp_{UUID}$")
        self.assertEqual((body["object"], body["status"], body["model"], body["output"]), ("response", "failed", "openclaw", []))
        self.assertEqual(body["error"]["code"], "server_error")
        self.assertIn("HTTP 500", body["error"]["message"])
        self.assertEqual(body["usage"]["total_tokens"], 0)
        self.assertNotIn("incomplete_details", body)

    @inlineCallbacks
    def test_responses_streaming_ends_with_failed_then_done(self):
        response, content = yield self.request("POST", "/v1/responses", {"model": "openclaw", "input": "hi", "stream": True})
        self.assertEqual(response.code, 200)
        frames = sse_frames(content)
        self.assertEqual(
            [frame["event"] for frame in frames],
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.failed", None],
        )
        self.assertEqual(frames[-1]["data"], "[DONE]")
        failed = json.loads(frames[-2]["data"])
        self.assertEqual(failed["type"], "response.failed")
        self.assertEqual((failed["response"]["status"], failed["response"]["output"]), ("failed", []))
        self.assertEqual(failed["response"]["error"]["code"], "server_error")
        self.assertIn("HTTP 500", failed["response"]["error"]["message"])

    @inlineCallbacks
    def test_rate_limited_upstream_is_429(self):
        self.upstream.behaviour = Behaviour(mode="error", status=429)
        response, body = yield self.chat()
        self.assertEqual((response.code, body["error"]["type"]), (429, "rate_limit_error"))

    @inlineCallbacks
    def test_failure_still_records_previous_response_id(self):
        _, first = yield self.responses({"input": "one"})
        self.upstream.behaviour = Behaviour()
        _, second = yield self.responses({"input": "two", "previous_response_id": first["id"]})
        self.assertEqual(second["status"], "completed")
        self.assertEqual(self.session_of(second["id"]), self.session_of(first["id"]))


class ChatCompletionsValidationTests(SynchronousTestCase):
    """Odd shapes in optional fields are 400s with a reason, never a 500 from an AttributeError."""

    def refused(self, **fields):
        from openclaw.http.openai.chat_completions import REQUEST_SCHEMA, validate
        from openclaw.http.openai.common import HttpError
        from openclaw.http.openai.validation import BodyValidator

        body = {"messages": [{"role": "user", "content": "hi"}], **fields}
        with self.assertRaises(HttpError) as caught:
            validate(BodyValidator(REQUEST_SCHEMA), body)
        self.assertEqual(caught.exception.status, 400)
        return caught.exception.message

    def test_stream_options_must_be_an_object(self):
        self.assertIn("stream_options", self.refused(stream=True, stream_options=["include_usage"]))

    def test_tool_choice_function_must_be_an_object(self):
        tools = [{"type": "function", "function": {"name": "f"}}]
        self.assertIn("tool_choice", self.refused(tools=tools, tool_choice={"type": "function", "function": "f"}))
