"""Admission of a ``connect`` request, in the reference's order (protocol §2.2).

Each step either passes or raises a :class:`GatewayError` that already carries the close code the
connection must use, so the transport code only has to send the response and close.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Generator
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks

from ..protocol.constants import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TRY_AGAIN_LATER,
    MIN_NODE_PROTOCOL_VERSION,
    MIN_PROBE_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    ROLE_NODE,
    ROLE_OPERATOR,
    ROLES,
)
from ..protocol.errors import INVALID_REQUEST, NOT_PAIRED, UNAVAILABLE, GatewayError
from ..security.device_identity import VerifiedDevice, verify_device_proof
from ..security.rate_limit import BROWSER_ORIGIN_KIND, is_loopback
from ..security.scopes import scopes_cover
from ..security.shared_secret import SecretCheck, auth_failure, check_shared_secret, constant_time_equal
from ..services.pairing import PairingRequestContext
from ..stores.devices import DeviceToken, PairedDevice

if TYPE_CHECKING:
    from ..hub import GatewayHub

RATE_LIMIT_KIND = "shared-secret"
PROXY_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-host")
LOCAL_HOSTNAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
CONTROL_UI_CLIENT_ID = "openclaw-control-ui"


@attrs.frozen
class ConnectionInfo:
    """What the transport knows about a socket before it speaks."""

    conn_id: str
    nonce: str
    remote_ip: str | None
    headers: dict[str, str] = attrs.field(factory=dict)

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin") or None

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def is_local(self) -> bool:
        """Direct local: a loopback peer, a local Host header, no proxy in between."""
        if not is_loopback(self.remote_ip):
            return False
        if any(header in self.headers for header in PROXY_HEADERS):
            return False
        hostname = urlsplit(f"//{self.host}").hostname if self.host else None
        return _is_local_hostname(hostname)


def _is_local_hostname(hostname: str | None) -> bool:
    return hostname is None or hostname in LOCAL_HOSTNAMES or is_loopback(hostname.strip("[]"))


@attrs.frozen
class Admission:
    """A connect that passed every check."""

    protocol: int
    role: str
    scopes: tuple[str, ...]
    params: dict[str, Any]
    auth_method: str
    device: VerifiedDevice | None = None
    paired: PairedDevice | None = None
    device_token: DeviceToken | None = None


@attrs.define
class _Attempt:
    """One connect as the gate reads it: who asks, with what, and under which limiter kind."""

    info: ConnectionInfo
    params: dict[str, Any]
    role: str
    limit_kind: str
    auth_method: str = ""
    _secret: SecretCheck | None = None

    @property
    def auth(self) -> dict[str, Any]:
        return self.params.get("auth") or {}

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scopes") or ())

    def secret(self, settings: Any) -> SecretCheck:
        """The shared-secret check, made once; sets the auth method it implies."""
        if self._secret is None:
            self._secret = check_shared_secret(settings, self.auth)
            self.auth_method = self.auth_method or settings.mode
        return self._secret

    def pairing_context(self) -> PairingRequestContext:
        return PairingRequestContext(
            role=self.role,
            scopes=self.scopes,
            client=self.params["client"],
            remote_ip=self.info.remote_ip,
            is_local=self.info.is_local,
            has_origin=self.info.origin is not None,
            auth_method=self.auth_method,
        )


def negotiate_protocol(params: dict[str, Any]) -> int:
    low, high = params["minProtocol"], params["maxProtocol"]
    mode = params["client"].get("mode")
    role = params.get("role", ROLE_OPERATOR)
    if high >= PROTOCOL_VERSION and low <= PROTOCOL_VERSION:
        return PROTOCOL_VERSION
    if mode == "probe" and high >= MIN_PROBE_PROTOCOL_VERSION and low <= PROTOCOL_VERSION:
        return min(int(high), PROTOCOL_VERSION)
    if role == ROLE_NODE and mode == "node" and high >= MIN_NODE_PROTOCOL_VERSION and low <= MIN_NODE_PROTOCOL_VERSION:
        return MIN_NODE_PROTOCOL_VERSION
    raise GatewayError(
        INVALID_REQUEST,
        "protocol mismatch",
        {
            "code": "PROTOCOL_MISMATCH",
            "clientMinProtocol": low,
            "clientMaxProtocol": high,
            "expectedProtocol": PROTOCOL_VERSION,
            "minimumProbeProtocol": MIN_PROBE_PROTOCOL_VERSION,
        },
        close_code=CLOSE_PROTOCOL_ERROR,
    )


def keeps_scopes_without_device(params: dict[str, Any], info: ConnectionInfo) -> bool:
    """The local CLI and local backend exceptions: device-less but trusted with their scopes."""
    client = params["client"]
    if info.origin or not info.is_local or params.get("role", ROLE_OPERATOR) != ROLE_OPERATOR:
        return False
    pair = (client.get("id"), client.get("mode"))
    return pair in (("cli", "cli"), ("gateway-client", "backend"))


class Handshake:
    def __init__(self, gateway: GatewayHub):
        self._gateway = gateway

    def _origin_allowed(self, info: ConnectionInfo) -> bool:
        origin = info.origin
        if origin is None:
            return True
        allowed = self._gateway.settings.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        parts = urlsplit(origin)
        if parts.hostname is None:
            return False
        host = urlsplit(f"//{info.host}")
        if parts.netloc == info.host:
            return True  # same origin as the gateway page the browser came from
        return is_loopback(info.remote_ip) and _is_local_hostname(parts.hostname) and _is_local_hostname(host.hostname)

    @inlineCallbacks
    def admit(self, info: ConnectionInfo, params: dict[str, Any]) -> Generator[Deferred[Any], Any, Admission]:
        """The connect gate, each check in the reference's order; fires with an :class:`Admission`.

        Readiness first (nothing is judged against a half-loaded store), then the protocol, role
        and origin, the failed-auth lockout, the credentials, and last the device's pairing.
        """
        self._check_ready()
        protocol = negotiate_protocol(params)
        role = params.get("role", ROLE_OPERATOR)
        if role not in ROLES:
            raise GatewayError(INVALID_REQUEST, "invalid role", close_code=CLOSE_POLICY_VIOLATION)
        self._check_origin(info)
        attempt = _Attempt(info, params, role, self._check_lockout(info))
        if params.get("device") is None:
            return self._admit_without_device(attempt, protocol)
        claimed = (attempt.params.get("device") or {}).get("id")
        if isinstance(claimed, str):
            # In a cluster another instance may just have paired this device or issued its
            # token; a single process's store is never behind, and answers at once.
            yield self._gateway.pairing.store.refresh(claimed)
        device, device_token = self._authenticate_device(attempt)
        paired = yield self._gateway.pairing.ensure_access(device, attempt.pairing_context())
        token = yield self._gateway.pairing.issue_token(paired, role)
        return Admission(
            protocol=protocol,
            role=role,
            scopes=attempt.scopes,
            params=params,
            auth_method=attempt.auth_method,
            device=device,
            paired=paired,
            device_token=token if device_token is None else device_token,
        )

    def _check_ready(self) -> None:
        gateway = self._gateway
        if not gateway.pairing.loaded:
            # The device store is still loading: answering now could pair a known device twice.
            raise GatewayError(
                UNAVAILABLE,
                "gateway starting; retry shortly",
                retryable=True,
                retry_after_ms=500,
                close_code=CLOSE_TRY_AGAIN_LATER,
                close_reason="gateway starting",
            )
        if not gateway.accepting:
            raise GatewayError(
                UNAVAILABLE,
                "connect unavailable during gateway restart",
                {"method": "connect", "reason": "restart", "phase": "draining"},
                retryable=True,
                retry_after_ms=1000,
                close_code=CLOSE_TRY_AGAIN_LATER,
                close_reason="gateway restart in progress",
            )

    def _check_origin(self, info: ConnectionInfo) -> None:
        if not self._origin_allowed(info):
            raise GatewayError(
                INVALID_REQUEST,
                "origin not allowed (open the Control UI from the gateway host or add it to gateway.controlUi.allowedOrigins)",
                {"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "origin": info.origin},
                close_code=CLOSE_POLICY_VIOLATION,
            )

    def _check_lockout(self, info: ConnectionInfo) -> str:
        """The failed-auth lockout for this address; returns the limiter kind the attempt counts under."""
        limit_kind = BROWSER_ORIGIN_KIND if info.origin else RATE_LIMIT_KIND
        retry_after = self._gateway.rate_limiter.retry_after_ms(info.remote_ip, limit_kind)
        if retry_after is not None:
            raise auth_failure("rate_limited", retry_after_ms=retry_after)
        return limit_kind

    def _admit_without_device(self, attempt: _Attempt, protocol: int) -> Admission:
        """Shared secret only: operators, and scopes only for the local CLI and backend exceptions."""
        params, limiter = attempt.params, self._gateway.rate_limiter
        if params["client"].get("id") == CONTROL_UI_CLIENT_ID:
            raise GatewayError(
                INVALID_REQUEST,
                "control ui requires device identity (use HTTPS or localhost secure context)",
                {"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"},
                close_code=CLOSE_POLICY_VIOLATION,
            )
        secret = attempt.secret(self._gateway.settings.auth)
        if not secret.ok and secret.supplied:
            limiter.record_failure(attempt.info.remote_ip, attempt.limit_kind)
            raise auth_failure(secret.reason)
        if not secret.ok or attempt.role != ROLE_OPERATOR:
            raise GatewayError(
                NOT_PAIRED,
                "device identity required",
                {"code": "DEVICE_IDENTITY_REQUIRED"},
                close_code=CLOSE_POLICY_VIOLATION,
            )
        limiter.record_success(attempt.info.remote_ip, attempt.limit_kind)
        scopes = attempt.scopes if keeps_scopes_without_device(params, attempt.info) else ()
        return Admission(
            protocol=protocol, role=attempt.role, scopes=scopes, params=params, auth_method=attempt.auth_method
        )

    def _authenticate_device(self, attempt: _Attempt) -> tuple[VerifiedDevice, DeviceToken | None]:
        """The signed device proof, then the shared secret or, failing it, the device's own token."""
        gateway, info = self._gateway, attempt.info
        device = verify_device_proof(
            attempt.params["device"],
            challenge_nonce=info.nonce,
            now_ms=gateway.now_ms(),
            client=attempt.params["client"],
            role=attempt.role,
            scopes=list(attempt.scopes),
            auth=attempt.auth,
        )
        device_token = None
        secret = attempt.secret(gateway.settings.auth)
        if not secret.ok:
            try:
                device_token = self._verify_device_token(device, attempt.role, attempt.scopes, attempt.auth, secret.reason)
            except GatewayError:
                gateway.rate_limiter.record_failure(info.remote_ip, attempt.limit_kind)
                raise
            attempt.auth_method = "device-token"
        gateway.rate_limiter.record_success(info.remote_ip, attempt.limit_kind)
        return device, device_token

    def _verify_device_token(
        self, device: VerifiedDevice, role: str, scopes: tuple[str, ...], auth: dict[str, Any], secret_reason: str | None
    ) -> DeviceToken:
        """The fallback when the shared secret failed: the device's own token for this role.

        ``auth.token`` is tried as a device token too, as the reference does for devices.
        """
        gateway = self._gateway
        explicit = auth.get("deviceToken")
        candidate = explicit if explicit else auth.get("token")
        stored = gateway.pairing.store.token(device.device_id, role)
        if candidate and stored is not None and constant_time_equal(candidate, stored.token):
            if not scopes_cover(scopes, stored.scopes) and role == ROLE_OPERATOR:
                raise auth_failure("scope_mismatch")
            return stored
        reason: str | None
        if explicit and auth.get("token") is None and auth.get("password") is None:
            reason = "device_token_mismatch"
        else:
            reason = secret_reason
        raise auth_failure(
            reason,
            can_retry_with_device_token=reason == "token_mismatch" and not explicit,
        )
