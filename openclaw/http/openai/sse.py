"""Server-sent events to an HTTP client, with a bound on what may pile up unsent.

Model output is pushed, not pulled, so a client that reads slower than the model writes would
grow the transport's buffer without limit. The writer registers as a push producer: while the
transport is paused, frames wait in a bounded queue; past the bound the stream gives up and
drops the connection rather than holding an unbounded backlog.

The route returns :attr:`SSEWriter.finished`, so Klein holds it while the body is written. It
fires only when the writer has finished the response itself; a connection that goes away first
reaches the writer the way it reaches any Klein route: Klein cancels that Deferred, and its
canceller stops the writer (the route's own canceller aborts the run, see ``runs.py``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

MAX_PENDING_BYTES = 4 * 1024 * 1024


@implementer(IPushProducer)
class SSEWriter:
    def __init__(self, request: Any, max_pending: int = MAX_PENDING_BYTES):
        self._request = request
        self._max_pending = max_pending
        self._paused = False
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self.closed = False  # no more frames: the stream ended or was stopped
        self._stopped = False  # the response will not be finished by this writer
        # Fires once the writer has finished the response (after any queued frames went out);
        # never for a connection that went away, which cancels it instead.
        self.finished: Deferred[None] = Deferred(self._cancelled)

    def start(self) -> None:
        """Send the headers now, so clients see the stream open before the model answers."""
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Connection", b"keep-alive")
        request.registerProducer(self, True)
        request.write(b"")

    def _cancelled(self, _: Deferred[None]) -> None:
        """The client is gone (Klein cancelled the Deferred the route returned): write no more."""
        self._stop()

    def _stop(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self.closed = True
        self._stopped = True

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
        if self._stopped or getattr(request, "_disconnected", False) or request.finished:
            return  # gone: ``finished`` is cancelled when the request hears of it
        request.unregisterProducer()
        request.finish()
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
            self._stop()
            self._overflowed()

    def _overflowed(self) -> None:
        """Drop the connection: the request hears of it, and Klein's cancellation aborts the run."""
        channel = self._request.channel
        if channel is not None and channel.transport is not None:
            channel.transport.abortConnection()

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
        """The connection is gone. ``finished`` does not fire here: the transport says so before
        the request learns of it, and Klein would then finish the dead request as a success. It is
        cancelled once the request hears of the loss."""
        self._stop()
