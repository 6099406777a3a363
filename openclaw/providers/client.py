"""Stream a chat from a configured model, falling back to the next model when the upstream fails.

Fallbacks follow the issue's rule: connection errors, 429 and 5xx move on to the next model, and
only while nothing has been streamed yet. Everything else (4xx, timeouts, refusals) is the answer.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..agents.catalog import API_RESPONSES, ModelRef
from . import openai_completions, openai_responses
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
        flavour = openai_responses if target.provider.api == API_RESPONSES else openai_completions
        options = dict(options or {})
        max_tokens = options.pop("max_tokens", None) or target.model.max_tokens
        path, body = flavour.build_request(target.model.id, messages, max_tokens, options)
        headers = dict(target.provider.headers)
        if target.provider.api_key:
            headers["Authorization"] = f"Bearer {target.provider.api_key}"
        interpreter = (
            openai_responses.ResponsesInterpreter(target.ref)
            if flavour is openai_responses
            else openai_completions.CompletionsInterpreter(target.ref)
        )
        request = StreamRequest(target.provider.base_url + path, body, headers, target.ref)
        return UpstreamStream(self.http, self.clock, request, interpreter, on_delta, self.idle_timeout_s, self.max_bytes)

    def complete(
        self,
        targets: Sequence[ModelRef],
        messages: Sequence[dict[str, Any]],
        on_delta: Callable[[str], None],
        options: Mapping[str, Any] | None = None,
    ) -> "FallbackStream":
        return FallbackStream(self, targets, messages, on_delta, options)


class FallbackStream:
    _log = Logger()

    def __init__(
        self,
        client: ModelClient,
        targets: Sequence[ModelRef],
        messages: Sequence[dict[str, Any]],
        on_delta: Callable[[str], None],
        options: Mapping[str, Any] | None = None,
    ):
        self._client = client
        self._options = dict(options or {})
        self._targets = list(targets)
        self._messages = list(messages)
        self._on_delta = on_delta
        self._current: UpstreamStream | None = None
        self._attempts: list[str] = []
        self._done: Deferred = Deferred()
        self._cancelled: str | None = None

    def start(self) -> Deferred:
        """Fires with a Completion, or fails with ProviderError / StreamAborted."""
        if not self._targets:
            self._done.errback(
                ProviderNotConfigured(
                    "no model provider is configured: add models.providers and agents.defaults.model to the config"
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
