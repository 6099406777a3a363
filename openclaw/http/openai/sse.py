"""Server-sent events to an HTTP client, with a bound on what may pile up unsent.

Model output is pushed, not pulled, so a client that reads slower than the model writes would
grow the transport's buffer without limit. The writer registers as a push producer: while the
transport is paused, frames wait in a bounded queue; past the bound the stream gives up (the
caller aborts the run) rather than holding an unbounded backlog.
"""
from __future__ import annotations

from collections import deque
from typing import Any
from collections.abc import Callable

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

MAX_PENDING_BYTES = 4 * 1024 * 1024


@implementer(IPushProducer)
class SSEWriter:
    def __init__(self, request: Any, on_overflow: Callable[[], None], max_pending: int = MAX_PENDING_BYTES):
        self._request = request
        self._on_overflow = on_overflow
        self._max_pending = max_pending
        self._paused = False
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self.closed = False
        # Fires once the response has really ended (after any queued frames went out).
        self.finished: Deferred = Deferred()

    def start(self) -> None:
        """Send the headers now, so clients see the stream open before the model answers."""
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Connection", b"keep-alive")
        request.registerProducer(self, True)
        # ``finished`` fires once the request itself has ended (finished or disconnected), never
        # from stopProducing: the transport calls that before the request learns the connection
        # is gone, and Klein would then finish the dead request as a success (no abort, and
        # "Producer was not unregistered").
        request.notifyFinish().addBoth(self._request_ended)
        request.write(b"")

    def _request_ended(self, _: Any) -> None:
        self.closed = True
        self._pending.clear()
        self._pending_bytes = 0
        if not self.finished.called:
            self.finished.callback(None)

    def data(self, payload: Any, event: str | None = None) -> None:
        frame = b"data: " + orjson.dumps(payload) + b"\n\n"
        if event is not None:
            frame = b"event: " + event.encode("utf-8") + b"\n" + frame
        self._send(frame)

    def done(self) -> None:
        """``data: [DONE]`` and the end of the response."""
        self._send(b"data: [DONE]\n\n")
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self._paused:
            self._finish()

    def _finish(self) -> None:
        request = self._request
        if not (getattr(request, "_disconnected", False) or request.finished):
            request.unregisterProducer()
            request.finish()
        if not self.finished.called:
            self.finished.callback(None)

    def _send(self, frame: bytes) -> None:
        if self.closed or getattr(self._request, "_disconnected", False):
            return
        if not self._paused:
            self._request.write(frame)
            return
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes > self._max_pending:
            self._pending.clear()
            self._pending_bytes = 0
            self.closed = True
            self._on_overflow()
            if self._request.channel is not None and self._request.channel.transport is not None:
                self._request.channel.transport.abortConnection()  # ``finished`` fires when it is gone

    # IPushProducer: the transport tells us when its buffer is full or drained.
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._pending and not self._paused:
            frame = self._pending.popleft()
            self._pending_bytes -= len(frame)
            self._request.write(frame)
        if self.closed and not self._pending and not self._paused:
            self._finish()

    def stopProducing(self) -> None:
        """The connection is gone (``finished`` fires when the request hears of it)."""
        self._pending.clear()
        self._pending_bytes = 0
        self.closed = True
