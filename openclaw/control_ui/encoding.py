"""Content coding for UI responses: ``br`` or ``gzip`` chosen from ``Accept-Encoding``.

Built assets come with ``.br``/``.gz`` siblings (served as they are, as the reference does);
the rewritten ``index.html`` is compressed on the fly. ``brotli`` is optional at import time so a
missing wheel degrades to gzip instead of breaking the UI.
"""
from __future__ import annotations

import gzip
from typing import Any

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is a declared dependency
    brotli = None

# Our preference among what the client accepts: smallest first.
PREFERRED = ("br", "gzip")


def accepted(header: bytes | str | None) -> set[str]:
    """Codings the client accepts (``q=0`` means refused)."""
    if not header:
        return set()
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    result: set[str] = set()
    for item in text.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name and quality > 0:
            result.add(name)
    if "*" in result:
        result.update(PREFERRED)
    return result


def choose(header: bytes | str | None, available: tuple[str, ...] = PREFERRED) -> str | None:
    """The coding to use, or ``None`` for identity."""
    ok = accepted(header)
    for coding in PREFERRED:
        if coding in ok and coding in available:
            return coding
    return None


def compress(data: bytes, coding: str) -> bytes:
    if coding == "br":
        if brotli is None:
            raise ValueError("brotli is not installed")
        compressed: bytes = brotli.compress(data, quality=5)
        return compressed
    if coding == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    raise ValueError(f"unknown coding {coding!r}")


def on_the_fly_codings() -> tuple[str, ...]:
    return PREFERRED if brotli is not None else ("gzip",)


def set_vary(request: Any) -> None:
    request.setHeader(b"Vary", b"Accept-Encoding")
