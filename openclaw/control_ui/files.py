"""URL path → file inside the UI root, and reading it off the reactor thread.

Traversal out of the root is impossible by construction: the path is percent-decoded once,
split on ``/``, any ``..``/``.``/empty/NUL/backslash segment refuses the request, and the joined
path's ``realpath`` (symlinks resolved) must still lie under the root's ``realpath``.

Read files are kept in a cache bounded by total bytes (the built UI is ~40 MB with its
compressed siblings; the hot set a browser loads is a few MB), keyed by path and validated by
``(mtime, size)`` so a reinstalled UI is picked up without a restart.
"""
from __future__ import annotations

import mimetypes
import os
from collections import OrderedDict
from email.utils import formatdate
from typing import Any
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

import attrs

CACHE_LIMIT_BYTES = 24 * 1024 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024  # larger files are refused rather than read into memory
EXTRA_TYPES = {
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".webmanifest": "application/manifest+json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".webp": "image/webp",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".wasm": "application/wasm",
}


class BadPath(ValueError):
    """The URL path can never name a file in the root (traversal, NUL, bad encoding)."""


def relative_parts(url_path: bytes) -> list[str]:
    """Decoded path segments of a URL path below the UI's base path; raises :class:`BadPath`."""
    try:
        decoded = unquote_to_bytes(url_path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("path is not UTF-8") from None
    parts = decoded.split("/")
    clean = [part for part in parts if part != ""]
    for part in clean:
        if part in (".", "..") or "\\" in part or "\x00" in part:
            raise BadPath(f"refused path segment {part!r}")
    return clean


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    if ext in EXTRA_TYPES:
        return EXTRA_TYPES[ext]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


@attrs.frozen
class UiFile:
    """One file's bytes and its precompressed siblings (``{"br": bytes, "gzip": bytes}``)."""

    path: str
    data: bytes
    mtime: float
    variants: dict[str, bytes] = attrs.field(factory=dict)

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(v) for v in self.variants.values())

    @property
    def last_modified(self) -> bytes:
        return formatdate(self.mtime, usegmt=True).encode("ascii")


def inside(root: str, candidate: str) -> bool:
    real = os.path.realpath(candidate)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def read_file(root: str, parts: list[str]) -> UiFile | None:
    """Blocking: the file for ``parts`` under ``root`` (a realpath), or ``None`` when there is none.

    Runs on a worker thread. Directories and anything resolving outside the root are ``None``.
    """
    path = os.path.join(root, *parts)
    if not inside(root, path) or not os.path.isfile(path):
        return None
    stat = os.stat(path)
    if stat.st_size > MAX_FILE_BYTES:
        return None
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    variants: dict[str, bytes] = {}
    for coding, suffix in (("br", ".br"), ("gzip", ".gz")):
        sibling = path + suffix
        if os.path.isfile(sibling) and inside(root, sibling) and os.path.getsize(sibling) <= MAX_FILE_BYTES:
            with open(sibling, "rb") as handle:
                variants[coding] = handle.read(MAX_FILE_BYTES + 1)
    return UiFile(path=path, data=data, mtime=stat.st_mtime, variants=variants)


def stat_key(root: str, parts: list[str]) -> tuple[float, int] | None:
    """Blocking: ``(mtime, size)`` of the file, to validate a cached copy."""
    try:
        stat = os.stat(os.path.join(root, *parts))
    except OSError:
        return None
    return (stat.st_mtime, stat.st_size)


class FileCache:
    """Files by path, least recently used dropped first once ``limit`` bytes are held."""

    def __init__(self, limit: int = CACHE_LIMIT_BYTES):
        self._limit = limit
        self._held = 0
        self._files: OrderedDict[str, tuple[tuple[float, int], UiFile]] = OrderedDict()

    def get(self, key: str, stamp: tuple[float, int] | None) -> UiFile | None:
        entry = self._files.get(key)
        if entry is None or entry[0] != stamp:
            return None
        self._files.move_to_end(key)
        return entry[1]

    def put(self, key: str, stamp: tuple[float, int], file: UiFile) -> None:
        if file.size > self._limit:
            return
        old = self._files.pop(key, None)
        if old is not None:
            self._held -= old[1].size
        self._files[key] = (stamp, file)
        self._held += file.size
        while self._held > self._limit and self._files:
            _, (_, dropped) = self._files.popitem(last=False)
            self._held -= dropped.size

    @property
    def held_bytes(self) -> int:
        return self._held


def load(root: str, parts: list[str]) -> tuple[tuple[float, int] | None, UiFile | None]:
    """Blocking: stamp and file together (one trip to the worker thread)."""
    stamp = stat_key(root, parts)
    if stamp is None:
        return None, None
    return stamp, read_file(root, parts)


Loader = Callable[[str, list[str]], Any]
