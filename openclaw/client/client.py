"""``GatewayClient``: a reconnecting gateway client for Twisted programs.

It speaks the protocol the way the reference clients do: it waits for ``connect.challenge``,
signs the v3 device payload, keeps the device token the gateway issues (per device and role) and
uses it when the shared secret is absent, keeps the ``hello-ok`` snapshot current (``presence`` and
``health`` events, and a refetch of ``health`` and ``system-presence`` after a ``seq`` gap), closes
with 4000 when the server goes silent for two tick intervals, and reconnects with backoff (1 s
doubling to 30 s). It waits ``retryAfterMs`` when a refusal says so, the announced
``restartExpectedMs`` after a ``shutdown``, and stops for good when retrying cannot help: closed on
purpose, refused for good (1008 without a retryable error, 4001), a protocol mismatch (1002), or a
TLS certificate that fails verification or the pin.
"""
from __future__ import annotations

import json
import platform as platform_module
import uuid
from typing import Any, cast
from collections.abc import Callable, Mapping

import attrs
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import __version__
from ..protocol.constants import PROTOCOL_VERSION
from ..security.device_identity import DeviceKeyPair
from ..tls.certificates import normalize_fingerprint
from .identity import DeviceTokenStore

DEFAULT_REQUEST_TIMEOUT_S = 30.0
RECONNECT_INITIAL_S = 1.0
RECONNECT_MAX_S = 30.0
TICK_WATCHDOG_CLOSE_CODE = 4000
CLOSE_HINTS = {
    1000: "normal closure",
    1002: "protocol mismatch: the gateway speaks no protocol version in this client's window",
    1006: "abnormal closure (no close frame): the network or the server went away",
    1008: "policy violation: check credentials, scopes and pairing",
    1012: "service restart: reconnecting soon",
    1013: "try again later: the gateway is starting or restarting",
    4000: "tick timeout: the server went silent",
    4001: "device token invalidated: authenticate again",
}
# Closes after which retrying cannot help. 1008 is retried only when the refusal says it may be
# (``retryable`` / ``recommendedNextStep: wait_then_retry``: rate limited, pairing pending).
NO_RECONNECT = frozenset((1002, 1008, 4001))
TLS_PIN_MISMATCH = "TLS_PIN_MISMATCH"
TLS_CERTIFICATE_REJECTED = "TLS_CERTIFICATE_REJECTED"


class GatewayCallError(Exception):
    """A failed response (or a request that could not complete), in the protocol's shape."""

    def __init__(
        self,
        code: str,
        message: str,
        details: Any = None,
        payload: Any = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.payload = payload
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms

    @property
    def may_retry(self) -> bool:
        """The gateway says trying again later can succeed (rate limited, pairing pending, draining)."""
        details = self.details if isinstance(self.details, Mapping) else {}
        if details.get("pauseReconnect") is True:
            return False
        return self.retryable is True or details.get("retryable") is True or details.get("recommendedNextStep") == "wait_then_retry"


def _check_fingerprint(instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None:
        normalize_fingerprint(value)  # ValueError now rather than at the first connect


@attrs.define
class ClientOptions:
    url: str
    token: str | None = None
    password: str | None = None
    client_id: str = "cli"
    display_name: str | None = None
    version: str = __version__
    platform: str = attrs.field(factory=lambda: platform_module.system().lower() or "unknown")
    mode: str = "cli"
    instance_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    role: str = "operator"
    scopes: tuple[str, ...] = ("operator.read", "operator.write")
    caps: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    permissions: Mapping[str, bool] = attrs.field(factory=dict)
    device: DeviceKeyPair | None = None
    device_tokens: DeviceTokenStore = attrs.field(factory=DeviceTokenStore)
    min_protocol: int = PROTOCOL_VERSION
    max_protocol: int = PROTOCOL_VERSION
    tls_fingerprint: str | None = attrs.field(default=None, validator=_check_fingerprint)
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    reconnect: bool = True


class _Pending:
    def __init__(self, deferred: Deferred[Any], expect_final: bool):
        self.deferred = deferred
        self.expect_final = expect_final


class GatewayClientProtocol(WebSocketClientProtocol):
    _log = Logger()

    def onOpen(self) -> None:
        self.owner: GatewayClient = self.factory.owner
        self.pending: dict[str, _Pending] = {}
        self.expected_seq: int | None = None
        self.hello: dict[str, Any] | None = None
        self._watchdog: IDelayedCall | None = None
        self.owner._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        self._feed_watchdog()
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "event":
            self._event(frame)
        elif kind == "res":
            self._response(frame)

    # -- requests ----------------------------------------------------------------------------

    def request(self, method: str, params: Any, timeout_s: float, expect_final: bool = False) -> Deferred[Any]:
        request_id = str(uuid.uuid4())

        def forget(cancelled: Deferred[Any]) -> None:
            """Cancelled (by the timeout or the caller): a late answer is then ignored."""
            self.pending.pop(request_id, None)

        def timed_out(result: Any, timeout: float) -> Any:
            raise GatewayCallError("TIMEOUT", f"{method} timed out")

        d: Deferred[Any] = Deferred(forget)
        self.pending[request_id] = _Pending(d, expect_final)
        frame = {"type": "req", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = params
        self.sendMessage(json.dumps(frame).encode("utf-8"), isBinary=False)
        return d.addTimeout(timeout_s, self.owner.clock, onTimeoutCancel=timed_out)

    def _response(self, frame: dict[str, Any]) -> None:
        request_id = frame.get("id")
        if not isinstance(request_id, str):
            return
        pending = self.pending.get(request_id)
        if pending is None:
            return
        payload = frame.get("payload")
        if frame.get("ok") and pending.expect_final and isinstance(payload, dict) and payload.get("status") == "accepted":
            return  # two-phase methods (agent): wait for the second response
        del self.pending[request_id]
        if frame.get("ok"):
            pending.deferred.callback(payload)
        else:
            error = frame.get("error") or {}
            pending.deferred.errback(
                GatewayCallError(
                    error.get("code", "UNAVAILABLE"),
                    error.get("message", "request failed"),
                    error.get("details"),
                    payload,
                    retryable=error.get("retryable"),
                    retry_after_ms=error.get("retryAfterMs"),
                )
            )

    # -- events ------------------------------------------------------------------------------

    def _event(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        payload = frame.get("payload")
        if event == "connect.challenge" and self.hello is None:
            self.owner._challenged(self, payload or {})
            return
        seq = frame.get("seq")
        if isinstance(seq, int):
            if self.expected_seq is not None and seq > self.expected_seq:
                self.owner._gap(self, {"expected": self.expected_seq, "received": seq})
            self.expected_seq = seq + 1
        if event == "node.invoke.request":
            self.owner._node_invoke(self, payload or {})
        elif event == "shutdown":
            self.owner._shutdown_announced(payload if isinstance(payload, dict) else {})
        if isinstance(event, str):  # an event frame without a name has nothing to deliver
            self.owner._emit(event, payload, frame)

    # -- watchdog and close ------------------------------------------------------------------

    def start_watchdog(self, tick_interval_ms: int) -> None:
        self._tick_interval_s = tick_interval_ms / 1000.0
        self._feed_watchdog()

    def _feed_watchdog(self) -> None:
        interval = getattr(self, "_tick_interval_s", None)
        if interval is None:
            return
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(2 * interval)
        else:
            self._watchdog = self.owner.clock.callLater(2 * interval, self._silent)

    def _silent(self) -> None:
        self._watchdog = None
        self._log.warn("gateway silent for two tick intervals; closing")
        self.local_close = (TICK_WATCHDOG_CLOSE_CODE, "tick timeout")
        self.sendClose(TICK_WATCHDOG_CLOSE_CODE, "tick timeout")
        self.owner.clock.callLater(5, self._abort)

    def _abort(self) -> None:
        if self.transport is not None:
            # TCP and TLS transports both abort; ITransport alone does not declare it.
            cast(ITCPTransport, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost_reason = reason  # onClose (called from here) only gets autobahn's summary
        super().connectionLost(reason)

    def _tls_rejection(self) -> GatewayCallError | None:
        """The certificate failed verification or the pin: the close reason retrying cannot fix."""
        reason = getattr(self, "_lost_reason", None)
        if reason is None:
            return None
        from OpenSSL import SSL

        if not reason.check(SSL.Error) or "certificate verify failed" not in str(reason.value):
            return None
        owner = getattr(self, "owner", None) or self.factory.owner
        pin = owner.options.tls_fingerprint
        if pin:
            return GatewayCallError(
                "UNAVAILABLE",
                "TLS certificate does not match the pinned fingerprint",
                {"code": TLS_PIN_MISMATCH, "pinned": "sha256:" + normalize_fingerprint(pin)},
            )
        return GatewayCallError(
            "UNAVAILABLE",
            "TLS certificate verification failed (untrusted certificate or wrong host name; "
            "pin a self-signed gateway with tls_fingerprint)",
            {"code": TLS_CERTIFICATE_REJECTED},
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        watchdog: IDelayedCall | None = getattr(self, "_watchdog", None)
        if watchdog is not None and watchdog.active():
            watchdog.cancel()
        for pending in list(getattr(self, "pending", {}).values()):
            pending.deferred.errback(GatewayCallError("UNAVAILABLE", f"connection closed ({code})"))
        if hasattr(self, "pending"):
            self.pending.clear()
        owner = getattr(self, "owner", None) or getattr(self.factory, "owner", None)
        # When we closed (tick watchdog), report our reason, not the server's echo of it.
        code, reason = getattr(self, "local_close", None) or (code, reason)
        if owner is not None:
            rejection = self._tls_rejection()
            if rejection is not None:
                owner._refusal = rejection
                reason = rejection.message
            owner._closed(self, code or 1006, reason or "")


class _ClientFactory(WebSocketClientFactory):
    """Autobahn's client factory, knowing the client its protocols report to."""

    protocol = GatewayClientProtocol

    def __init__(self, owner: GatewayClient, url: str, *, reactor: Any):
        super().__init__(url, reactor=reactor)
        self.owner = owner

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.owner._closed(None, 1006, reason.getErrorMessage())


class GatewayClient:
    """Connect with :meth:`connect`, call methods with :meth:`call`, stop with :meth:`close`."""

    _log = Logger()

    def __init__(
        self,
        options: ClientOptions,
        *,
        reactor: Any = None,
        clock: Any = None,
        on_event: Callable[[str, Any, dict[str, Any]], None] | None = None,
        on_hello: Callable[[dict[str, Any]], None] | None = None,
        on_connect_error: Callable[[GatewayCallError], None] | None = None,
        on_close: Callable[[int, str, str], None] | None = None,
        on_gap: Callable[[dict[str, int]], None] | None = None,
        on_snapshot: Callable[[dict[str, Any]], None] | None = None,
        command_handler: Callable[[str | None, Any], Any] | None = None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.options = options
        # Timers (request timeouts, the tick watchdog, reconnect backoff) run on ``clock``.
        self.clock = clock if clock is not None else reactor
        self._reactor = reactor
        self.on_event = on_event
        self.on_hello = on_hello
        self.on_connect_error = on_connect_error
        self.on_close = on_close
        self.on_gap = on_gap
        self.on_snapshot = on_snapshot
        self.command_handler = command_handler
        self.protocol: GatewayClientProtocol | None = None
        self.hello: dict[str, Any] | None = None
        # The hello-ok snapshot, kept current by presence/health events and gap refreshes.
        self.snapshot: dict[str, Any] = {}
        self._ready: list[Deferred[dict[str, Any]]] = []
        self._stopping = False
        self._backoff = RECONNECT_INITIAL_S
        self._retry: IDelayedCall | None = None
        self._refusal: GatewayCallError | None = None
        # The gateway refused our shared secret but said the device's own token would do
        # (``canRetryWithDeviceToken``): from then on the stored device token goes with it.
        self._use_device_token = False
        self._retry_at_once = False
        self._restart_expected_s: float | None = None
        self.closed_with: tuple[int, str] | None = None
        # Why the client last stopped trying (a GatewayCallError), or None.
        self.last_error: GatewayCallError | None = None

    # -- public API --------------------------------------------------------------------------

    def connect(self) -> Deferred[dict[str, Any]]:
        """Fires with the ``hello-ok`` payload (or fails with GatewayCallError)."""
        self._stopping = False
        d: Deferred[dict[str, Any]] = Deferred()
        self._ready.append(d)
        self._dial()
        return d

    def when_connected(self) -> Deferred[dict[str, Any]]:
        if self.protocol is not None and self.hello is not None:
            d: Deferred[dict[str, Any]] = Deferred()
            d.callback(self.hello)
            return d
        d = Deferred()
        self._ready.append(d)
        return d

    def call(self, method: str, params: Any = None, *, timeout_s: float | None = None, expect_final: bool = False) -> Deferred[Any]:
        """The response payload, or a GatewayCallError."""
        if self.protocol is None or self.hello is None:
            return fail(GatewayCallError("UNAVAILABLE", "not connected"))
        return self.protocol.request(method, {} if params is None else params, timeout_s or self.options.request_timeout_s, expect_final)

    def close(self) -> Deferred[Any]:
        """Close for good (no reconnect); fires when the socket is closed."""
        self._stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        done: Deferred[Any] = Deferred()
        if self.protocol is None:
            # Between attempts (or still dialling): nothing to close, but whoever waits for a
            # connection must not wait forever.
            waiters, self._ready = self._ready, []
            for waiter in waiters:
                waiter.errback(GatewayCallError("UNAVAILABLE", "client closed"))
            done.callback(None)
            return done
        self._close_waiters = getattr(self, "_close_waiters", []) + [done]
        self.protocol.sendClose(1000)
        return done

    # -- connection ----------------------------------------------------------------------------

    def _dial(self) -> None:
        self._retry = None  # this is the retry it held (if any); nothing is pending now
        factory = _ClientFactory(self, self.options.url, reactor=self._reactor)
        context = None
        if self.options.url.startswith("wss://"):
            context = self._tls_context(factory.host)
        connectWS(factory, contextFactory=context)

    def _tls_context(self, host: str) -> Any:
        """Pinned when a fingerprint is given (self-signed certificates work); else normal verification."""
        if self.options.tls_fingerprint:
            from ..tls.pinning import client_context_factory

            return client_context_factory(self.options.tls_fingerprint, host)
        from twisted.internet.ssl import optionsForClientTLS

        return optionsForClientTLS(host)

    def _opened(self, protocol: GatewayClientProtocol) -> None:
        self.protocol = protocol
        if self._stopping:  # close() was called while this socket was still dialling
            protocol.sendClose(1000)

    def _auth(self) -> dict[str, Any]:
        options = self.options
        auth: dict[str, Any] = {}
        if options.token:
            auth["token"] = options.token
        if options.password:
            auth["password"] = options.password
        if options.device is not None:
            stored = options.device_tokens.get(options.device.device_id, options.role)
            if stored and (not options.token or self._use_device_token):
                auth["deviceToken"] = stored
        return auth

    def _challenged(self, protocol: GatewayClientProtocol, challenge: Mapping[str, Any]) -> None:
        options = self.options
        client = {"id": options.client_id, "version": options.version, "platform": options.platform, "mode": options.mode}
        client["instanceId"] = options.instance_id
        if options.display_name:
            client["displayName"] = options.display_name
        auth = self._auth()
        params: dict[str, Any] = {
            "minProtocol": options.min_protocol,
            "maxProtocol": options.max_protocol,
            "client": client,
            "role": options.role,
            "scopes": list(options.scopes),
            "caps": list(options.caps),
            "auth": auth,
        }
        if options.commands:
            params["commands"] = list(options.commands)
        if options.permissions:
            params["permissions"] = dict(options.permissions)
        if options.device is not None:
            params["device"] = options.device.device_block(
                nonce=str(challenge.get("nonce", "")),
                signed_at_ms=int(self._reactor.seconds() * 1000),
                client=client,
                role=options.role,
                scopes=list(options.scopes),
                auth=auth,
            )
        protocol.request("connect", params, options.request_timeout_s).addCallbacks(
            self._admitted, self._refused, callbackArgs=(protocol,)
        )

    def _admitted(self, hello: dict[str, Any], protocol: GatewayClientProtocol) -> None:
        self.hello = protocol.hello = hello
        self._backoff = RECONNECT_INITIAL_S
        self._restart_expected_s = None
        self.last_error = None
        self.snapshot = dict(hello.get("snapshot") or {})
        auth = hello.get("auth") or {}
        if self.options.device is not None and auth.get("deviceToken"):
            self.options.device_tokens.put(self.options.device.device_id, self.options.role, auth["deviceToken"])
        protocol.start_watchdog(int((hello.get("policy") or {}).get("tickIntervalMs") or 30000))
        if self.on_hello is not None:
            self.on_hello(hello)
        self._deliver_snapshot()
        waiters, self._ready = self._ready, []
        for waiter in waiters:
            waiter.callback(hello)

    def _refused(self, failure: Any) -> None:
        error = failure.value if isinstance(failure.value, GatewayCallError) else GatewayCallError("UNAVAILABLE", str(failure.value))
        self._refusal = error
        details = error.details if isinstance(error.details, Mapping) else {}
        options = self.options
        if (
            details.get("canRetryWithDeviceToken") is True
            and not self._use_device_token
            and options.device is not None
            and options.device_tokens.get(options.device.device_id, options.role)
        ):
            # Once, at once: a stale shared secret must not cost the device its own token.
            self._use_device_token = self._retry_at_once = True
            return
        if self.on_connect_error is not None:
            self.on_connect_error(error)

    def _shutdown_announced(self, payload: Mapping[str, Any]) -> None:
        """``shutdown`` with ``restartExpectedMs``: the first reconnect waits that long."""
        expected = payload.get("restartExpectedMs")
        if isinstance(expected, (int, float)) and not isinstance(expected, bool) and expected > 0:
            self._restart_expected_s = expected / 1000.0

    def _closed(self, protocol: GatewayClientProtocol | None, code: int, reason: str) -> None:
        if protocol is not None and self.protocol is not None and protocol is not self.protocol:
            return  # an older socket; the current one is still up
        self.protocol = None
        self.hello = None
        self.closed_with = (code, reason)
        refusal, self._refusal = self._refusal, None
        tls_refusal = (
            refusal
            if refusal is not None
            and isinstance(refusal.details, Mapping)
            and refusal.details.get("code") in (TLS_PIN_MISMATCH, TLS_CERTIFICATE_REJECTED)
            else None
        )
        tls_rejected = tls_refusal is not None
        hint = CLOSE_HINTS.get(code, "closed")
        if tls_refusal is not None:
            hint = f"{tls_refusal.message}: not reconnecting"
            if self.on_connect_error is not None:
                self.on_connect_error(tls_refusal)
        retry_at_once, self._retry_at_once = self._retry_at_once, False
        gives_up = self._stopping or (
            not retry_at_once
            and (
                not self.options.reconnect
                or tls_rejected
                or (code in NO_RECONNECT and not (code == 1008 and refusal is not None and refusal.may_retry))
            )
        )
        delay = None
        if retry_at_once and not gives_up:
            delay = 0.0
            hint = "shared secret refused: retrying with the device token"
        elif not gives_up:
            delay = self._next_delay(refusal)
            if code == 1008:
                hint = f"refused for now ({self._refusal_code(refusal)}): retrying in {delay:g} s"
        if self.on_close is not None:
            self.on_close(code, reason, hint)
        for waiter in getattr(self, "_close_waiters", []):
            waiter.callback((code, reason))
        self._close_waiters = []
        if gives_up:
            error = refusal or GatewayCallError("UNAVAILABLE", f"closed {code}: {reason or hint}")
            if not self._stopping:
                self.last_error = error
            waiters, self._ready = self._ready, []
            for waiter in waiters:
                waiter.errback(error)
            return
        self._retry = self.clock.callLater(delay, self._dial)

    @staticmethod
    def _refusal_code(refusal: GatewayCallError | None) -> str:
        details = refusal.details if refusal is not None and isinstance(refusal.details, Mapping) else {}
        return str(details.get("code") or (refusal.code if refusal is not None else "closed"))

    def _next_delay(self, refusal: GatewayCallError | None) -> float:
        """Backoff (1 s doubling to 30 s); an announced restart or ``retryAfterMs`` waits longer."""
        if self._restart_expected_s is not None:
            # The gateway said when it will be back: try then, and back off from the start after.
            delay, self._restart_expected_s = self._restart_expected_s, None
            self._backoff = RECONNECT_INITIAL_S
            return delay
        delay, self._backoff = self._backoff, min(RECONNECT_MAX_S, self._backoff * 2)
        retry_after = refusal.retry_after_ms if refusal is not None else None
        if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) and retry_after > 0:
            delay = max(delay, retry_after / 1000.0)
        return delay

    # -- events ------------------------------------------------------------------------------

    def _emit(self, event: str, payload: Any, frame: dict[str, Any]) -> None:
        if event == "health" and isinstance(payload, dict):
            self.snapshot["health"] = payload
        if event == "presence" and isinstance(payload, dict) and isinstance(payload.get("presence"), list):
            self.snapshot["presence"] = payload["presence"]
        if event in ("presence", "health") and isinstance(frame.get("stateVersion"), dict):
            self.snapshot["stateVersion"] = {**(self.snapshot.get("stateVersion") or {}), **frame["stateVersion"]}
        if self.on_event is not None:
            try:
                self.on_event(event, payload, frame)
            except Exception:
                self._log.failure("on_event raised for {event}", event=event)

    def _deliver_snapshot(self) -> None:
        if self.on_snapshot is not None:
            try:
                self.on_snapshot(dict(self.snapshot))
            except Exception:
                self._log.failure("on_snapshot raised")

    def _gap(self, protocol: GatewayClientProtocol, gap: dict[str, int]) -> None:
        if self.on_gap is not None:
            self.on_gap(gap)
        # Missed events may have changed state: fetch it again, into the snapshot.
        requests = [protocol.request(method, {}, self.options.request_timeout_s) for method in ("health", "system-presence")]
        DeferredList(requests, consumeErrors=True).addCallback(self._refreshed, protocol)

    def _refreshed(self, results: list[tuple[bool, Any]], protocol: GatewayClientProtocol) -> None:
        if protocol is not self.protocol:
            return  # that socket is gone; the next hello-ok brings a fresh snapshot
        (health_ok, health), (presence_ok, presence) = results
        if health_ok:
            self.snapshot["health"] = health
        if presence_ok:  # a node (no operator.read) gets FORBIDDEN here and keeps its old value
            self.snapshot["presence"] = presence
        if health_ok or presence_ok:
            self._deliver_snapshot()

    def _node_invoke(self, protocol: GatewayClientProtocol, request: Mapping[str, Any]) -> None:
        """Node mode: run the handler and answer with ``node.invoke.result``."""
        handler = self.command_handler
        if handler is None:
            return
        params_json = request.get("paramsJSON")

        def run() -> Any:
            # Bad paramsJSON becomes a failed result for that invoke, not an error in the event loop.
            return handler(request.get("command"), json.loads(params_json) if isinstance(params_json, str) else None)

        d = maybeDeferred(run)

        def answered(result: Any) -> None:
            protocol.request(
                "node.invoke.result",
                {"id": request["id"], "nodeId": request["nodeId"], "ok": True, "payloadJSON": json.dumps(result)},
                self.options.request_timeout_s,
            ).addErrback(lambda _: None)

        def failed(failure: Any) -> None:
            protocol.request(
                "node.invoke.result",
                {
                    "id": request["id"],
                    "nodeId": request["nodeId"],
                    "ok": False,
                    "error": {"code": "COMMAND_FAILED", "message": failure.getErrorMessage()},
                },
                self.options.request_timeout_s,
            ).addErrback(lambda _: None)

        d.addCallbacks(answered, failed)
