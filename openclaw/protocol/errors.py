"""Error codes and the ``ErrorShape`` every failed response carries.

Handlers raise :class:`GatewayError`; the connection turns it into ``{"ok": false, "error": …}``
so no code path has to build error dictionaries by hand.
"""
from __future__ import annotations

from typing import Any

import attrs

INVALID_REQUEST = "INVALID_REQUEST"
FORBIDDEN = "FORBIDDEN"
NOT_PAIRED = "NOT_PAIRED"
UNAVAILABLE = "UNAVAILABLE"
APPROVAL_NOT_FOUND = "APPROVAL_NOT_FOUND"


@attrs.define(eq=False)
class GatewayError(Exception):
    """A failure reported to the client in the protocol's own error shape.

    ``close_code`` is set for handshake failures that end the connection after the response.
    """

    code: str
    message: str
    details: Any = None
    retryable: bool | None = None
    retry_after_ms: int | None = None
    close_code: int | None = attrs.field(default=None, kw_only=True)
    close_reason: str | None = attrs.field(default=None, kw_only=True)
    # A few methods answer failures with a payload too (``agent``'s final frame).
    payload: Any = attrs.field(default=None, kw_only=True)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_shape(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            shape["details"] = self.details
        if self.retryable is not None:
            shape["retryable"] = self.retryable
        if self.retry_after_ms is not None:
            shape["retryAfterMs"] = self.retry_after_ms
        return shape


def invalid_request(message: str, details: Any = None) -> GatewayError:
    return GatewayError(INVALID_REQUEST, message, details)


def missing_scope(scope: str) -> GatewayError:
    return GatewayError(
        FORBIDDEN,
        f"missing scope: {scope}",
        {"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]},
    )



SERVER_BUSY = "The server is busy. Please try again in a moment."
