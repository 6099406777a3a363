"""What every ``/v1`` endpoint shares: the error shape, auth, scopes, JSON bodies, enable flags.

Errors are raised as :class:`HttpError` and written once, in the OpenAI shape
``{"error": {"message", "type"}}`` that the official SDKs turn into their exception classes.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from ...config.loader import lookup
from ...security.scopes import ADMIN, APPROVALS, PAIRING, READ, TALK_SECRETS, WRITE, scope_satisfied
from ...security.shared_secret import AUTH_NONE, check_bearer

# What the agent sees for a user turn that carried only images (as the reference words it).
IMAGE_ONLY_TEXT = "User sent image(s) with no text."

if TYPE_CHECKING:
    from ...hub import GatewayHub

# Same key as the WebSocket handshake, so HTTP guesses count towards the same lockout.
RATE_LIMIT_KIND = "shared-secret"
# What shared-secret callers get: they hold the gateway's own secret, so they are the owner.
OWNER_SCOPES = frozenset((ADMIN, APPROVALS, PAIRING, READ, TALK_SECRETS, WRITE))

CHAT_COMPLETIONS = "chatCompletions"
RESPONSES = "responses"


class HttpError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error", headers: dict[bytes, bytes] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}

    def body(self) -> Any:
        return {"error": {"message": self.message, "type": self.error_type}}


class ForbiddenScope(HttpError):
    """403 for a missing scope; the reference adds ``ok: false`` to this one body only."""

    def __init__(self, scope: str):
        super().__init__(403, f"missing scope: {scope}", "forbidden")
        self.scope = scope

    def body(self) -> Any:
        return {
            "ok": False,
            "error": {
                "type": "forbidden",
                "message": self.message,
                "details": {"code": "MISSING_SCOPE", "missingScope": self.scope, "requiredScopes": [self.scope]},
            },
        }


def write_json(request: Any, status: int, body: Any, headers: dict[bytes, bytes] | None = None) -> bytes:
    encoded = orjson.dumps(body)
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Content-Length", str(len(encoded)).encode("ascii"))
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return encoded


def write_error(request: Any, error: HttpError) -> bytes:
    return write_json(request, error.status, error.body(), error.headers)


def endpoint_enabled(gateway: GatewayHub, name: str) -> bool:
    """Read on every request, so toggling the flag in the config needs no restart."""
    return lookup(gateway.current_config(), f"gateway.http.endpoints.{name}.enabled") is True


def models_enabled(gateway: GatewayHub) -> bool:
    return endpoint_enabled(gateway, CHAT_COMPLETIONS) or endpoint_enabled(gateway, RESPONSES)


def client_ip(request: Any) -> str | None:
    address = request.getClientAddress()
    return getattr(address, "host", None)


def bearer_token(request: Any) -> str | None:
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, value = header.decode("latin-1").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def authenticate(gateway: GatewayHub, request: Any, required_scope: str) -> str:
    """Check the bearer secret and the scope; returns the caller's auth subject.

    Raises HttpError 429 (locked out), 401 (wrong or missing secret) or 403 (missing scope).
    """
    settings = gateway.settings.auth
    ip = client_ip(request)
    limiter = gateway.rate_limiter
    retry_after = limiter.retry_after_ms(ip, RATE_LIMIT_KIND)
    if retry_after is not None:
        raise HttpError(
            429,
            "Too many failed authentication attempts. Please try again later.",
            "rate_limited",
            {b"Retry-After": str(-(-retry_after // 1000)).encode("ascii")},
        )
    token = bearer_token(request)
    if not check_bearer(settings, token):
        limiter.record_failure(ip, RATE_LIMIT_KIND)
        raise HttpError(401, "Unauthorized", "unauthorized")
    limiter.record_success(ip, RATE_LIMIT_KIND)
    scopes = OWNER_SCOPES
    if settings.mode == AUTH_NONE:
        header = request.getHeader(b"x-openclaw-scopes")
        if header:
            scopes = frozenset(part.strip() for part in header.decode("latin-1").split(",") if part.strip())
    if not scope_satisfied(required_scope, scopes):
        raise ForbiddenScope(required_scope)
    return f"gateway-auth:{settings.mode}" if settings.mode == AUTH_NONE else f"bearer:{_digest(token or '')}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def read_json_body(request: Any) -> dict[str, Any]:
    """The parsed body: empty means ``{}``; anything not a JSON object is a 400."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"Invalid JSON body: {exc}") from None
    if not isinstance(parsed, dict):
        raise HttpError(400, "Request body must be a JSON object")
    return parsed


def header(request: Any, name: str) -> str | None:
    value = request.getHeader(name.encode("ascii"))
    if value is None:
        return None
    text = value.decode("utf-8", "replace").strip()
    return text or None
