"""The gateway's WebSocket protocol: one instance per client socket (protocol §1–§4).

Phases: ``upgrade`` → ``preauth`` (challenge sent, waiting for ``connect``) → ``connecting``
(admission running) → ``open`` (requests dispatched, events delivered) → ``closing``.
Frame rules differ before and after ``hello-ok``; both tables live in ``_on_preauth_frame`` and
``_on_request_frame``. The protocol is also the transport's push producer, so outbound frames
wait in a bounded queue whenever the peer stops reading.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

import orjson
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http.headers import SECURITY_HEADERS
from ..methods.registry import RequestContext, UnauthorizedRole
from ..protocol.constants import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_REASON_MAX_BYTES,
    MAX_IN_FLIGHT_REQUESTS,
    MAX_PENDING_HANDSHAKE_FRAMES,
    MAX_PREAUTH_PAYLOAD_BYTES,
    CHALLENGE_CAPABILITIES,
    UNAUTHORIZED_ROLE_FLOOD_LIMIT,
)
from ..protocol.errors import SERVER_BUSY, UNAVAILABLE, GatewayError, invalid_request
from ..protocol.frame_decoding import RefusedFrame, decode_frame
from ..state.clients import ConnectedClient
from ..stores.storage_errors import storage_error
from ._autobahn import write_text_frame
from .handshake import Admission, ConnectionInfo
from .outbound import DROPPED, OVERFLOW, OutboundQueue

if TYPE_CHECKING:
    from ..hub import GatewayHub

PHASE_UPGRADE = "upgrade"
PHASE_PREAUTH = "preauth"

PHASE_CONNECTING = "connecting"
PHASE_OPEN = "open"
PHASE_CLOSING = "closing"


def truncate_reason(reason: str) -> str:
    """Close reasons are capped at 120 bytes of UTF-8, cut on a character boundary."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= CLOSE_REASON_MAX_BYTES:
        return reason
    return encoded[:CLOSE_REASON_MAX_BYTES].decode("utf-8", errors="ignore")


def _peer_ip(transport: Any) -> str | None:
    try:
        return getattr(transport.getPeer(), "host", None)
    except Exception:
        return None


def _client_label(params: Any) -> tuple[str, str, str]:
    """``(client id, client mode, role)`` from connect params as sent (possibly invalid), for logs."""

    def text(value: Any) -> str:
        if value is None:
            return "?"
        shown = value if isinstance(value, str) else repr(value)
        return shown[:64]

    if not isinstance(params, dict):
        return "?", "?", "?"
    client = params.get("client")
    client = client if isinstance(client, dict) else {}
    return text(client.get("id")), text(client.get("mode")), text(params.get("role", "operator"))


def refusal_code(error: GatewayError) -> str:
    """The most specific code of a refusal: ``details.code`` (AUTH_TOKEN_MISMATCH, …) or the error code."""
    details = error.details
    code = details.get("code") if isinstance(details, dict) else None
    return code if isinstance(code, str) else error.code


def _response(request_id: str, ok: bool, payload: Any = None, error: GatewayError | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "res", "id": request_id, "ok": ok}
    if ok:
        frame["payload"] = payload
    else:
        if payload is not None:
            frame["payload"] = payload
        assert error is not None  # a failed response always carries its error
        frame["error"] = error.to_shape()
    return orjson.dumps(frame)


@implementer(IPushProducer)
class GatewayServerProtocol(WebSocketServerProtocol):
    # Autobahn owns ``log`` on protocols (ecosystem.md pitfall 8), so ours is ``_log``.
    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._phase = PHASE_UPGRADE
        self._conn_id = str(uuid.uuid4())
        self._nonce = str(uuid.uuid4())
        self._info: ConnectionInfo | None = None
        self._connect_params: Any = None  # as sent, for the refusal log line
        self._preauth_ip: str | None = None
        self._holds_preauth_slot = False
        self._handshake_timer: Any = None
        self._pending_frames: list[tuple[bytes, bool]] = []
        self._outbound: OutboundQueue | None = None
        self._client: ConnectedClient | None = None
        self._in_flight = 0
        self._unauthorized_streak = 0

    @property
    def _gateway(self) -> GatewayHub:
        gateway: GatewayHub = self.factory.gateway
        return gateway

    @property
    def conn_id(self) -> str:
        return self._conn_id

    # -- opening -----------------------------------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> None:
        remote_ip = _peer_ip(self.transport)
        if not self._gateway.preauth.acquire(remote_ip):
            raise ConnectionDeny(503, "Too many unauthenticated sockets")
        self._preauth_ip = remote_ip
        self._holds_preauth_slot = True
        headers = {key.lower(): value for key, value in request.headers.items() if isinstance(value, str)}
        self._info = ConnectionInfo(conn_id=self._conn_id, nonce=self._nonce, remote_ip=remote_ip, headers=headers)
        return None

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """Refuse the upgrade with an HTTP answer (Autobahn's, but quieter and with a body).

        Autobahn logs two lines per refused socket (an info and a warning); a flood of upgrades
        (the pre-auth cap) would flood the log, so the line goes through the refusal budget and
        the drop is logged at debug.
        """
        self.wasNotCleanReason = reason
        try:
            log, note = self._gateway.refusal_log.allow(_peer_ip(self.transport), "upgrade")
        except Exception:  # noqa: BLE001 - never keep the refusal from being sent
            log, note = True, ""
        if log:
            self._log.info(
                "upgrade refused from {ip}: HTTP {code} {reason}{note}",
                ip=_peer_ip(self.transport),
                code=code,
                reason=reason,
                note=f"; {note}" if note else "",
            )
        self.sendHttpErrorResponse(code, reason, responseHeaders)
        self.wasClean = True  # logged above: Autobahn would warn once more per socket on the drop
        self.dropConnection(abort=False)

    def sendHttpErrorResponse(self, code: int, reason: str, responseHeaders: Any = None) -> None:
        """The refusal as a complete HTTP response: short text body and our security headers."""
        body = f"{reason}\n".encode()
        lines = [f"HTTP/1.1 {code} {reason}"]
        lines += [f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in SECURITY_HEADERS]
        hsts = None
        try:
            hsts = self._gateway.settings.strict_transport_security
        except Exception:  # noqa: BLE001 - a factory without a gateway still answers
            pass
        if hsts:
            lines.append(f"Strict-Transport-Security: {hsts}")
        for name, value in responseHeaders or ():
            lines.append(f"{name}: {value}")
        lines += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}", "Connection: close"]
        self.sendData(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)

    def onOpen(self) -> None:
        self.factory.connection_opened(self)
        try:
            gateway = self._gateway
            self._outbound = OutboundQueue(self._write, gateway.settings.max_buffered_bytes)
            producer = getattr(self.transport, "producer", None)
            if producer is not None:
                # The HTTPChannel that carried the upgrade is still registered (pitfall 2).
                cast(IConsumer, self.transport).unregisterProducer()
            # TCP and TLS transports are consumers; ITransport alone does not say so.
            cast(IConsumer, self.transport).registerProducer(self, True)
            self._phase = PHASE_PREAUTH
            challenge = {"nonce": self._nonce, "ts": gateway.now_ms(), "capabilities": list(CHALLENGE_CAPABILITIES)}
            self._write(orjson.dumps({"type": "event", "event": "connect.challenge", "payload": challenge}))
            self._handshake_timer = gateway.clock.callLater(
                gateway.settings.handshake_timeout_ms / 1000.0, self._handshake_timed_out
            )
        except Exception:
            self._log.failure("opening a gateway connection failed")
            self.close_with(CLOSE_INTERNAL_ERROR, "gateway message handler unavailable")

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self._phase in (PHASE_PREAUTH, PHASE_CONNECTING):
            self.close_with(CLOSE_NORMAL, "")

    # -- inbound -----------------------------------------------------------------------------

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        if (
            self._phase != PHASE_OPEN
            and not self.failedByMe
            and self.message_data_total_length > MAX_PREAUTH_PAYLOAD_BYTES
        ):
            self.failedByMe = True  # Autobahn then discards the rest of this message
            self.close_with(CLOSE_MESSAGE_TOO_BIG, "preauth payload too large")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        phase = self._phase
        if phase == PHASE_OPEN:
            self._on_request_frame(payload, isBinary)
        elif phase == PHASE_PREAUTH:
            self._on_preauth_frame(payload, isBinary)
        elif phase == PHASE_CONNECTING:
            if len(self._pending_frames) >= MAX_PENDING_HANDSHAKE_FRAMES:
                self.close_with(CLOSE_POLICY_VIOLATION, "too many pending handshake frames")
            else:
                self._pending_frames.append((payload, isBinary))

    def _on_preauth_frame(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self.close_with(CLOSE_NORMAL, "")
            return
        try:
            frame = decode_frame(payload)
        except RefusedFrame as refused:
            self._fail_handshake(refused.request_id, invalid_request(f"invalid request frame: {refused.reason}"))
            return
        except orjson.JSONDecodeError:
            self._log.debug("non-JSON frame before connect from {ip}", ip=self._preauth_ip)
            self.close_with(CLOSE_NORMAL, "")
            return
        validators = self._gateway.validators
        if not isinstance(frame, dict) or not validators.request_frame_ok(frame):
            self.close_with(CLOSE_POLICY_VIOLATION, "invalid request frame")
            return
        request_id = frame["id"]
        self._connect_params = frame.get("params")
        if frame["method"] != "connect":
            self._fail_handshake(request_id, invalid_request("invalid handshake: first request must be connect"))
            return
        params = frame.get("params")
        errors = validators.connect_params.error_text(params)
        if errors is not None:
            self._fail_handshake(request_id, invalid_request(f"invalid connect params: {errors}"))
            return
        assert isinstance(params, dict)  # the connect params schema is an object
        self._phase = PHASE_CONNECTING
        d = self._gateway.handshake.admit(self._info, params)
        d.addCallbacks(self._admitted, self._rejected, callbackArgs=(request_id,), errbackArgs=(request_id,))

    def _fail_handshake(self, request_id: str, error: GatewayError) -> None:
        self._send_now(_response(request_id, False, error=error))
        code = error.close_code or CLOSE_POLICY_VIOLATION
        reason = error.close_reason if error.close_reason is not None else error.message
        self._log_refusal(error, code, reason)
        self.close_with(code, reason)

    def _log_refusal(self, error: GatewayError, close_code: int, reason: str) -> None:
        """One line per refused connect (never the secret), bounded per address (limits.RefusalLogBudget)."""
        try:
            code = refusal_code(error)
            lockout = code == "AUTH_RATE_LIMITED"
            log, note = self._gateway.refusal_log.allow(self._preauth_ip, "lockout" if lockout else "refusal")
            if not log:
                return
            client_id, mode, role = _client_label(self._connect_params)
            emit = self._log.warn if lockout else self._log.info
            emit(
                "connect refused from {ip}: {code}, close {close_code} {reason!r} "
                "(client {client_id}, mode {mode}, role {role}, conn {conn}){note}",
                ip=self._preauth_ip,
                code=code,
                close_code=close_code,
                reason=truncate_reason(reason),
                client_id=client_id,
                mode=mode,
                role=role,
                conn=self._conn_id,
                note=f"; {note}" if note else "",
            )
        except Exception:  # noqa: BLE001 - logging must never keep the refusal from being sent
            self._log.failure("logging a refused connect failed")

    def _rejected(self, failure: Failure, request_id: str) -> None:
        if self._phase != PHASE_CONNECTING:
            return
        if isinstance(failure.value, GatewayError):
            self._fail_handshake(request_id, failure.value)
            return
        stored = storage_error(failure)
        if stored is not None:
            self._log.warn("connect refused: {message}", message=stored.message)
            self._fail_handshake(request_id, stored)
            return
        self._log.failure("connect admission crashed", failure)
        error = GatewayError(UNAVAILABLE, "gateway message handler unavailable", close_code=CLOSE_INTERNAL_ERROR)
        self._fail_handshake(request_id, error)

    def _admitted(self, admission: Admission, request_id: str) -> None:
        if self._phase != PHASE_CONNECTING:
            return  # the socket went away while admission ran
        gateway = self._gateway
        self._cancel_handshake_timer()
        self._release_preauth()
        params = admission.params
        assert self._info is not None  # set by onConnect, before any frame
        self._client = ConnectedClient(
            conn_id=self._conn_id,
            role=admission.role,
            scopes=frozenset(admission.scopes),
            client=params["client"],
            sink=self,
            connected_at_ms=gateway.now_ms(),
            remote_ip=self._info.remote_ip,
            device_id=admission.device.device_id if admission.device else None,
            auth_method=admission.auth_method,
            protocol=admission.protocol,
            caps=tuple(params.get("caps") or ()),
            commands=tuple(params.get("commands") or ()),
            permissions=dict(params.get("permissions") or {}),
            path_env=params.get("pathEnv") if isinstance(params.get("pathEnv"), str) else None,
        )
        # Only the handshake reads these (the refusal log line, the upgrade's headers): an idle
        # connection should not keep the whole connect frame and header map for its lifetime.
        self._connect_params = None
        self._info = None
        hello = gateway.hello_ok_for_wire(self._client, admission)
        self.maxMessagePayloadSize = gateway.settings.max_payload
        self.maxFramePayloadSize = gateway.settings.max_payload
        self._phase = PHASE_OPEN
        self._send_now(_response(request_id, True, hello))
        gateway.client_admitted(self._client)
        pending, self._pending_frames = self._pending_frames, []
        for payload, is_binary in pending:
            if self._phase != PHASE_OPEN:
                break
            self._on_request_frame(payload, is_binary)

    def _on_request_frame(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            return
        try:
            frame = decode_frame(payload)
        except RefusedFrame as refused:
            self._respond(refused.request_id, False, error=invalid_request(f"invalid request frame: {refused.reason}"))
            return
        except orjson.JSONDecodeError:
            self._log.debug("ignoring non-JSON frame from {conn}", conn=self._conn_id)
            return
        gateway = self._gateway
        if not isinstance(frame, dict) or not gateway.validators.request_frame_ok(frame):
            request_id = frame.get("id") if isinstance(frame, dict) else None
            if not isinstance(request_id, str) or not request_id:
                request_id = "invalid"
            errors = gateway.validators.request_frame.error_text(frame)
            self._respond(request_id, False, error=invalid_request(f"invalid request frame: {errors}"))
            return
        request_id, method = frame["id"], frame["method"]
        if method == "connect":
            self._respond(request_id, False, error=invalid_request("connect is only valid as the first request"))
            return
        if self._in_flight >= MAX_IN_FLIGHT_REQUESTS:
            self._respond(request_id, False, error=GatewayError(UNAVAILABLE, SERVER_BUSY, retryable=True))
            return
        self._in_flight += 1
        assert self._client is not None  # request frames are handled once admitted
        context = RequestContext(
            gateway=gateway,
            client=self._client,
            request_id=request_id,
            method=method,
            params=frame.get("params", {}),
            send_interim=lambda interim: self._respond(request_id, True, interim),
        )
        started = gateway.clock.seconds()
        try:
            result = gateway.methods.run(context)
        except Exception:
            self._failed(Failure(), request_id, method, started)
            return
        if isinstance(result, Deferred):
            result.addCallbacks(
                self._succeeded, self._failed, callbackArgs=(request_id, method, started), errbackArgs=(request_id, method, started)
            )
        else:
            self._succeeded(result, request_id, method, started)

    def _succeeded(self, payload: Any, request_id: str, method: str, started: float) -> None:
        self._in_flight -= 1
        gateway = self._gateway
        gateway.metrics.request_done(method, "ok", gateway.clock.seconds() - started)
        self._unauthorized_streak = 0
        self._respond(request_id, True, payload)

    def _failed(self, failure: Failure, request_id: str, method: str, started: float) -> None:
        self._in_flight -= 1
        raised = failure.value
        error = raised if isinstance(raised, GatewayError) else storage_error(failure)
        if error is None:
            self._log.failure("method {method} failed", failure, method=method)
            error = GatewayError(UNAVAILABLE, str(raised) or type(raised).__name__)
        elif not isinstance(raised, GatewayError):
            self._log.warn("method {method} failed: {message}", method=method, message=error.message)
        gateway = self._gateway
        gateway.metrics.request_done(method, error.code, gateway.clock.seconds() - started)
        if isinstance(error, UnauthorizedRole):
            self._unauthorized_streak += 1
        else:
            self._unauthorized_streak = 0
        self._respond(request_id, False, payload=error.payload, error=error)
        if self._unauthorized_streak > UNAUTHORIZED_ROLE_FLOOD_LIMIT:
            self.close_with(CLOSE_POLICY_VIOLATION, "repeated unauthorized calls")

    # -- outbound ----------------------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        """Straight to the transport when Autobahn allows it (``_autobahn.write_text_frame``)."""
        write_text_frame(self, frame)

    def _send_now(self, frame: bytes) -> None:
        """Responses during the handshake bypass nothing but still respect the queue order."""
        if self._outbound is None:
            self._write(frame)
        else:
            self._enqueue(frame, droppable=False)

    def _respond(self, request_id: str, ok: bool, payload: Any = None, error: GatewayError | None = None) -> None:
        if self._phase not in (PHASE_OPEN, PHASE_CONNECTING):
            return
        try:
            frame = _response(request_id, ok, payload, error)
        except TypeError:
            self._log.failure("response to {id} is not JSON-serialisable", id=request_id)
            frame = _response(request_id, False, error=GatewayError(UNAVAILABLE, "response could not be encoded"))
        self._enqueue(frame, droppable=False)

    def _enqueue(self, frame: bytes, *, droppable: bool) -> bool:
        outbound = self._outbound
        assert outbound is not None  # created in onOpen, before anything is sent
        outcome = outbound.offer(frame, droppable=droppable)
        if outcome == OVERFLOW:
            outbound.clear()
            self.close_with(CLOSE_POLICY_VIOLATION, "slow consumer")
            return False
        return outcome != DROPPED

    def deliver_frame(self, frame: bytes, *, droppable: bool) -> bool:
        """Event frames from the registry; only an open connection takes them.

        Autobahn marks a socket closed when it drops it, but the registry only hears of it at
        ``connectionLost``, which a TLS shutdown can delay by several reactor turns.
        """
        if self._phase != PHASE_OPEN or self.state != self.STATE_OPEN:
            return False
        return self._enqueue(frame, droppable=droppable)

    def pauseProducing(self) -> None:
        if self._outbound is not None:
            self._outbound.pause()

    def resumeProducing(self) -> None:
        if self._outbound is not None and self._phase not in (PHASE_CLOSING,):
            self._outbound.resume()

    def stopProducing(self) -> None:
        if self._outbound is not None:
            self._outbound.clear()

    # -- closing -----------------------------------------------------------------------------

    def close_with(self, code: int, reason: str) -> None:
        """Send a close frame with any code (Autobahn's ``sendClose`` only allows 1000/3000-4999)."""
        if self._phase == PHASE_CLOSING or self.state != self.STATE_OPEN:
            return
        self._phase = PHASE_CLOSING
        self._cancel_handshake_timer()
        if self._outbound is not None:
            self._outbound.flush()  # a response queued before the close must still arrive first
        encoded = truncate_reason(reason).encode("utf-8") if reason else None
        self.sendCloseFrame(code=code, reasonUtf8=encoded, isReply=False)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connection_closed(self)
        self._phase = PHASE_CLOSING
        self._cancel_handshake_timer()
        self._release_preauth()
        if self._outbound is not None:
            self._outbound.clear()
        if self._client is not None:
            client, self._client = self._client, None
            self._gateway.client_left(client)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    def _release_preauth(self) -> None:
        if self._holds_preauth_slot:
            self._holds_preauth_slot = False
            self._gateway.preauth.release(self._preauth_ip)
