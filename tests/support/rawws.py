"""A lean WebSocket client for load tests: thousands of sockets without Autobahn's per-socket cost.

It writes one pre-built upgrade request, parses the status line and then just enough of RFC 6455
to read unfragmented server frames (text, close, ping). Frames it sends are masked as the RFC
requires. Text frames are decoded as JSON and handed to whoever waits for them.

The socket never answers a close itself (apart from echoing it back, as a real client would),
so a test can also use it as a peer that stops reading: ``stop_reading()`` pauses the transport,
after which the kernel buffers fill and the gateway has to hold, drop or close.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import orjson
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from .gateway import TOKEN
from .wsclient import CLI_CLIENT, OPERATOR_SCOPES

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(port: int, path: str = "/") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = os.urandom(4)
    if length:
        repeated = (key * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    else:
        masked = b""
    return header + key + masked


def text_frame(frame: Any) -> bytes:
    return mask_frame(orjson.dumps(frame))


def request_frame(request_id: str, method: str, params: Any = None) -> bytes:
    frame: dict[str, Any] = {"type": "req", "id": request_id, "method": method}
    if params is not None:
        frame["params"] = params
    return text_frame(frame)


def connect_frame(
    token: str | None = TOKEN,
    scopes: list[str] | None = None,
    request_id: str = "connect-1",
    instance_id: str | None = None,
) -> bytes:
    """A device-less CLI ``connect`` (token auth), as the reference CLI sends it from localhost."""
    client = dict(CLI_CLIENT)
    if instance_id is not None:
        client["instanceId"] = instance_id
    params = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": client,
        "role": "operator",
        "scopes": list(OPERATOR_SCOPES if scopes is None else scopes),
        "caps": [],
        "auth": {"token": token} if token is not None else {},
    }
    return request_frame(request_id, "connect", params)


class RawWebSocket(Protocol):
    """One client socket. ``status`` is the HTTP status of the upgrade answer once it is known."""

    max_kept = 1000  # unclaimed frames beyond this are forgotten (an idle socket still gets ticks)

    def __init__(self, request: bytes):
        self._request = request
        self._buffer = bytearray()
        self._head_done = False
        self.status: int | None = None
        self.http_response = b""  # the whole answer when the upgrade was refused
        self.frames: list[Any] = []  # decoded frames nobody has claimed yet
        self._waiters: list[tuple[Callable[[Any], bool], Deferred]] = []
        self.upgraded: Deferred = Deferred()  # fires with the status (101) or errbacks on refusal
        self.lost: Deferred = Deferred()
        self.connected = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.bytes_received = 0

    # -- Protocol ----------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if not self._head_done:
            self._buffer += data
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end])
            self.status = int(head.split(b" ", 2)[1])
            if self.status != 101:
                self.http_response += bytes(self._buffer)  # the rest arrives until the server hangs up
                self._buffer.clear()
                self._head_done = True
                return
            self._head_done = True
            del self._buffer[: end + 4]
            self.upgraded.callback(self.status)
        elif self.status != 101:
            self.http_response += data
            return
        else:
            self._buffer += data
        self._parse()

    def connectionLost(self, reason: Any = None) -> None:
        self.connected = False
        if not self.upgraded.called:
            self.upgraded.errback(ConnectionError(f"upgrade refused: {self.status} {self.http_response[:200]!r}"))
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(ConnectionError(f"closed: {self.close_code} {self.close_reason}"))
        self.lost.callback(self)

    # -- frames ------------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", buffer, 2)
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", buffer, 2)
                offset = 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            self._received(orjson.loads(payload))
        elif opcode == 0x8:
            if len(payload) >= 2:
                (self.close_code,) = struct.unpack("!H", payload[:2])
                self.close_reason = payload[2:].decode("utf-8")
            else:
                self.close_code, self.close_reason = 1005, ""
            if self.transport is not None and self.connected:
                self.transport.write(mask_frame(payload[:2], opcode=0x8))  # echo the close
        elif opcode == 0x9:
            self.transport.write(mask_frame(payload, opcode=0xA))
        elif opcode == 0x2:
            self._received(payload)
        # pongs (0xA) and anything else are ignored; the server never fragments (autoFragmentSize=0)

    def _received(self, frame: Any) -> None:
        for entry in self._waiters:
            predicate, d = entry
            if predicate(frame):
                self._waiters.remove(entry)
                d.callback(frame)
                return
        self.frames.append(frame)
        if len(self.frames) > self.max_kept:
            del self.frames[0]

    def wait_for(self, predicate: Callable[[Any], bool]) -> Deferred:
        """The first unclaimed frame (already received or still to come) that satisfies ``predicate``."""
        for index, frame in enumerate(self.frames):
            if predicate(frame):
                del self.frames[index]
                d: Deferred = Deferred()
                d.callback(frame)
                return d
        d = Deferred()
        if not self.connected:
            d.errback(ConnectionError(f"closed: {self.close_code} {self.close_reason}"))
            return d
        self._waiters.append((predicate, d))
        return d

    def wait_response(self, request_id: str) -> Deferred:
        return self.wait_for(lambda f: isinstance(f, dict) and f.get("type") == "res" and f.get("id") == request_id)

    def wait_event(self, event: str) -> Deferred:
        return self.wait_for(lambda f: isinstance(f, dict) and f.get("type") == "event" and f.get("event") == event)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def request(self, request_id: str, method: str, params: Any = None) -> Deferred:
        d = self.wait_response(request_id)
        self.send(request_frame(request_id, method, params))
        return d

    def stop_reading(self) -> None:
        """Stop reading from the socket for good (the peer's writes back up into the kernel, then the gateway)."""
        self.transport.pauseProducing()

    def abort(self) -> Deferred:
        if self.connected:
            self.transport.abortConnection()
        return self.lost


@inlineCallbacks
def close_all(sockets: list[RawWebSocket]):
    """Abort every socket that got as far as connecting and wait until each has gone."""
    waiting = []
    for socket in sockets:
        if socket.transport is not None:  # connectProtocol may still be pending or have failed
            waiting.append(socket.abort())
    yield DeferredList(waiting, consumeErrors=True)


@inlineCallbacks
def open_raw(port: int, request: bytes | None = None, track: list | None = None):
    """Connect a RawWebSocket to 127.0.0.1:``port`` and send the upgrade request.

    ``track`` collects every socket as soon as it exists, so a cleanup can close them all.
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocol = RawWebSocket(request if request is not None else upgrade_request(port))
    if track is not None:
        track.append(protocol)
    yield connectProtocol(endpoint, protocol)
    return protocol


@inlineCallbacks
def open_authenticated(port: int, request: bytes, connect: bytes, track: list | None = None):
    """Upgrade, wait for the challenge, send the pre-built ``connect`` and wait for ``hello-ok``."""
    socket = yield open_raw(port, request, track)
    try:
        yield socket.upgraded
        yield socket.wait_event("connect.challenge")
        socket.send(connect)
        hello = yield socket.wait_response("connect-1")
    except Exception:
        socket.abort()
        raise
    if not hello.get("ok"):
        socket.abort()
        raise AssertionError(f"connect refused: {hello}")
    socket.hello = hello
    return socket


def gather(deferreds: list[Deferred]) -> Deferred:
    """All results in order; the first failure fails the whole (after every one has settled)."""
    return DeferredList(deferreds, fireOnOneErrback=False, consumeErrors=True).addCallback(_unwrap)


def _unwrap(results: list[tuple[bool, Any]]) -> list[Any]:
    for ok, value in results:
        if not ok:
            value.raiseException()
    return [value for _, value in results]
