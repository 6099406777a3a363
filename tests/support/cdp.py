"""Drive Debian's Chromium headless over the DevTools protocol (CDP), with Autobahn's client.

Chromium is started with ``--remote-debugging-port=0``; it prints the browser's DevTools WebSocket
address on stderr, which :class:`_ChromiumProcess` waits for (no polling, no sleeping). One page
target is created and attached in "flat" mode, so every command carries its ``sessionId`` over
the one browser WebSocket. Events (console messages, WebSocket frames the page sends and
receives, load events) are kept in order, and :meth:`Browser.wait_for` evaluates a JavaScript
predicate after each event and on a short reactor-driven tick until it holds or a deadline passes.

Used by the browser test and by ``bench/ui_load.py``; the capture script in the docs uses the
``frames`` list to record what a UI sends and receives.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any
from collections.abc import Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import error, protocol
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--window-size=1280,900",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")
STDERR_LIMIT = 64 * 1024


class _ChromiumProcess(protocol.ProcessProtocol):
    """Waits for the DevTools address on stderr; ``ended`` fires when the process is gone."""

    def __init__(self) -> None:
        self.address: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self.stderr = b""

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-STDERR_LIMIT:]
        match = _LISTENING.search(self.stderr)
        if match and not self.address.called:
            self.address.callback(match.group(1).decode())

    def processEnded(self, reason: Any) -> None:
        if not self.address.called:
            self.address.errback(RuntimeError(f"chromium exited before DevTools was up: {self.stderr[-2000:]!r}"))
        self.ended.callback(None)


class _CdpProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.browser._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.browser._message(json.loads(payload))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.factory.browser._closed(code, reason)


class CdpError(Exception):
    pass


class Browser:
    """One headless Chromium with one page; see the module docstring."""

    def __init__(self, reactor: Any, chromium: str):
        self.reactor = reactor
        self.chromium = chromium
        self.profile = tempfile.mkdtemp(prefix="openclaw-chromium-")
        self.process = _ChromiumProcess()
        self.transport: Any = None
        self.ws: _CdpProtocol | None = None
        self.session_id: str | None = None
        self.events: list[dict[str, Any]] = []
        self.console: list[str] = []
        self.frames: list[tuple[str, str, Any]] = []  # (direction, url or "", payload)
        self.http: list[tuple[int, str]] = []  # (status, url) of every HTTP response the page got
        self._ws_urls: dict[str, str] = {}
        self._next_id = 0
        self._pending: dict[int, Deferred] = {}
        self._opened_d: Deferred = Deferred()
        self._event_waiters: list[Deferred] = []

    # -- lifecycle ------------------------------------------------------------------------------

    @inlineCallbacks
    def start(self) -> Any:
        args = [self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"]
        self.transport = self.reactor.spawnProcess(self.process, self.chromium, args, env=dict(os.environ))
        address = yield self.process.address
        factory = WebSocketClientFactory(address)
        factory.protocol = _CdpProtocol
        factory.browser = self
        factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
        connectWS(factory)
        yield self._opened_d
        target = yield self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = yield self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session_id = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            yield self.send(f"{domain}.enable")
        return self

    @inlineCallbacks
    def stop(self) -> Any:
        if self.ws is not None:
            try:
                yield self.send("Browser.close", session=False)
            except Exception:
                pass
        if not self.process.ended.called:
            try:
                self.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
        yield self.process.ended
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- the wire -------------------------------------------------------------------------------

    def _opened(self, ws: _CdpProtocol) -> None:
        self.ws = ws
        self._opened_d.callback(ws)

    def _closed(self, code: Any, reason: Any) -> None:
        self.ws = None
        if not self._opened_d.called:
            self._opened_d.errback(CdpError(f"DevTools socket closed: {code} {reason}"))
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(CdpError(f"DevTools socket closed: {code} {reason}"))

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> Deferred:
        if self.ws is None:
            raise CdpError("DevTools socket is not open")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session_id:
            message["sessionId"] = self.session_id
        d: Deferred = Deferred()
        self._pending[self._next_id] = d
        self.ws.sendMessage(json.dumps(message).encode())
        return d

    def _message(self, message: dict[str, Any]) -> None:
        if "id" in message:
            d = self._pending.pop(message["id"], None)
            if d is None:
                return
            if "error" in message:
                d.errback(CdpError(json.dumps(message["error"])))
            else:
                d.callback(message.get("result", {}))
            return
        self._event(message.get("method", ""), message.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            self.http.append((response.get("status", 0), response.get("url", "")))
        elif method == "Network.webSocketCreated":
            self._ws_urls[params["requestId"]] = params.get("url", "")
        elif method in ("Network.webSocketFrameSent", "Network.webSocketFrameReceived"):
            direction = "sent" if method.endswith("Sent") else "received"
            data = params.get("response", {}).get("payloadData", "")
            try:
                payload: Any = json.loads(data)
            except ValueError:
                payload = data
            self.frames.append((direction, self._ws_urls.get(params["requestId"], ""), payload))
        self.events.append({"method": method, "params": params})
        del self.events[:-2000]
        waiters, self._event_waiters = self._event_waiters, []
        for d in waiters:
            d.callback(None)

    # -- page helpers ---------------------------------------------------------------------------

    def navigate(self, url: str) -> Deferred:
        return self.send("Page.navigate", {"url": url})

    @inlineCallbacks
    def evaluate(self, expression: str) -> Any:
        result = yield self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise CdpError(json.dumps(result["exceptionDetails"])[:2000])
        return result.get("result", {}).get("value")

    @inlineCallbacks
    def wait_for(self, expression: str, timeout_s: float = 20.0, tick_s: float = 0.05) -> Any:
        """Evaluate ``expression`` until it is truthy; its value, or CdpError after ``timeout_s``.

        The UI renders asynchronously (Lit updates after WebSocket frames), so the predicate is
        re-checked on a short reactor tick as well as after each CDP event.
        """
        deadline = self.reactor.seconds() + timeout_s
        while True:
            value = yield self.evaluate(expression)
            if value:
                return value
            if self.reactor.seconds() >= deadline:
                raise CdpError(f"timed out after {timeout_s}s waiting for: {expression}")
            yield deferLater(self.reactor, tick_s, lambda: None)

    @inlineCallbacks
    def screenshot(self, path: str) -> Any:
        import base64

        shot = yield self.send("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))
        return path

    def requests(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Gateway requests the page sent (``{"type": "req", ...}``), in order."""
        sent = [payload for direction, _, payload in self.frames if direction == "sent" and isinstance(payload, dict)]
        requests = [frame for frame in sent if frame.get("type") == "req"]
        return [frame for frame in requests if predicate is None or predicate(frame)]

    def responses(self) -> dict[str, dict[str, Any]]:
        """Gateway responses the page received, by request id."""
        return {
            payload["id"]: payload
            for direction, _, payload in self.frames
            if direction == "received" and isinstance(payload, dict) and payload.get("type") == "res"
        }
