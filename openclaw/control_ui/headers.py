"""Security headers on Control UI responses, as the reference sends them.

The UI gets a stricter frame policy than the API (``DENY``/``frame-ancestors 'none'``) and a CSP
whose ``script-src`` allows only the page's own files plus the hashes of its inline scripts.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Iterable

UI_PERMISSIONS_POLICY = b"camera=(self), microphone=*, geolocation=*, clipboard-write=*"


def content_security_policy(script_hashes: Iterable[str] = (), loopback: bool = False) -> str:
    scripts = " ".join(["'self'", *script_hashes, *(("'wasm-unsafe-eval'",) if script_hashes else ())])
    connect = "'self' ws: wss: data: https://api.openai.com https://tweakcn.com"
    if loopback and script_hashes:
        connect += " http://127.0.0.1:* https://127.0.0.1:*"
    return "; ".join(
        (
            "default-src 'self'",
            "base-uri 'none'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "frame-src 'self' http: https:",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
            "img-src 'self' data: blob: https:",
            "media-src 'self' data: blob:",
            "font-src 'self' https://fonts.gstatic.com",
            "worker-src 'self'",
            f"connect-src {connect}",
        )
    )


def apply_ui_headers(request: Any, script_hashes: Iterable[str] = (), loopback: bool = False) -> None:
    request.setHeader(b"Permissions-Policy", UI_PERMISSIONS_POLICY)
    request.setHeader(b"X-Frame-Options", b"DENY")
    request.setHeader(b"Content-Security-Policy", content_security_policy(script_hashes, loopback).encode("ascii"))
