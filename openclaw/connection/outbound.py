"""A bounded outbound queue driven by the transport's producer signals (pitfall 1 in ecosystem.md).

While the transport keeps up, frames go straight out. Once it asks us to pause, frames wait here,
counted in bytes against ``maxBufferedBytes``; a droppable event that does not fit is discarded,
anything else that does not fit means the peer is a slow consumer and must be disconnected.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable

SENT = "sent"
QUEUED = "queued"
DROPPED = "dropped"
OVERFLOW = "overflow"


class OutboundQueue:
    # One per connection: slots, and no deque (~760 bytes empty) until a frame has to wait.
    __slots__ = ("_write", "_max_bytes", "_frames", "queued_bytes", "paused", "dropped")

    def __init__(self, write: Callable[[bytes], None], max_bytes: int):
        self._write = write
        self._max_bytes = max_bytes
        self._frames: deque[bytes] | None = None
        self.queued_bytes = 0
        self.paused = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames) if self._frames is not None else 0

    def offer(self, frame: bytes, *, droppable: bool) -> str:
        if not self.paused and not self._frames:
            self._write(frame)
            return SENT
        size = len(frame)
        if self.queued_bytes + size > self._max_bytes:
            if droppable:
                self.dropped += 1
                return DROPPED
            return OVERFLOW
        # A compact copy: orjson's output can pin several KiB of allocator memory beyond its
        # length, which would make the real cost of a full queue many times ``max_bytes``.
        if self._frames is None:
            self._frames = deque()
        self._frames.append(bytes(memoryview(frame)))
        self.queued_bytes += size
        return QUEUED

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Write queued frames until the transport pauses us again (it may, mid-drain)."""
        self.paused = False
        while self._frames and not self.paused:
            frame = self._frames.popleft()
            self.queued_bytes -= len(frame)
            self._write(frame)
        if not self._frames:
            self._frames = None  # drained: give the deque's blocks back

    def flush(self) -> None:
        """Hand everything queued to the transport regardless of pause (used right before close)."""
        while self._frames:
            self._write(self._frames.popleft())
        self._frames = None
        self.queued_bytes = 0

    def clear(self) -> None:
        self._frames = None
        self.queued_bytes = 0
