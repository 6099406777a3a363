"""The Control UI handler: what the HTTP app answers for any path no API route took.

Order of decisions, as the reference serves its UI:

1. disabled (``gateway.controlUi.enabled: false``, read per request) or outside the base path
   → plain ``404 Not Found`` (the request simply matched nothing);
2. not ``GET``/``HEAD`` → 404; a path that can never name a file (``..``, NUL, bad encoding) → 404;
3. ``control-ui-config.json`` → the UI's bootstrap config, gateway auth required;
4. no usable root → ``503`` with a page saying what to configure (for the page itself and HTML
   navigations; anything else stays 404);
5. an existing file → its bytes (``br``/``gzip`` sibling if the client accepts one), with
   ``assets/*`` cached immutably and everything else ``no-cache``;
6. a missing path without a file extension, from a client that accepts HTML → ``index.html``
   (the UI routes in the browser: ``/chat``, ``/sessions/…``); otherwise 404.

File work runs on the gateway's file executor (a worker thread), never on the reactor.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

import orjson
from twisted.logger import Logger

from ..config.loader import lookup
from ..http.headers import plain_text
from . import encoding, files, headers, index
from .settings import INSTALL_HINT, ControlUiSettings

if TYPE_CHECKING:
    from ..hub import GatewayHub

IMMUTABLE = b"public, max-age=31536000, immutable"
NO_CACHE = b"no-cache"
CONFIG_JSON = "control-ui-config.json"
# Paths the UI asks the gateway's APIs for, never files: no SPA fallback for them.
API_PREFIXES = ("api", "avatar", "__openclaw__")


def accepts_html(request: Any, explicit: bool = False) -> bool:
    """Whether the client would take an HTML page (``explicit``: it named text/html)."""
    accept = (request.getHeader(b"accept") or b"").decode("latin-1").lower()
    if not accept:
        return not explicit
    if "text/html" in accept:
        return True
    return not explicit and ("*/*" in accept or "text/*" in accept)


class _Index:
    """The rewritten page, its CSP hashes and its compressed forms, for one version of the file."""

    def __init__(self, stamp: Any, page: bytes, hashes: list[str], build_id: str | None):
        self.stamp = stamp
        self.page = page
        self.hashes = hashes
        self.build_id = build_id
        self.encoded: dict[str, bytes] = {}

    def body(self, coding: str | None) -> bytes:
        if coding is None:
            return self.page
        if coding not in self.encoded:
            self.encoded[coding] = encoding.compress(self.page, coding)
        return self.encoded[coding]


class ControlUiHandler:
    _log = Logger()

    def __init__(
        self,
        gateway: GatewayHub,
        executor: Any,
        config_json: Callable[[str | None], dict[str, Any]],
        authenticate: Callable[[Any], bytes | None],
    ):
        """``authenticate(request)`` answers an error body (already written) or ``None`` when allowed."""
        self._gateway = gateway
        self._executor = executor
        self._config_json = config_json
        self._authenticate = authenticate
        self._cache = files.FileCache()
        self._index: _Index | None = None

    @property
    def settings(self) -> ControlUiSettings:
        return self._gateway.settings.control_ui

    def _enabled(self) -> bool:
        return lookup(self._gateway.current_config(), "gateway.controlUi.enabled", True) is not False

    def _below_base(self, request: Any) -> bytes | None:
        path: bytes = request.path.split(b"?", 1)[0]
        base = self.settings.base_path.encode("utf-8")
        if not base:
            return path
        if path == base or path.startswith(base + b"/"):
            return path[len(base) :]
        return None

    def render(self, request: Any) -> Any:
        """Bytes or a Deferred firing with bytes."""
        rest = self._below_base(request) if self._enabled() else None
        if rest is None or request.method not in (b"GET", b"HEAD"):
            return plain_text(request, 404, "Not Found")
        settings = self.settings
        if settings.usable:
            headers.apply_ui_headers(request, loopback=self._gateway.settings.bind == "loopback")
        try:
            parts = files.relative_parts(rest)
        except files.BadPath:
            return plain_text(request, 404, "Not Found")
        if parts == [CONFIG_JSON]:
            return self._bootstrap(request)
        is_page = not parts or parts == ["index.html"]
        if not settings.usable:
            if is_page or ("." not in parts[-1] and parts[0] not in API_PREFIXES and accepts_html(request, explicit=True)):
                return self._unavailable(request, settings)
            return plain_text(request, 404, "Not Found")
        if is_page:
            return self._serve_index(request)
        root = settings.root
        assert root is not None  # usable settings have a root
        d = self._executor.submit(lambda: files.stat_key(root, parts))
        d.addCallback(self._with_stamp, request, root, parts)
        return d

    # -- files ----------------------------------------------------------------------------------

    def _with_stamp(self, stamp: Any, request: Any, root: str, parts: list[str]) -> Any:
        key = "/".join(parts)
        if stamp is not None:
            cached = self._cache.get(key, stamp)
            if cached is not None:
                return self._send_file(request, parts, cached)
            d = self._executor.submit(lambda: files.load(root, parts))
            d.addCallback(self._loaded, request, parts, key)
            return d
        return self._missing(request, parts)

    def _loaded(self, result: Any, request: Any, parts: list[str], key: str) -> Any:
        stamp, file = result
        if file is None:
            return self._missing(request, parts)
        self._cache.put(key, stamp, file)
        return self._send_file(request, parts, file)

    def _missing(self, request: Any, parts: list[str]) -> Any:
        if "." in parts[-1] or parts[0] in API_PREFIXES or not accepts_html(request):
            return plain_text(request, 404, "Not Found")
        return self._serve_index(request)

    def _send_file(self, request: Any, parts: list[str], file: files.UiFile) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", files.content_type(parts[-1]).encode("ascii"))
        request.setHeader(b"Cache-Control", IMMUTABLE if parts[0] == "assets" else NO_CACHE)
        request.setHeader(b"Last-Modified", file.last_modified)
        encoding.set_vary(request)
        coding = encoding.choose(request.getHeader(b"accept-encoding"), tuple(file.variants))
        body = file.data
        if coding is not None:
            request.setHeader(b"Content-Encoding", coding.encode("ascii"))
            body = file.variants[coding]
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        return body

    # -- the page -------------------------------------------------------------------------------

    def _serve_index(self, request: Any) -> Any:
        root = self.settings.root
        assert root is not None  # only usable settings serve the page
        d = self._executor.submit(lambda: files.load(root, ["index.html"]))
        d.addCallback(self._send_index, request)
        return d

    def _send_index(self, result: Any, request: Any) -> bytes:
        stamp, file = result
        if file is None:
            return self._unavailable(request, self.settings)
        page = self._page(stamp, file.data)
        request.setResponseCode(200)
        headers.apply_ui_headers(request, page.hashes, loopback=self._gateway.settings.bind == "loopback")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", NO_CACHE)
        encoding.set_vary(request)
        coding = encoding.choose(request.getHeader(b"accept-encoding"), encoding.on_the_fly_codings())
        if coding is not None:
            request.setHeader(b"Content-Encoding", coding.encode("ascii"))
        body = page.body(coding)
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        return body

    def _page(self, stamp: Any, raw: bytes) -> _Index:
        current = self._index
        if current is None or current.stamp != stamp:
            page = index.rewrite(raw, self.settings.base_path)
            current = self._index = _Index(stamp, page, index.inline_script_hashes(raw), index.build_id(raw))
        return current

    def build_id(self) -> str | None:
        """The served UI's build id, once its page has been read (for control-ui-config.json)."""
        return self._index.build_id if self._index is not None else None

    def _unavailable(self, request: Any, settings: ControlUiSettings) -> bytes:
        reason = settings.problem or "the Control UI root is unusable"
        request.setResponseCode(503)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        body = (
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Control UI unavailable</title></head>"
            "<body><h1>Control UI unavailable</h1>"
            f"<p>{html.escape(reason)}.</p><p>{html.escape(INSTALL_HINT)}</p>"
            "<p>The gateway's WebSocket and HTTP APIs work without it.</p></body></html>"
        )
        return body.encode("utf-8")

    # -- bootstrap config -----------------------------------------------------------------------

    def _bootstrap(self, request: Any) -> bytes:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", NO_CACHE)
        return orjson.dumps(self._config_json(self.build_id()))
