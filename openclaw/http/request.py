"""The Site's request class: request bodies are bounded in size and in time while they arrive.

twisted.web would otherwise buffer any body a client sends, for as long as it takes. Here a body
over the cap (20 MiB, the reference's limit) is refused with 413 as soon as its declared length,
or its running total, says so, and a body that has not fully arrived 30 s after the headers is
answered 408; both close the connection, since the rest of the body cannot be trusted to frame
the next request.
"""
from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.interfaces import IDelayedCall
from twisted.web import server

from .headers import SECURITY_HEADERS

MAX_BODY_BYTES = 20 * 1024 * 1024
BODY_TIMEOUT_S = 30.0

_REASONS = {408: b"Request Timeout", 413: b"Payload Too Large"}

# Standard reason phrases twisted.web does not know (it would send "Unknown Status").
EXTRA_REASON_PHRASES = {
    421: b"Misdirected Request",
    422: b"Unprocessable Content",
    425: b"Too Early",
    426: b"Upgrade Required",
    428: b"Precondition Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    451: b"Unavailable For Legal Reasons",
    511: b"Network Authentication Required",
}


def openai_error_body(message: str, error_type: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type}})


class GatewayRequest(server.Request):
    _rejected = False
    _received = 0
    _body_timer: IDelayedCall | None = None

    def _limits(self) -> tuple[int, float, Any]:
        site = getattr(self.channel, "site", None)
        return (
            getattr(site, "max_body_bytes", MAX_BODY_BYTES),
            getattr(site, "body_timeout_s", BODY_TIMEOUT_S),
            getattr(site, "reactor", None),
        )

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if message is None:
            message = EXTRA_REASON_PHRASES.get(code)
        super().setResponseCode(code, message)

    def gotLength(self, length: int | None) -> None:
        cap, timeout, reactor = self._limits()
        if length is not None and length > cap:
            self._reject(413, "Payload too large")
            return
        super().gotLength(length)
        if length != 0 and reactor is not None:
            self._body_timer = reactor.callLater(timeout, self._reject, 408, "Request body timeout")

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        self._received += len(data)
        if self._received > self._limits()[0]:
            self._reject(413, "Payload too large")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._cancel_body_timer()
        if self._rejected:
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._cancel_body_timer()
        super().connectionLost(reason)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None and self._body_timer.active():
            self._body_timer.cancel()
        self._body_timer = None

    def _reject(self, status: int, message: str) -> None:
        """Answer on the raw connection (the request line may not even be processed yet) and close."""
        if self._rejected:
            return
        self._rejected = True
        self._cancel_body_timer()
        body = openai_error_body(message)
        head = [b"HTTP/1.1 %d %s" % (status, _REASONS[status])]
        head += [name + b": " + value for name, value in SECURITY_HEADERS]
        head += [
            b"Content-Type: application/json; charset=utf-8",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        transport = self.channel.transport
        if transport is None:  # the client already went away: nobody to answer
            return
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        transport.loseConnection()
