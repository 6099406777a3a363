"""Every place the gateway reaches past Autobahn's public API, fenced in one module.

Two shortcuts pay for themselves on the hot paths (bench/results/ has the profiles):

- ``write_text_frame``: a server text frame is ``0x81`` + the length + the payload once
  compression and auto-fragmentation are off, and writing that straight to the transport skips
  ``sendMessage``'s argument checks, stats and eager debug formatting, about a quarter of a
  fan-out's per-recipient time.
- ``format_debug_only``: Autobahn pretty-prints its ~40 protocol options for a debug line on every
  new connection, whether debug logging is on or not; that ``pformat`` was a fifth of a
  handshake's CPU. Installed in Autobahn's module, it formats only when txaio logs debug.

setup.cfg caps Autobahn below its next major release, and tests/test_autobahn_fence.py compares
both shortcuts with Autobahn's own behaviour (frames byte for byte; the name still looked up by
``_connectionMade``), so an Autobahn release that changes these internals fails a test, not a
user's connection.
"""
from __future__ import annotations

import struct
from pprint import pformat
from typing import Any

import autobahn.websocket.protocol as _autobahn_protocol
import txaio

# Server-to-client text frame headers (FIN + opcode 1, unmasked), RFC 6455 §5.2.
_SHORT_HEADERS = tuple(bytes((0x81, size)) for size in range(126))
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")

_DEBUG_LEVELS = frozenset({"debug", "trace"})
NOT_FORMATTED = "(not formatted: Autobahn debug logging is off)"


def can_write_directly(protocol: Any, size: int) -> bool:
    """Whether a frame may bypass ``sendMessage``: the socket is open, Autobahn has nothing queued
    of its own (order must hold), and the payload is within the limit (``sendMessage`` raises)."""
    if protocol.state != protocol.STATE_OPEN or protocol.send_queue:
        return False
    limit = protocol.maxMessagePayloadSize
    return not (limit > 0 and size > limit)


def write_text_frame(protocol: Any, frame: bytes) -> None:
    """One unfragmented, unmasked, uncompressed text frame: header and payload, no copy."""
    size = len(frame)
    if not can_write_directly(protocol, size):
        protocol.sendMessage(frame, isBinary=False)
        return
    if size <= 125:
        header = _SHORT_HEADERS[size]
    elif size <= 0xFFFF:
        header = _HEADER_16.pack(0x81, 126, size)
    else:
        header = _HEADER_64.pack(0x81, 127, size)
    protocol.transport.writeSequence((header, frame))


def format_debug_only(value: Any, *args: Any, **kwargs: Any) -> str:
    """``pprint.pformat`` when txaio logs debug; otherwise a constant, without the work."""
    # txaio.use_twisted() installs this at runtime; txaio's typed facade does not declare it.
    if txaio.get_global_log_level() in _DEBUG_LEVELS:  # type: ignore[attr-defined]
        return pformat(value, *args, **kwargs)
    return NOT_FORMATTED


def defer_debug_formatting() -> None:
    """Make Autobahn's per-connection debug ``pformat`` conditional. Idempotent.

    Called by the gateway's WebSocket factory; it changes a name in Autobahn's module, so it
    affects every Autobahn protocol in the process, all of which only use it for debug output.
    """
    if getattr(_autobahn_protocol, "pformat", None) is not format_debug_only:
        # Through setattr: Autobahn does not export the name it looks up (tests/test_autobahn_fence.py).
        setattr(_autobahn_protocol, "pformat", format_debug_only)  # noqa: B010
