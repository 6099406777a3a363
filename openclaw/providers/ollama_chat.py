"""The ``ollama`` flavour: Ollama's native ``POST {baseUrl}/api/chat``, streamed as JSON lines.

The reference talks to Ollama natively rather than through its OpenAI-compatible ``/v1`` (see its
provider docs), so a reference config's ``baseUrl: "http://127.0.0.1:11434"`` works unchanged.
Each line is one object: ``message.content`` carries text, the last has ``done: true`` with
``done_reason`` and token counts; ``{"error": …}`` is a failure.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence


from .errors import KIND_CONTEXT_LENGTH, ProviderError
from .sse import SSEError, SSEEvent
from .streaming import TextInterpreter

_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop"}


def build_request(
    model_id: str, messages: Sequence[dict[str, Any]], max_tokens: int | None, options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "model": model_id,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "stream": True,
    }
    sampling = {ours: (options or {})[name] for name, ours in _OPTIONS.items() if (options or {}).get(name) is not None}
    if max_tokens:
        sampling["num_predict"] = max_tokens
    if sampling:
        body["options"] = sampling
    return "/api/chat", body


class LineDecoder:
    """JSON lines as events, with the SSE decoder's interface and bound (see :mod:`.sse`)."""

    def __init__(self, max_line_bytes: int = 4 * 1024 * 1024):
        self._max = max_line_bytes
        self._tail = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self._max:
            raise SSEError(f"JSON line longer than {self._max} bytes")
        return [SSEEvent("message", line.decode("utf-8", "replace")) for line in lines if line.strip()]

    def finish(self) -> list[SSEEvent]:
        tail, self._tail = self._tail, b""
        return [SSEEvent("message", tail.decode("utf-8", "replace"))] if tail.strip() else []


class ChatInterpreter(TextInterpreter):
    def feed(self, event: SSEEvent) -> list[str]:
        payload = self._object(event.data, 'a line')
        if payload is None:
            return []
        if payload.get("error"):
            message = str(payload["error"])
            kind = KIND_CONTEXT_LENGTH if "context" in message.lower() else "unknown"
            raise ProviderError(f"{self._label}: {message}", kind=kind)
        if isinstance(payload.get("model"), str):
            self.result.model = payload["model"]
        deltas: list[str] = []
        reply = payload.get("message")
        content = reply.get("content") if isinstance(reply, dict) else None
        if isinstance(content, str) and content:
            self._append(content)
            deltas.append(content)
        if payload.get("done"):
            reason = payload.get("done_reason")
            self.result.stop_reason = "length" if reason == "length" else "stop"
            prompt, output = int(payload.get("prompt_eval_count") or 0), int(payload.get("eval_count") or 0)
            self.result.usage = {"input": prompt, "output": output, "totalTokens": prompt + output}
            self._finish()
        return deltas
