"""Stream a chat from a configured model, falling back to the next model when the upstream fails.

Fallbacks follow the issue's rule: connection errors, 429 and 5xx move on to the next model, and
only while nothing has been streamed yet. Everything else (4xx, timeouts, refusals) is the answer.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable, Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..agents.builtin_providers import API_ANTHROPIC, API_OLLAMA, API_RESPONSES
from ..agents.catalog import ModelRef
from . import anthropic_messages, ollama_chat, openai_completions, openai_responses
from .errors import ProviderError, ProviderNotConfigured, StreamAborted
from .streaming import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_STREAM_BYTES, StreamRequest, StreamResult, UpstreamStream


@attrs.frozen
class Completion:
    result: StreamResult
    target: ModelRef
    attempts: tuple[str, ...]


class ModelClient:
    """Builds upstream requests for either API flavour over one shared treq client."""

    def __init__(
        self,
        http: Any,
        clock: IReactorTime,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_STREAM_BYTES,
    ):
        self.http = http
        self.clock = clock
        self.idle_timeout_s = idle_timeout_s
        self.max_bytes = max_bytes

    def open(
        self,
        target: ModelRef,
        messages: Sequence[dict[str, Any]],
        on_delta: Callable[[str], None],
        options: Mapping[str, Any] | None = None,
    ) -> UpstreamStream:
        """``options`` are sampling settings a caller chose (``max_tokens``, ``temperature``, …)."""
        provider = target.provider
        options = dict(options or {})
        max_tokens = options.pop("max_tokens", None) or target.model.max_tokens
        decoder = None
        headers = dict(provider.headers)
        if provider.api == API_ANTHROPIC:
            _, body = anthropic_messages.build_request(target.model.id, messages, max_tokens, options)
            path = anthropic_messages.messages_path(provider.base_url)
            headers.update(anthropic_messages.headers(provider.api_key))
            interpreter: Any = anthropic_messages.MessagesInterpreter(target.ref)
        else:
            if provider.api == API_OLLAMA:
                path, body = ollama_chat.build_request(target.model.id, messages, max_tokens, options)
                interpreter, decoder = ollama_chat.ChatInterpreter(target.ref), ollama_chat.LineDecoder()
            elif provider.api == API_RESPONSES:
                path, body = openai_responses.build_request(target.model.id, messages, max_tokens, options)
                interpreter = openai_responses.ResponsesInterpreter(target.ref)
            else:
                path, body = openai_completions.build_request(target.model.id, messages, max_tokens, options)
                interpreter = openai_completions.CompletionsInterpreter(target.ref)
            if provider.api_key:
                headers["Authorization"] = f"Bearer {provider.api_key}"
        request = StreamRequest(provider.base_url + path, body, headers, target.ref, provider.api_key)
        return UpstreamStream(self.http, self.clock, request, interpreter, on_delta, self.idle_timeout_s, self.max_bytes, decoder)

    def complete(
        self,
        targets: Sequence[ModelRef],
        messages: Sequence[dict[str, Any]],
        on_delta: Callable[[str], None],
        options: Mapping[str, Any] | None = None,
        unavailable: str | None = None,
    ) -> FallbackStream:
        """``unavailable`` says why there are no targets, when the run asked for models that
        cannot be used (no key, unknown provider)."""
        return FallbackStream(self, targets, messages, on_delta, options, unavailable)


class FallbackStream:
    _log = Logger()

    def __init__(
        self,
        client: ModelClient,
        targets: Sequence[ModelRef],
        messages: Sequence[dict[str, Any]],
        on_delta: Callable[[str], None],
        options: Mapping[str, Any] | None = None,
        unavailable: str | None = None,
    ):
        self._client = client
        self._unavailable = unavailable
        self._options = dict(options or {})
        self._targets = list(targets)
        self._messages = list(messages)
        self._on_delta = on_delta
        self._current: UpstreamStream | None = None
        self._attempts: list[str] = []
        self._done: Deferred[Completion] = Deferred()
        self._cancelled: str | None = None

    def start(self) -> Deferred[Completion]:
        """Fires with a Completion, or fails with ProviderError / StreamAborted."""
        if not self._targets:
            self._done.errback(
                ProviderNotConfigured(
                    self._unavailable
                    or "no model provider is configured: set agents.defaults.model (e.g. openai/gpt-4.1-mini with "
                    "OPENAI_API_KEY set) or declare models.providers"
                )
            )
        else:
            self._next(0, None)
        return self._done

    def cancel(self, reason: str = "aborted") -> None:
        self._cancelled = reason
        if self._current is not None:
            self._current.cancel(reason)

    def _next(self, index: int, previous: ProviderError | None) -> None:
        if self._cancelled is not None:
            self._done.errback(StreamAborted(self._cancelled))
            return
        if index >= len(self._targets):
            assert previous is not None
            self._done.errback(previous)
            return
        target = self._targets[index]
        self._attempts.append(target.ref)
        stream = self._current = self._client.open(target, self._messages, self._on_delta, self._options)

        def succeeded(result: StreamResult) -> None:
            self._done.callback(Completion(result, target, tuple(self._attempts)))

        def failed(failure: Failure) -> None:
            error = failure.value
            if (
                isinstance(error, ProviderError)
                and error.retryable
                and not stream.emitted_text
                and index + 1 < len(self._targets)
            ):
                self._log.warn("{ref} failed ({error}); trying {next}", ref=target.ref, error=error.message, next=self._targets[index + 1].ref)
                self._next(index + 1, error)
                return
            self._done.errback(failure)

        stream.start().addCallbacks(succeeded, failed)
