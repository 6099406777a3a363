"""The ``anthropic-messages`` flavour: ``POST {baseUrl}/v1/messages`` with ``stream: true``.

Anthropic's Messages API differs from OpenAI's where it matters here: the key goes in
``x-api-key`` (with an ``anthropic-version`` header), system text is a top-level ``system`` field,
``max_tokens`` is required, and the stream is typed SSE events (``message_start``,
``content_block_delta`` carrying ``text_delta``, ``message_delta`` with the stop reason and output
tokens, ``message_stop``, and ``error``).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence


from .errors import KIND_CONTEXT_LENGTH, KIND_RATE_LIMIT, KIND_REFUSAL, ProviderError
from .sse import SSEEvent
from .streaming import TextInterpreter

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic refuses a request without max_tokens; this is used when neither the caller nor the
# model's config (models.providers.anthropic.models[].maxTokens) sets one.
DEFAULT_MAX_TOKENS = 4096
PASSED_OPTIONS = ("temperature", "top_p")
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "toolUse", "refusal": "refusal"}
# Error types that another model may succeed on (the fallback rule: overload and rate limits).
_RETRYABLE = {"overloaded_error", "rate_limit_error", "api_error"}


def messages_path(base_url: str) -> str:
    """``/v1/messages``, or ``/messages`` when the base URL already ends in ``/v1``."""
    return "/messages" if base_url.rstrip("/").endswith("/v1") else "/v1/messages"


def headers(api_key: str | None) -> dict[str, str]:
    out = {"anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        out["x-api-key"] = api_key
    return out


def build_request(
    model_id: str, messages: Sequence[dict[str, Any]], max_tokens: int | None, options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m.get("content"))
    body: dict[str, Any] = {
        "model": model_id,
        "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        "messages": alternating(messages),
        "stream": True,
    }
    if system:
        body["system"] = system
    for name in PASSED_OPTIONS:
        if (options or {}).get(name) is not None:
            body[name] = options[name]  # type: ignore[index]
    stop = (options or {}).get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return "/v1/messages", body


def alternating(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """User and assistant turns as the Messages API wants them: starting with the user, and
    consecutive turns of one role joined (history trimmed to fit can start with an answer)."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] not in ("user", "assistant") or (not turns and message["role"] != "user"):
            continue
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1] = {"role": message["role"], "content": turns[-1]["content"] + "\n\n" + message["content"]}
        else:
            turns.append({"role": message["role"], "content": message["content"]})
    return turns


class MessagesInterpreter(TextInterpreter):
    def __init__(self, label: str):
        super().__init__(label)
        self._input_tokens = 0
        self._output_tokens = 0

    def feed(self, event: SSEEvent) -> list[str]:
        payload = self._object(event.data)
        if payload is None:
            return []
        kind = payload.get("type") or event.event
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            text = delta.get("text") if isinstance(delta, dict) and delta.get("type", "text_delta") == "text_delta" else None
            if isinstance(text, str) and text:
                self._append(text)
                return [text]
        elif kind == "message_start":
            message = payload.get("message") or {}
            if isinstance(message.get("model"), str):
                self.result.model = message["model"]
            self._count(message.get("usage"))
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(reason, str):
                self.result.stop_reason = _STOP_REASONS.get(reason, reason)
                if reason == "refusal" and not self._parts:
                    raise ProviderError(f"{self._label} refused to answer", kind=KIND_REFUSAL)
            self._count(payload.get("usage"))
        elif kind == "message_stop":
            self._finish()
        elif kind == "error":
            raise _stream_error(payload.get("error"), self._label)
        return []

    def _count(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self._input_tokens = int(usage.get("input_tokens") or self._input_tokens)
        self._output_tokens = int(usage.get("output_tokens") or self._output_tokens)
        self.result.usage = {
            "input": self._input_tokens,
            "output": self._output_tokens,
            "totalTokens": self._input_tokens + self._output_tokens,
        }


def _stream_error(error: Any, label: str) -> ProviderError:
    kind_name = error.get("type", "") if isinstance(error, dict) else ""
    message = error.get("message") if isinstance(error, dict) else str(error or "")
    kind = KIND_RATE_LIMIT if kind_name == "rate_limit_error" else "unknown"
    if "context" in str(message).lower() or "too long" in str(message).lower():
        kind = KIND_CONTEXT_LENGTH
    return ProviderError(f"{label}: {message or kind_name or 'stream failed'}", kind=kind, retryable=kind_name in _RETRYABLE)
