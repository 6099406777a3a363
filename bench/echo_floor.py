"""The floor: what Twisted + Autobahn alone can do on this machine, shaped like a gateway.

    python bench/echo_floor.py --port 18799

Sends ``connect.challenge`` on open, answers ``connect`` with a fixed ``hello-ok`` and every other
request with ``{"ok": true}``; ``system-event`` also sends a ``presence`` event to every open
socket so fan-out has a floor too. No validation, no crypto, no state: any gateway built on this
stack costs at least this much, so each of our figures is reported as a ratio to it.
"""
from __future__ import annotations

import argparse
import sys
import uuid

import orjson
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.python import log

HELLO = {
    "type": "hello-ok",
    "protocol": 4,
    "server": {"version": "floor", "connId": "floor"},
    "features": {"methods": ["health", "status", "system-event"], "events": ["presence", "tick"]},
    "snapshot": {"presence": [], "health": {}, "stateVersion": {"presence": 0, "health": 0}},
    "policy": {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 30000},
}


class FloorProtocol(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.factory.sockets.add(self)
        nonce = uuid.uuid4().hex
        self.sendMessage(orjson.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": nonce, "ts": 0}}))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame = orjson.loads(payload)
        method = frame.get("method")
        result = HELLO if method == "connect" else {"ok": True}
        self.sendMessage(orjson.dumps({"type": "res", "id": frame.get("id"), "ok": True, "payload": result}))
        if method == "system-event":
            event = orjson.dumps({"type": "event", "event": "presence", "payload": {"presence": []}})
            for socket in self.factory.sockets:
                socket.sendMessage(event)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.sockets.discard(self)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18799)
    args = parser.parse_args()
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.port}")
    factory.protocol = FloorProtocol
    factory.sockets = set()
    reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    log.startLogging(sys.stderr, setStdout=False)
    reactor.run()


if __name__ == "__main__":
    main()
