"""Releasing a run's answer to operators while it streams: paced, and linear in bytes.

Each ``agent`` assistant event and each ``chat`` delta carries the whole answer so far
(``data.text``, ``message``) beside the new piece, as the reference's do. Sent once per upstream
chunk, a 10,000-chunk answer cost every reader the answer 10,000 times over: bytes grew with the
square of the answer and readers were closed as slow consumers. So text goes out in batches:

* pacing, as the reference does: the first piece at once, then at most one batch per 75 ms;
* a budget that keeps the bytes linear however the time windows fall: a batch is released only
  while the copies of the text so far that have gone out stay within ``copies × length +
  free_chars``. Short answers never notice it; a long answer from a slow model updates less
  often as it grows (once its newest part is about ``length / copies`` characters);
* ``flush()`` releases whatever is held, so the last batch precedes the run's terminal event.
"""
from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

LIVE_TEXT_PACING_S = 0.075
LIVE_TEXT_COPIES = 128
LIVE_TEXT_FREE_CHARS = 512 * 1024


class LiveText:
    """Collects deltas and calls ``publish(batch)`` when a batch may go out.

    ``publish`` builds the events from the batch and the run's text so far (which already holds
    the batch when it is called).
    """

    def __init__(
        self,
        clock: IReactorTime,
        publish: Callable[[str], None],
        pacing_s: float = LIVE_TEXT_PACING_S,
        copies: int = LIVE_TEXT_COPIES,
        free_chars: int = LIVE_TEXT_FREE_CHARS,
    ):
        self._clock = clock
        self._publish = publish
        self._pacing_s = pacing_s
        self._copies = copies
        self._free_chars = free_chars
        self._pending: list[str] = []
        self._length = 0  # characters streamed so far
        self._copied = 0  # characters of text-so-far sent, summed over batches
        self._last: float | None = None
        self._call: IDelayedCall | None = None

    def add(self, delta: str) -> None:
        self._pending.append(delta)
        self._length += len(delta)
        if self._call is not None:
            return  # the paced release is already scheduled
        wait = 0.0 if self._last is None else self._last + self._pacing_s - self._clock.seconds()
        if wait > 0:
            self._call = self._clock.callLater(wait, self._paced)
        else:
            self._release_within_budget()

    def flush(self) -> None:
        """Release what is held, budget or not (the run is ending)."""
        self._cancel_timer()
        self._release()

    def _paced(self) -> None:
        self._call = None
        self._release_within_budget()

    def _release_within_budget(self) -> None:
        # Over budget, the text waits: the next delta checks again, and flush() ends it.
        if self._copied + self._length <= self._copies * self._length + self._free_chars:
            self._release()

    def _release(self) -> None:
        if not self._pending:
            return
        batch = "".join(self._pending)
        self._pending = []
        self._copied += self._length
        self._last = self._clock.seconds()
        self._publish(batch)

    def _cancel_timer(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
