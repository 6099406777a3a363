"""Shared-secret authentication (token / password / none) and its failure reporting (§4.1, §4.2).

Failures at connect use the top-level ``INVALID_REQUEST`` code with an ``AUTH_*`` detail code;
this module owns the wording so the handshake and the HTTP API report them identically.
"""
from __future__ import annotations

import hmac
from typing import Any

import attrs

from ..protocol.constants import CLOSE_POLICY_VIOLATION
from ..protocol.errors import GatewayError

AUTH_NONE = "none"
AUTH_TOKEN = "token"
AUTH_PASSWORD = "password"
AUTH_MODES = (AUTH_NONE, AUTH_TOKEN, AUTH_PASSWORD)

_TOKEN_HINT = "use this gateway's gateway.auth.token or pair the device"
_PASSWORD_HINT = "use this gateway's gateway.auth.password"

# reason -> (details code, message, recommended next step)
FAILURES: dict[str, tuple[str, str, str]] = {
    "token_missing": ("AUTH_TOKEN_MISSING", f"unauthorized: gateway token missing ({_TOKEN_HINT})", "update_auth_configuration"),
    "token_mismatch": ("AUTH_TOKEN_MISMATCH", f"unauthorized: gateway token mismatch ({_TOKEN_HINT})", "update_auth_credentials"),
    "token_missing_config": (
        "AUTH_TOKEN_NOT_CONFIGURED",
        "unauthorized: gateway token not configured on gateway (set gateway.auth.token)",
        "update_auth_configuration",
    ),
    "password_missing": ("AUTH_PASSWORD_MISSING", f"unauthorized: gateway password missing ({_PASSWORD_HINT})", "update_auth_configuration"),
    "password_mismatch": ("AUTH_PASSWORD_MISMATCH", f"unauthorized: gateway password mismatch ({_PASSWORD_HINT})", "update_auth_credentials"),
    "password_missing_config": (
        "AUTH_PASSWORD_NOT_CONFIGURED",
        "unauthorized: gateway password not configured on gateway (set gateway.auth.password)",
        "update_auth_configuration",
    ),
    "device_token_mismatch": (
        "AUTH_DEVICE_TOKEN_MISMATCH",
        "unauthorized: device token mismatch (rotate/reissue device token)",
        "update_auth_credentials",
    ),
    "device_token_rejected": (
        "AUTH_DEVICE_TOKEN_MISMATCH",
        "unauthorized: device token rejected (pair/repair this device, or provide gateway token)",
        "update_auth_credentials",
    ),
    "scope_mismatch": (
        "AUTH_SCOPE_MISMATCH",
        "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)",
        "review_auth_configuration",
    ),
    "rate_limited": (
        "AUTH_RATE_LIMITED",
        "unauthorized: too many failed authentication attempts (retry later)",
        "wait_then_retry",
    ),
}


def constant_time_equal(given: str | None, expected: str | None) -> bool:
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@attrs.frozen
class AuthSettings:
    mode: str = AUTH_NONE
    token: str | None = None
    password: str | None = None


@attrs.frozen
class SecretCheck:
    """Outcome of the shared-secret step: ``ok`` or the internal failure reason."""

    ok: bool
    reason: str | None = None
    supplied: bool = False


def check_shared_secret(settings: AuthSettings, auth: dict[str, Any] | None) -> SecretCheck:
    """Compare the connect's ``auth.token``/``auth.password`` with the configured secret.

    Either wire field may carry the secret in either mode, as in the reference.
    """
    auth = auth or {}
    given = auth.get("token")
    if given is None:
        given = auth.get("password")
    if settings.mode == AUTH_NONE:
        return SecretCheck(ok=True, supplied=given is not None)
    expected = settings.token if settings.mode == AUTH_TOKEN else settings.password
    prefix = "token" if settings.mode == AUTH_TOKEN else "password"
    if not expected:
        return SecretCheck(ok=False, reason=f"{prefix}_missing_config", supplied=given is not None)
    if given is None or given == "":
        return SecretCheck(ok=False, reason=f"{prefix}_missing", supplied=False)
    if constant_time_equal(given, expected):
        return SecretCheck(ok=True, supplied=True)
    return SecretCheck(ok=False, reason=f"{prefix}_mismatch", supplied=True)


def check_bearer(settings: AuthSettings, presented: str | None) -> bool:
    """HTTP ``Authorization: Bearer`` check: the same secret in either mode."""
    if settings.mode == AUTH_NONE:
        return True
    expected = settings.token if settings.mode == AUTH_TOKEN else settings.password
    return bool(expected) and constant_time_equal(presented, expected)


def auth_failure(
    reason: str | None,
    *,
    can_retry_with_device_token: bool = False,
    retry_after_ms: int | None = None,
) -> GatewayError:
    code, message, next_step = FAILURES.get(reason or "", ("AUTH_UNAUTHORIZED", "unauthorized", "review_auth_configuration"))
    if can_retry_with_device_token:
        next_step = "retry_with_device_token"
    details = {
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": can_retry_with_device_token,
        "recommendedNextStep": next_step,
    }
    error = GatewayError("INVALID_REQUEST", message, details, close_code=CLOSE_POLICY_VIOLATION)
    if reason == "rate_limited":
        error.retryable = True
        error.retry_after_ms = retry_after_ms
    return error
