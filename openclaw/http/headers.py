"""Headers every HTTP response carries (http spec §0), applied in one place."""
from __future__ import annotations

from typing import Any

SECURITY_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Permissions-Policy", b"camera=(), microphone=(self), geolocation=()"),
)


def apply_security_headers(request: Any, strict_transport_security: str | None = None) -> None:
    for name, value in SECURITY_HEADERS:
        request.setHeader(name, value)
    if strict_transport_security:
        request.setHeader(b"Strict-Transport-Security", strict_transport_security.encode("latin-1"))


def plain_text(request: Any, status: int, body: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return body.encode("utf-8")


def sized(request: Any, body: Any) -> Any:
    """Give a body rendered through Klein's error path (which streams chunked) its Content-Length."""
    if isinstance(body, bytes) and not request.responseHeaders.hasHeader(b"content-length"):
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    return body
