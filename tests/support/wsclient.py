"""A small Autobahn WebSocket client for tests: await frames, send JSON, observe the close."""
from __future__ import annotations

import json
import time
import uuid
from collections import deque
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet.defer import Deferred, inlineCallbacks

from openclaw.security.device_identity import DeviceKeyPair

from .gateway import TOKEN

CLI_CLIENT = {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"}
OPERATOR_SCOPES = ["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"]


class _TestProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._received(payload, isBinary)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.factory.client._closed_with(code, reason)


class TestClient:
    """Frames arrive in order into a queue; ``next_frame`` waits for the next one."""

    def __init__(self) -> None:
        self.protocol: _TestProtocol | None = None
        self.frames: deque[Any] = deque()
        self._waiters: deque[Deferred] = deque()
        self.opened: Deferred = Deferred()
        self.closed: Deferred = Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.challenge: dict[str, Any] | None = None
        self.skipped: list[Any] = []
        self.received_bytes = 0  # message payload bytes, for tests that bound what a run costs
        self.event_seqs: list[int] = []  # every event's seq, in arrival order (gap checks)

    def _opened(self, protocol: _TestProtocol) -> None:
        self.protocol = protocol
        self.opened.callback(self)

    def _received(self, payload: bytes, is_binary: bool) -> None:
        self.received_bytes += len(payload)
        frame = payload if is_binary else json.loads(payload)
        if isinstance(frame, dict) and frame.get("type") == "event" and isinstance(frame.get("seq"), int):
            self.event_seqs.append(frame["seq"])
        if self._waiters:
            self._waiters.popleft().callback(frame)
        else:
            self.frames.append(frame)

    def _closed_with(self, code: Any, reason: Any) -> None:
        self.close_code, self.close_reason = code, reason
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"websocket closed before open: {code} {reason}"))
        while self._waiters:
            self._waiters.popleft().errback(ConnectionError(f"closed: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((code, reason))

    def next_frame(self) -> Deferred:
        if self.frames:
            d: Deferred = Deferred()
            d.callback(self.frames.popleft())
            return d
        if self.closed.called:
            d = Deferred()
            d.errback(ConnectionError(f"closed: {self.close_code} {self.close_reason}"))
            return d
        d = Deferred()
        self._waiters.append(d)
        return d

    @inlineCallbacks
    def next_matching(self, predicate: Any, limit: int = 50):
        """Wait for a frame satisfying ``predicate``; frames passed over are kept in ``skipped``."""
        for _ in range(limit):
            frame = yield self.next_frame()
            if predicate(frame):
                return frame
            self.skipped.append(frame)
        raise AssertionError("no matching frame")

    def send(self, frame: Any) -> None:
        self.protocol.sendMessage(json.dumps(frame).encode("utf-8"), isBinary=False)

    def send_raw(self, data: bytes, binary: bool = False) -> None:
        self.protocol.sendMessage(data, isBinary=binary)

    @inlineCallbacks
    def request(self, method: str, params: Any = None, request_id: str | None = None):
        """Send a req and wait for its res (events in between are kept in ``skipped``)."""
        request_id = request_id or uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "req", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = params
        self.send(frame)
        response = yield self.next_matching(lambda f: isinstance(f, dict) and f.get("type") == "res" and f.get("id") == request_id)
        return response

    def close(self) -> Deferred:
        if self.protocol is not None and not self.closed.called:
            self.protocol.sendClose(1000)
        return self.closed


@inlineCallbacks
def open_client(testcase: Any, url: str, headers: dict[str, str] | None = None, context_factory: Any = None):
    """Connect and wait for the ``connect.challenge``; the socket is closed after the test.

    ``context_factory`` is the TLS connection creator for ``wss://`` URLs (e.g. a pinned one).
    """
    client = TestClient()
    factory = WebSocketClientFactory(url, headers=headers or {})
    factory.protocol = _TestProtocol
    factory.client = client
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=5, closeHandshakeTimeout=1)

    def connection_failed(_connector: Any, reason: Any) -> None:
        # A refused TCP connect never reaches the protocol: fail ``opened`` instead of hanging.
        if not client.opened.called:
            client.opened.errback(reason)

    factory.clientConnectionFailed = connection_failed
    connector = connectWS(factory, contextFactory=context_factory)

    def cleanup():
        if client.protocol is not None and not client.closed.called:
            client.protocol.dropConnection(abort=True)
        connector.disconnect()
        return client.closed if client.protocol is not None else None

    testcase.addCleanup(cleanup)
    yield client.opened
    challenge = yield client.next_frame()
    client.challenge = challenge
    return client


def connect_params(
    *,
    token: str | None = TOKEN,
    client: dict[str, Any] | None = None,
    role: str = "operator",
    scopes: list[str] | None = None,
    device: DeviceKeyPair | None = None,
    nonce: str | None = None,
    signed_at_ms: int | None = None,
    auth: dict[str, Any] | None = None,
    min_protocol: int = 4,
    max_protocol: int = 4,
    signature_version: str = "v3",
    **extra: Any,
) -> dict[str, Any]:
    """Connect params as the reference clients send them, optionally signed by ``device``."""
    client = dict(client or CLI_CLIENT)
    scopes = list(OPERATOR_SCOPES if scopes is None else scopes)
    if auth is None:
        auth = {"token": token} if token is not None else {}
    params: dict[str, Any] = {
        "minProtocol": min_protocol,
        "maxProtocol": max_protocol,
        "client": client,
        "role": role,
        "scopes": scopes,
        "caps": [],
        "auth": auth,
        **extra,
    }
    if device is not None:
        params["device"] = device.device_block(
            nonce=nonce or "",
            signed_at_ms=signed_at_ms if signed_at_ms is not None else int(time.time() * 1000),
            client=client,
            role=role,
            scopes=scopes,
            auth=auth,
            version=signature_version,
        )
    return params


@inlineCallbacks
def connect(
    testcase: Any, url: str, *, headers: dict[str, str] | None = None, context_factory: Any = None, **kwargs: Any
):
    """Open a socket and complete ``connect``; returns ``(client, response_frame)``."""
    client = yield open_client(testcase, url, headers=headers, context_factory=context_factory)
    nonce = client.challenge["payload"]["nonce"]
    kwargs.setdefault("signed_at_ms", client.challenge["payload"]["ts"])
    params = connect_params(nonce=nonce, **kwargs)
    response = yield client.request("connect", params, request_id="connect-1")
    return (client, response)
