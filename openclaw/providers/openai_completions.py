"""The ``openai-completions`` flavour: ``POST {baseUrl}/chat/completions`` with ``stream: true``."""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence


from .errors import KIND_CONTEXT_LENGTH, KIND_REFUSAL, ProviderError
from .sse import SSEEvent
from .streaming import TextInterpreter

_STOP_REASONS = {"stop": "stop", "length": "length", "tool_calls": "toolUse", "content_filter": "refusal"}


# Sampling settings passed through to the upstream as they are.
PASSED_OPTIONS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


def build_request(
    model_id: str, messages: Sequence[dict[str, Any]], max_tokens: int | None, options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "model": model_id,
        "messages": list(messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if max_tokens:
        body["max_tokens"] = max_tokens
    for name in PASSED_OPTIONS:
        if (options or {}).get(name) is not None:
            body[name] = options[name]  # type: ignore[index]
    return "/chat/completions", body


class CompletionsInterpreter(TextInterpreter):
    def feed(self, event: SSEEvent) -> list[str]:
        data = event.data.strip()
        if data == "[DONE]":
            self._finish()
            return []
        chunk = self._object(data, 'a chunk')
        if chunk is None:
            return []
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            kind = KIND_CONTEXT_LENGTH if "context" in str(message).lower() else "unknown"
            raise ProviderError(f"{self._label}: {message}", kind=kind)
        if isinstance(chunk.get("model"), str):
            self.result.model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.result.usage = {
                "input": int(usage.get("prompt_tokens") or 0),
                "output": int(usage.get("completion_tokens") or 0),
                "totalTokens": int(usage.get("total_tokens") or 0),
            }
        deltas = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                deltas.append(content)
                self._append(content)
            refusal = delta.get("refusal") if isinstance(delta, dict) else None
            if isinstance(refusal, str) and refusal:
                raise ProviderError(f"{self._label} refused: {refusal}", kind=KIND_REFUSAL)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.result.stop_reason = _STOP_REASONS.get(reason, reason)
        return deltas
