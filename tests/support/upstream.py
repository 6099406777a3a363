"""A small OpenAI-compatible model server for tests, on a real loopback port.

It streams ``/v1/chat/completions`` and ``/v1/responses`` as SSE, Anthropic's ``/v1/messages``
(typed SSE events) and Ollama's ``/api/chat`` (JSON lines), chunk by chunk, and can be told
to fail in the ways real upstreams do: HTTP 500/429, say nothing at all (not even the response
headers), hang before or after the first chunk, or stream slowly. Every request body is recorded
so tests can check what the gateway sent, and ``connections`` holds the open TCP connections, so
tests can see the gateway close them.
"""
from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import inlineCallbacks
from twisted.protocols.policies import WrappingFactory
from twisted.web import server
from twisted.web.resource import Resource

DEFAULT_CHUNKS = ("Hel", "lo", " there!")


@attrs.define
class Behaviour:
    mode: str = "ok"  # ok | error | silent (no headers) | hang (headers only) | hang-after-first | slow
    status: int = 500
    chunks: tuple[str, ...] = DEFAULT_CHUNKS
    interval_s: float = 0.05
    message: str | None = None  # the error text of mode "error" (default: "upstream says <status>")
    usage: dict[str, int] = attrs.field(factory=lambda: {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14})


class _Endpoint(Resource):
    isLeaf = True

    def __init__(self, upstream: FakeUpstream, flavour: str):
        super().__init__()
        self._upstream = upstream
        self._flavour = flavour

    def render_POST(self, request: Any) -> Any:
        body = json.loads(request.content.read() or b"{}")
        self._upstream.requests.append(
            {
                "path": request.path.decode(),
                "body": body,
                "authorization": (request.getHeader("authorization") or ""),
                "x-api-key": request.getHeader("x-api-key"),
                "anthropic-version": request.getHeader("anthropic-version"),
            }
        )
        behaviour = self._upstream.behaviour_for(body.get("model"))
        if behaviour.mode == "error":
            request.setResponseCode(behaviour.status)
            request.setHeader("content-type", "application/json")
            message = behaviour.message or f"upstream says {behaviour.status}"
            if self._flavour == "anthropic":
                return json.dumps({"type": "error", "error": {"type": "api_error", "message": message}}).encode()
            return json.dumps({"error": {"message": message}}).encode()
        request.setHeader("content-type", "application/x-ndjson" if self._flavour == "ollama" else "text/event-stream")
        self._upstream.open_requests.append(request)
        request.notifyFinish().addBoth(lambda _: self._upstream.open_requests.remove(request))
        if behaviour.mode == "silent":
            return server.NOT_DONE_YET  # not even the status line: the client is still waiting
        if behaviour.mode == "hang":
            request.write(b"")  # headers only
            return server.NOT_DONE_YET
        events = self._events(body.get("model", "m"), behaviour)
        if not body.get("stream"):
            request.setHeader("content-type", "application/json")
            return json.dumps(self._whole(body.get("model", "m"), behaviour)).encode()
        self._send(request, events, behaviour, 0)
        return server.NOT_DONE_YET

    def _send(self, request: Any, events: list[bytes], behaviour: Behaviour, index: int) -> None:
        if request.finished or request._disconnected:
            return
        if index >= len(events):
            request.finish()
            return
        request.write(events[index])
        if behaviour.mode == "hang-after-first":
            return
        delay = behaviour.interval_s if behaviour.mode == "slow" else 0
        self._upstream.reactor.callLater(delay, self._send, request, events, behaviour, index + 1)

    def _events(self, model: str, behaviour: Behaviour) -> list[bytes]:
        def sse(payload: dict[str, Any], event: str | None = None) -> bytes:
            prefix = f"event: {event}\n".encode() if event else b""
            return prefix + b"data: " + json.dumps(payload).encode() + b"\n\n"

        usage = behaviour.usage
        if self._flavour == "anthropic":
            start = {"type": "message_start", "message": {"id": "msg_1", "model": model, "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": 1}}}
            events = [sse(start, "message_start"), b"event: ping\ndata: {\"type\": \"ping\"}\n\n"]
            events.append(sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start"))
            events.extend(
                sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}, "content_block_delta")
                for chunk in behaviour.chunks
            )
            events.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
            delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": usage["completion_tokens"]}}
            events.append(sse(delta, "message_delta"))
            events.append(sse({"type": "message_stop"}, "message_stop"))
            return events
        if self._flavour == "ollama":
            lines = [
                json.dumps({"model": model, "message": {"role": "assistant", "content": chunk}, "done": False}).encode() + b"\n"
                for chunk in behaviour.chunks
            ]
            final = {"model": model, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}
            final.update(prompt_eval_count=usage["prompt_tokens"], eval_count=usage["completion_tokens"])
            lines.append(json.dumps(final).encode() + b"\n")
            return lines
        if self._flavour == "responses":
            events = [sse({"type": "response.output_text.delta", "delta": chunk}, "response.output_text.delta") for chunk in behaviour.chunks]
            events.append(
                sse(
                    {
                        "type": "response.completed",
                        "response": {
                            "model": model,
                            "status": "completed",
                            "usage": {
                                "input_tokens": usage["prompt_tokens"],
                                "output_tokens": usage["completion_tokens"],
                                "total_tokens": usage["total_tokens"],
                            },
                        },
                    },
                    "response.completed",
                )
            )
            return events
        events = [
            sse({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": chunk}}]})
            for chunk in behaviour.chunks
        ]
        events.append(sse({"id": "chatcmpl-1", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        events.append(sse({"id": "chatcmpl-1", "model": model, "choices": [], "usage": behaviour.usage}))
        events.append(b"data: [DONE]\n\n")
        return events

    def _whole(self, model: str, behaviour: Behaviour) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(behaviour.chunks)}, "finish_reason": "stop"}],
            "usage": behaviour.usage,
        }


class _ConnectionCounter(WrappingFactory):
    """Keeps ``upstream.connections`` equal to the TCP connections open on the server side."""

    def __init__(self, site: server.Site, upstream: FakeUpstream):
        super().__init__(site)
        self._upstream = upstream

    def registerProtocol(self, p: Any) -> None:
        super().registerProtocol(p)
        self._upstream.connections.append(p)

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        self._upstream.connections.remove(p)


class FakeUpstream:
    def __init__(self, reactor: Any = global_reactor):
        self.reactor = reactor
        self.requests: list[dict[str, Any]] = []
        self.open_requests: list[Any] = []
        self.connections: list[Any] = []
        self.behaviour = Behaviour()
        self.per_model: dict[str, Behaviour] = {}
        root = Resource()
        v1 = Resource()
        root.putChild(b"v1", v1)
        v1.putChild(b"chat", Resource())
        v1.children[b"chat"].putChild(b"completions", _Endpoint(self, "completions"))
        v1.putChild(b"responses", _Endpoint(self, "responses"))
        v1.putChild(b"messages", _Endpoint(self, "anthropic"))
        root.putChild(b"api", Resource())
        root.children[b"api"].putChild(b"chat", _Endpoint(self, "ollama"))
        self.site = server.Site(root)
        self.port: Any = None

    def behaviour_for(self, model: str | None) -> Behaviour:
        return self.per_model.get(model or "", self.behaviour)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/v1"

    @property
    def root_url(self) -> str:
        """Without ``/v1``: the base URL Anthropic and Ollama providers are given."""
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def start(self, testcase: Any) -> FakeUpstream:
        self.port = self.reactor.listenTCP(0, _ConnectionCounter(self.site, self), interface="127.0.0.1")

        @inlineCallbacks
        def stop() -> Any:
            for request in list(self.open_requests):
                if not request.finished and request.channel is not None:
                    request.channel.transport.abortConnection()
            yield self.port.stopListening()

        testcase.addCleanup(stop)
        return self

    def config(self, *, api: str = "openai-completions", models: tuple[str, ...] = ("m1",), fallbacks: tuple[str, ...] = (), provider: str = "fake", **model_extra: Any) -> dict[str, Any]:
        """A config mapping declaring this server as provider ``fake`` (primary ``fake/<first>``)."""
        return {
            "models": {
                "providers": {
                    provider: {
                        "baseUrl": self.base_url,
                        "apiKey": "sk-test",
                        "api": api,
                        "models": [{"id": model, "name": model.upper(), **model_extra} for model in models],
                    }
                }
            },
            "agents": {"defaults": {"model": {"primary": f"{provider}/{models[0]}", "fallbacks": list(fallbacks)}}},
        }
