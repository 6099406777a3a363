"""The one load client every benchmark scenario drives every target with.

Ours, the reference and the raw Autobahn floor are all measured through this same code, in the
same process, on the same cores, so their numbers differ only by the server. It is deliberately
lean (orjson, no validation, no UTF-8 re-checking) so the client is not what saturates first.
"""
from __future__ import annotations

import itertools
import time
from typing import Any
from collections.abc import Callable

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer
from twisted.internet.error import ConnectionDone

from openclaw.security.device_identity import DeviceKeyPair

CLIENT = {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"}
READ = ["operator.read"]
ADMIN = ["operator.admin", "operator.read", "operator.write"]


class HandshakeFailed(Exception):
    """The gateway answered ``connect`` with an error, or closed before ``hello-ok``."""


class Credentials:
    """What a connect says: the shared token, the scopes, and optionally a device that signs (v3)."""

    def __init__(self, token: str, scopes: list[str] = READ, device: DeviceKeyPair | None = None):
        self.token = token
        self.scopes = list(scopes)
        self.device = device

    def connect_params(self, nonce: str | None) -> dict[str, Any]:
        auth = {"token": self.token}
        params: dict[str, Any] = {
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": CLIENT,
            "role": "operator",
            "scopes": self.scopes,
            "auth": auth,
        }
        if self.device is not None and nonce is not None:
            params["device"] = self.device.device_block(
                nonce=nonce,
                signed_at_ms=int(time.time() * 1000),
                client=CLIENT,
                role="operator",
                scopes=self.scopes,
                auth=auth,
            )
        return params


class GatewayConnection(WebSocketClientProtocol):
    """Challenge → connect → ``hello-ok``, then requests by id and events to a callback."""

    _ids = itertools.count()

    def onConnect(self, response: Any) -> None:
        self.pending: dict[str, defer.Deferred] = {}
        self.on_event: Callable[[dict[str, Any], float], None] | None = None
        self.hello: dict[str, Any] | None = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        arrived = time.perf_counter()
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if kind == "res":
            waiting = self.pending.pop(frame.get("id"), None)
            if waiting is not None:
                waiting.callback(frame)
        elif kind == "event":
            if frame.get("event") == "connect.challenge":
                nonce = (frame.get("payload") or {}).get("nonce")
                self._connect(nonce)
            elif self.on_event is not None:
                self.on_event(frame, arrived)

    def _connect(self, nonce: str | None) -> None:
        ready: defer.Deferred = self.factory.ready
        answer = self.request("connect", self.factory.credentials.connect_params(nonce))

        def answered(frame: dict[str, Any]) -> None:
            if frame.get("ok"):
                self.hello = frame.get("payload")
                if not ready.called:
                    ready.callback(self)
            elif not ready.called:
                ready.errback(HandshakeFailed(frame.get("error")))

        answer.addCallbacks(answered, lambda failure: None if ready.called else ready.errback(failure))

    def request(self, method: str, params: Any = None) -> defer.Deferred:
        request_id = f"b{next(self._ids)}"
        waiting: defer.Deferred = defer.Deferred()
        self.pending[request_id] = waiting
        frame = {"type": "req", "id": request_id, "method": method, "params": params if params is not None else {}}
        self.sendMessage(orjson.dumps(frame))
        return waiting

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        ready: defer.Deferred = self.factory.ready
        if not ready.called:
            ready.errback(HandshakeFailed({"closeCode": code, "reason": reason}))
        pending, self.pending = getattr(self, "pending", {}), {}
        for waiting in pending.values():
            waiting.errback(ConnectionDone(f"closed {code} {reason}"))

    def close(self) -> None:
        if self.state == self.STATE_OPEN:
            self.sendClose(1000)
        elif self.transport is not None:
            self.transport.abortConnection()


def connect(url: str, credentials: Credentials, timeout: float = 30.0, reactor: Any = None) -> defer.Deferred:
    """A Deferred that fires with an open, authenticated :class:`GatewayConnection`."""
    if reactor is None:
        from twisted.internet import reactor  # noqa: F811 - the script's reactor, chosen at run time
    factory = WebSocketClientFactory(url)
    factory.setProtocolOptions(utf8validateIncoming=False, openHandshakeTimeout=timeout)
    factory.protocol = GatewayConnection
    factory.credentials = credentials
    factory.ready = defer.Deferred()
    connectWS(factory, timeout=timeout)
    return factory.ready


@defer.inlineCallbacks
def run_pool(count: int, concurrency: int, job: Callable[[], defer.Deferred]):
    """Run ``job`` ``count`` times, at most ``concurrency`` at once; fails on the first failure."""
    remaining = count

    @defer.inlineCallbacks
    def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            yield job()

    yield defer.gatherResults([worker() for _ in range(min(concurrency, count))], consumeErrors=True)


@defer.inlineCallbacks
def connect_many(url: str, credentials: Credentials, count: int, concurrency: int = 16):
    """``count`` connections opened at most ``concurrency`` at a time.

    The reference refuses more than 32 unauthenticated sockets per address, so waves stay below it.
    """
    opened: list[GatewayConnection] = []
    yield run_pool(count, concurrency, lambda: connect(url, credentials).addCallback(opened.append))
    return opened


def close_all(connections: list[GatewayConnection]) -> None:
    for connection in connections:
        connection.close()


def percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
