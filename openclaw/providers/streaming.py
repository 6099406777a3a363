"""One streaming request to an OpenAI-compatible upstream.

The response body is read as it arrives (treq ``unbuffered=True`` and our own body protocol), so
text reaches clients as the model produces it. Three bounds keep a bad upstream from hurting the
gateway: an idle timer reset by every chunk (a hung upstream becomes a timeout error), a byte cap
on the whole body, and the SSE decoder's line bound. ``cancel()`` closes the HTTP connection
wherever the request is, so an aborted run stops costing upstream tokens at once.
"""
from __future__ import annotations

import re
from typing import Any, Protocol as TypingProtocol, cast
from collections.abc import Callable, Mapping

import attrs
import orjson
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from .errors import KIND_TIMEOUT, ProviderError, StreamAborted
from .sse import SSEDecoder, SSEError, SSEEvent

DEFAULT_IDLE_TIMEOUT_S = 120.0
DEFAULT_MAX_STREAM_BYTES = 16 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024


@attrs.define
class StreamResult:
    text: str = ""
    usage: dict[str, int] | None = None
    stop_reason: str = "stop"
    model: str | None = None


class Interpreter(TypingProtocol):
    """Turns one API flavour's SSE events into text deltas and a result."""

    result: StreamResult
    finished: bool

    def feed(self, event: SSEEvent) -> list[str]:
        """Text deltas carried by ``event``; raises ProviderError for an in-stream error."""

    def conclude(self) -> StreamResult:
        """The result, its text complete: called once, when the stream settles."""


class TextInterpreter:
    """What both API flavours share: accumulating text and marking the stream finished."""

    def __init__(self, label: str):
        self._label = label
        self.result = StreamResult()
        self.finished = False
        self._parts: list[str] = []

    def _append(self, delta: str) -> None:
        # Joined once in conclude(): re-joining per delta made a long answer quadratic.
        self._parts.append(delta)

    def _finish(self) -> None:
        self.finished = True

    def _object(self, data: str, unit: str = "an event") -> dict[str, Any] | None:
        """One event's JSON object; None for valid JSON that is not an object (ignored, as upstreams
        do send such keep-alives); ProviderError for text that is not JSON at all."""
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProviderError(f"{self._label} sent {unit} that is not JSON") from None
        return payload if isinstance(payload, dict) else None

    def conclude(self) -> StreamResult:
        self.result.text = "".join(self._parts)
        return self.result


@attrs.frozen
class StreamRequest:
    url: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = attrs.field(repr=False)
    label: str  # e.g. "fake/m1", for messages
    secret: str | None = attrs.field(default=None, repr=False)  # the API key, kept out of messages


# What upstreams put in error text about a key: OpenAI's "Incorrect API key provided:
# sk-te****2345" quotes a masked fragment. Keys never reach users or logs, not even in part.
_KEY_FRAGMENT = re.compile(r"\bsk-[A-Za-z0-9_\-*.]{4,}")


def scrub_key(text: str, secret: str | None) -> str:
    """``text`` without the key or anything that looks like a piece of one."""
    if secret:
        text = text.replace(secret, "[key hidden]")
    return _KEY_FRAGMENT.sub("[key hidden]", text)


class _BodyReader(Protocol):
    def __init__(self, stream: UpstreamStream, error_status: int | None = None):
        self._stream = stream
        self._error_status = error_status
        self._error_body = bytearray()

    def connectionMade(self) -> None:
        if self._stream._settled:
            # cancelled while the headers were on their way; a response body's transport is a producer
            cast(IPushProducer, self.transport).stopProducing()
            return
        self._stream._body_transport = self.transport

    def dataReceived(self, data: bytes) -> None:
        if self._error_status is not None:
            room = MAX_ERROR_BODY_BYTES - len(self._error_body)
            self._error_body += data[: max(0, room)]
            return
        self._stream._data(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._stream._body_transport = None
        if self._error_status is not None:
            self._stream._fail(ProviderError.for_status(self._error_status, _error_detail(bytes(self._error_body)), self._stream.request.label))
        else:
            self._stream._body_ended(reason)


def _error_detail(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(parsed, dict):
        error = parsed.get("error")
        nested = error.get("message") if isinstance(error, dict) else None
        if isinstance(nested, str):
            return nested[:500]
        if isinstance(error, str):
            return error[:500]
        message = parsed.get("message")
        if isinstance(message, str):
            return message[:500]
    return ""


class UpstreamStream:
    _log = Logger()

    def __init__(
        self,
        http: Any,
        clock: IReactorTime,
        request: StreamRequest,
        interpreter: Interpreter,
        on_delta: Callable[[str], None],
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_STREAM_BYTES,
        decoder: Any = None,
    ):
        """``decoder`` turns body bytes into events (default: SSE; Ollama sends JSON lines)."""
        self.request = request
        self._http = http
        self._clock = clock
        self._interpreter = interpreter
        self._on_delta = on_delta
        self._idle_timeout_s = idle_timeout_s
        self._max_bytes = max_bytes
        self._decoder = decoder if decoder is not None else SSEDecoder()
        self._received = 0
        self._idle: IDelayedCall | None = None
        self._request_d: Deferred[Any] | None = None
        self._body_transport: Any = None
        self._done: Deferred[StreamResult] = Deferred()
        self._settled = False
        self._aborting = False
        self.emitted_text = False

    def start(self) -> Deferred[StreamResult]:
        """Send the request; fires with a StreamResult or fails with ProviderError/StreamAborted."""
        self._touch()
        self._request_d = self._http.request(
            "POST",
            self.request.url,
            data=orjson.dumps(self.request.body),
            headers={
                **{"Content-Type": ["application/json"], "Accept": ["text/event-stream"]},
                **{k: [v] for k, v in self.request.headers.items()},
            },
            unbuffered=True,
        )
        self._request_d.addCallbacks(self._response, self._request_failed)
        return self._done

    def cancel(self, reason: str = "aborted") -> None:
        self._abort_transport()
        self._settle(failure=Failure(StreamAborted(reason)))

    # -- internals ---------------------------------------------------------------------------

    def _touch(self) -> None:
        if self._settled:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._idle_timeout_s)
        else:
            self._idle = self._clock.callLater(self._idle_timeout_s, self._timed_out)

    def _timed_out(self) -> None:
        self._idle = None
        self._abort_transport()
        seconds = f"{self._idle_timeout_s:g}"
        self._fail(ProviderError(f"{self.request.label} sent nothing for {seconds} s", kind=KIND_TIMEOUT))

    def _abort_transport(self) -> None:
        # Cancelling a request still connecting can fail it with e.g. DNSLookupError rather than
        # CancelledError; the caller settles with the real reason right after, so ignore that.
        self._aborting = True
        if self._request_d is not None:
            # Not guarded by ``called``: once connected, the request Deferred has "fired" with
            # the pending response Deferred and waits on it. cancel() reaches that one, which
            # aborts the connection still waiting for headers; after the response it is a no-op.
            self._request_d.cancel()
        if self._body_transport is not None:
            self._body_transport.stopProducing()

    def _request_failed(self, failure: Failure) -> None:
        if self._settled or self._aborting or failure.check(CancelledError):
            return
        self._fail(
            ProviderError(
                f"cannot reach {self.request.label} at {self.request.url}: {failure.getErrorMessage()}",
                retryable=True,
            )
        )

    def _response(self, response: Any) -> None:
        self._touch()
        if not 200 <= response.code < 300:
            response.deliverBody(_BodyReader(self, error_status=response.code))
            return
        response.deliverBody(_BodyReader(self))

    def _data(self, data: bytes) -> None:
        if self._settled:
            return
        self._touch()
        self._received += len(data)
        if self._received > self._max_bytes:
            self._abort_transport()
            self._fail(ProviderError(f"{self.request.label} streamed more than {self._max_bytes} bytes"))
            return
        try:
            events = self._decoder.feed(data)
            self._interpret(events)
        except (SSEError, ProviderError) as exc:
            self._abort_transport()
            self._fail(exc if isinstance(exc, ProviderError) else ProviderError(f"{self.request.label}: {exc}"))

    def _interpret(self, events: list[SSEEvent]) -> None:
        for event in events:
            for delta in self._interpreter.feed(event):
                if delta and not self._settled:
                    self.emitted_text = True
                    self._on_delta(delta)
            if self._interpreter.finished:
                # The rest of the body (normally nothing) is ignored; the connection stays
                # reusable for the pool.
                self._settle(result=self._interpreter.conclude())
                return

    def _body_ended(self, reason: Failure | None) -> None:
        if self._settled:
            return
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            try:
                self._interpret(self._decoder.finish())
            except (SSEError, ProviderError) as exc:
                self._fail(exc if isinstance(exc, ProviderError) else ProviderError(str(exc)))
                return
            if not self._settled:
                # Servers that close without a terminator still delivered a usable answer.
                self._settle(result=self._interpreter.conclude())
            return
        self._fail(
            ProviderError(
                f"{self.request.label} closed the stream early: {reason.getErrorMessage()}",
                retryable=not self.emitted_text,
            )
        )

    def _fail(self, error: Exception) -> None:
        if isinstance(error, ProviderError):
            error.message = scrub_key(error.message, self.request.secret)
            error.args = (error.message,)
        self._settle(failure=Failure(error))

    def _settle(self, result: StreamResult | None = None, failure: Failure | None = None) -> None:
        if self._settled:
            return
        self._settled = True
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if failure is not None:
            self._done.errback(failure)
        else:
            assert result is not None  # every caller passes one or the other
            self._done.callback(result)
