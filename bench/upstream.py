"""A local OpenAI-compatible model server for the ``chat`` scenario: N deltas, as fast as it can.

Each delta is its own SSE event and its own write, one reactor turn apart, the way a real model
server's tokens arrive; the direct-read baseline sees exactly the same pacing as the gateway.
"""
from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import reactor
from twisted.web import resource, server


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


class ChatCompletions(resource.Resource):
    isLeaf = True

    def __init__(self, deltas: int):
        super().__init__()
        self.deltas = deltas

    def render_POST(self, request: Any) -> Any:
        body = request.content.read()
        wants_stream = b'"stream":true' in body.replace(b" ", b"") or not body
        if not wants_stream:
            request.setHeader("content-type", "application/json")
            message = {"role": "assistant", "content": "tok " * self.deltas}
            return orjson.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": self.deltas, "total_tokens": 5 + self.deltas},
                }
            )
        request.setHeader("content-type", "text/event-stream")
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))
        self._send(request, 0, finished)
        return server.NOT_DONE_YET

    def _send(self, request: Any, index: int, finished: list[bool]) -> None:
        if finished:
            return
        if index < self.deltas:
            request.write(_chunk("tok " if index else "tok"))
            reactor.callLater(0, self._send, request, index + 1, finished)
            return
        request.write(_chunk(None, "stop"))
        usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": []}
        usage["usage"] = {"prompt_tokens": 5, "completion_tokens": self.deltas, "total_tokens": 5 + self.deltas}
        request.write(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
        request.finish()


class Models(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader("content-type", "application/json")
        return orjson.dumps({"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "bench"}]})


def listen(deltas: int) -> str:
    """Start the upstream on a free loopback port; returns its ``…/v1`` base URL."""
    root = resource.Resource()
    v1 = resource.Resource()
    root.putChild(b"v1", v1)
    v1.putChild(b"chat", _Chat(deltas))
    v1.putChild(b"models", Models())
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    return f"http://127.0.0.1:{port.getHost().port}/v1"


class _Chat(resource.Resource):
    def __init__(self, deltas: int):
        super().__init__()
        self.putChild(b"completions", ChatCompletions(deltas))
