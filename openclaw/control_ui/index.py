"""``index.html`` as the reference serves it: asset URLs absolute under the base path, icons
cache-busted with the build id, the base path announced on ``<html>``, and the SHA-256 hashes
of its inline scripts for the page's Content-Security-Policy."""
from __future__ import annotations

import base64
import hashlib
import html
import re

_HTML_TAG = re.compile(rb"<html\b", re.IGNORECASE)
_BUILD_ID = re.compile(rb'data-openclaw-control-ui-build-id="([^"]*)"')
_RELATIVE = re.compile(rb'(\s(?:src|href))="\./([^"]*)"')
_INLINE_SCRIPT = re.compile(rb"<script\b(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.IGNORECASE | re.DOTALL)
# Plain files the browser may keep across UI upgrades unless the URL changes (the assets/ are
# fingerprinted already).
_CACHE_BUSTED = re.compile(rb"^(?!assets/)[^?]+\.(?:svg|png|ico|webmanifest|css|woff2)$")


def build_id(index: bytes) -> str | None:
    match = _BUILD_ID.search(index)
    return match.group(1).decode("utf-8", "replace") if match else None


def rewrite(index: bytes, base_path: str, terminal_enabled: bool = False) -> bytes:
    """The page with ``./x`` made ``<base>/x`` and the base path stated on ``<html>``."""
    build = _BUILD_ID.search(index)
    version = build.group(1) if build else None

    def absolute(match: re.Match[bytes]) -> bytes:
        target = match.group(2)
        url = base_path.encode("utf-8") + b"/" + target
        if version and _CACHE_BUSTED.match(target):
            url += b"?v=" + version
        return match.group(1) + b'="' + url + b'"'

    page = _RELATIVE.sub(absolute, index)
    attributes = (
        b' data-openclaw-control-ui-base-path="'
        + html.escape(base_path, quote=True).encode("utf-8")
        + b'" data-openclaw-terminal-enabled="'
        + (b"true" if terminal_enabled else b"false")
        + b'"'
    )
    return _HTML_TAG.sub(lambda m: m.group(0) + attributes, page, count=1)


def inline_script_hashes(index: bytes) -> list[str]:
    """``'sha256-…'`` sources for every inline ``<script>`` (so CSP can stay without unsafe-inline)."""
    hashes = []
    for body in _INLINE_SCRIPT.findall(index):
        if body.strip():
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
            hashes.append(f"'sha256-{digest}'")
    return hashes
