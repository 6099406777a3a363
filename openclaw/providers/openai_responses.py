"""The ``openai-responses`` flavour: ``POST {baseUrl}/responses`` with ``stream: true``."""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence


from .errors import KIND_CONTEXT_LENGTH, KIND_RATE_LIMIT, KIND_REFUSAL, ProviderError
from .sse import SSEEvent
from .streaming import TextInterpreter


# Sampling settings the Responses API shares with Chat Completions.
PASSED_OPTIONS = ("temperature", "top_p")


def build_request(
    model_id: str, messages: Sequence[dict[str, Any]], max_tokens: int | None, options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    instructions = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m.get("content"))
    body: dict[str, Any] = {
        "model": model_id,
        "input": [
            {"role": m["role"], "content": m["content"]} for m in messages if m["role"] in ("user", "assistant")
        ],
        "stream": True,
        "store": False,
    }
    if instructions:
        body["instructions"] = instructions
    if max_tokens:
        body["max_output_tokens"] = max_tokens
    for name in PASSED_OPTIONS:
        if (options or {}).get(name) is not None:
            body[name] = options[name]  # type: ignore[index]
    return "/responses", body


class ResponsesInterpreter(TextInterpreter):
    def feed(self, event: SSEEvent) -> list[str]:
        if event.data.strip() == "[DONE]":
            self._finish()
            return []
        payload = self._object(event.data)
        if payload is None:
            return []
        kind = payload.get("type") or event.event
        if kind == "response.output_text.delta":
            delta = payload.get("delta")
            if isinstance(delta, str) and delta:
                self._append(delta)
                return [delta]
        elif kind == "response.refusal.delta":
            raise ProviderError(f"{self._label} refused: {payload.get('delta', '')}", kind=KIND_REFUSAL)
        elif kind in ("response.completed", "response.incomplete"):
            self._complete(payload.get("response"))
        elif kind in ("response.failed", "error"):
            error = payload.get("error") or (payload.get("response") or {}).get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            code = str(error.get("code", "")) if isinstance(error, dict) else ""
            error_kind = KIND_RATE_LIMIT if "rate" in code else KIND_CONTEXT_LENGTH if "context" in code else "unknown"
            raise ProviderError(f"{self._label}: {message or 'response failed'}", kind=error_kind)
        return []

    def _complete(self, response: Any) -> None:
        if isinstance(response, dict):
            usage = response.get("usage")
            if isinstance(usage, dict):
                self.result.usage = {
                    "input": int(usage.get("input_tokens") or 0),
                    "output": int(usage.get("output_tokens") or 0),
                    "totalTokens": int(usage.get("total_tokens") or 0),
                }
            if isinstance(response.get("model"), str):
                self.result.model = response["model"]
            if response.get("status") == "incomplete":
                self.result.stop_reason = "length"
        self._finish()
