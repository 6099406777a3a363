"""Serving the Control UI on the gateway port (issue 14, point 1), through the real root resource.

A small stand-in UI is written to a temp directory (an ``index.html`` with an inline script and
``./`` asset links, a fingerprinted asset with ``.br``/``.gz`` siblings, a favicon), so these
tests need no installed package; the browser test drives the reference's real UI.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import tempfile

import attrs
import brotli
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config.loader import ConfigError
from openclaw.control_ui import encoding, files, index
from openclaw.control_ui.settings import ControlUiSettings, normalise_base_path, resolve
from openclaw.http.site import GatewaySite

from .support.gateway import TOKEN, make_gateway
from .support.loopback import parse_wire
from .test_http import build_root

INLINE = b"window.__boot = 1;"
INDEX = (
    b'<!doctype html>\n<html data-openclaw-control-ui-build-id="b-1" lang="en"><head>'
    b'<link rel="icon" href="./favicon.svg" />'
    b"<script>" + INLINE + b"</script>"
    b'<script type="module" crossorigin src="./assets/app-AbC123.js"></script>'
    b"</head><body><openclaw-app></openclaw-app></body></html>\n"
)
ASSET = b"console.log('app');" * 50


def write_ui(root: str) -> str:
    os.makedirs(os.path.join(root, "assets"))
    with open(os.path.join(root, "index.html"), "wb") as handle:
        handle.write(INDEX)
    asset = os.path.join(root, "assets", "app-AbC123.js")
    for path, data in ((asset, ASSET), (asset + ".br", brotli.compress(ASSET)), (asset + ".gz", gzip.compress(ASSET))):
        with open(path, "wb") as handle:
            handle.write(data)
    with open(os.path.join(root, "favicon.svg"), "wb") as handle:
        handle.write(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    return root


class _UiMixin:
    base_path = ""
    with_root = True

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="openclaw-ui-")
        # A file beside the root: traversal attempts aim at it.
        with open(os.path.join(self.tmp, "secret.txt"), "w") as handle:
            handle.write("secret")
        root = write_ui(os.path.join(self.tmp, "ui")) if self.with_root else None
        settings = ControlUiSettings(base_path=self.base_path, root=root) if root else ControlUiSettings(problem="no Control UI root is configured")
        self.gateway = make_gateway(self, control_ui=settings)
        self.site = GatewaySite(build_root(self.gateway), reactor=self.gateway.clock)

    def get(self, path: str, method: str = "GET", **headers: str) -> tuple[_Response, bytes]:
        """One request on the raw wire: exact request headers, the body exactly as sent."""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        address = IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.addCleanup(protocol.connectionLost, None)
        status, response_headers, body = parse_wire(transport.value())
        return _Response(int(status.split()[1]), response_headers), body


class _Response:
    def __init__(self, code: int, headers: dict[str, str]):
        self.code = code
        self.headers = headers


def header(response: _Response, name: str) -> str | None:
    return response.headers.get(name.lower())


class ServingTests(_UiMixin, SynchronousTestCase):
    def test_index_is_rewritten_with_security_headers(self):
        response, body = self.get("/", accept="text/html")
        self.assertEqual(response.code, 200)
        self.assertEqual(header(response, "Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(header(response, "Cache-Control"), "no-cache")
        self.assertIn(b'<html data-openclaw-control-ui-base-path="" data-openclaw-terminal-enabled="false"', body)
        self.assertIn(b'src="/assets/app-AbC123.js"', body)
        self.assertIn(b'href="/favicon.svg?v=b-1"', body)
        digest = base64.b64encode(hashlib.sha256(INLINE).digest()).decode()
        csp = header(response, "Content-Security-Policy")
        self.assertIn(f"script-src 'self' 'sha256-{digest}'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertEqual(header(response, "X-Frame-Options"), "DENY")
        self.assertEqual(header(response, "X-Content-Type-Options"), "nosniff")
        self.assertEqual(header(response, "Referrer-Policy"), "no-referrer")

    def test_spa_routes_fall_back_to_the_page_for_html_clients_only(self):
        response, body = self.get("/sessions/agent:main:main", accept="text/html")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<openclaw-app>", body)
        response, body = self.get("/chat", accept="application/json")
        self.assertEqual((response.code, body), (404, b"Not Found"))
        response, body = self.get("/missing.js", accept="text/html")
        self.assertEqual((response.code, body), (404, b"Not Found"))
        response, body = self.get("/api/users/me/avatar", accept="text/html")
        self.assertEqual(response.code, 404)

    def test_assets_are_immutable_and_precompressed_per_accept_encoding(self):
        for accept, coding, _ in (
            ("gzip, deflate, br", "br", brotli.compress(ASSET)),
            ("gzip", "gzip", None),
            ("identity", None, ASSET),
            ("br;q=0, gzip", "gzip", None),
        ):
            response, body = self.get("/assets/app-AbC123.js", accept_encoding=accept)
            self.assertEqual(response.code, 200)
            self.assertEqual(header(response, "Cache-Control"), "public, max-age=31536000, immutable")
            self.assertEqual(header(response, "Content-Type"), "application/javascript; charset=utf-8")
            self.assertEqual(header(response, "Content-Encoding"), coding)
            self.assertEqual(header(response, "Vary"), "Accept-Encoding")
            decoded = gzip.decompress(body) if coding == "gzip" else brotli.decompress(body) if coding == "br" else body
            self.assertEqual(decoded, ASSET)

    def test_page_is_compressed_on_the_fly(self):
        response, body = self.get("/", accept="text/html", accept_encoding="br")
        self.assertEqual(header(response, "Content-Encoding"), "br")
        self.assertIn(b"<openclaw-app>", brotli.decompress(body))

    def test_other_files_are_revalidated(self):
        response, body = self.get("/favicon.svg")
        self.assertEqual(response.code, 200)
        self.assertEqual(header(response, "Content-Type"), "image/svg+xml")
        self.assertEqual(header(response, "Cache-Control"), "no-cache")
        self.assertIsNotNone(header(response, "Last-Modified"))

    def test_traversal_never_leaves_the_root(self):
        for path in (
            "/../secret.txt",
            "/assets/..%2f..%2fsecret.txt",
            "/%2e%2e/secret.txt",
            "/assets/%2e%2e/%2e%2e/secret.txt",
            "/..%5csecret.txt",
            "/favicon.svg%00.png",
        ):
            response, body = self.get(path, accept="text/html")
            self.assertNotIn(b"secret", body, path)
            self.assertIn(response.code, (200, 404), path)

    def test_symlink_out_of_the_root_is_not_served(self):
        os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(self.tmp, "ui", "leak.txt"))
        response, body = self.get("/leak.txt")
        self.assertEqual((response.code, body), (404, b"Not Found"))

    def test_only_get_and_head(self):
        response, _ = self.get("/chat", method="POST", content_length="0")
        self.assertEqual(response.code, 404)
        response, body = self.get("/", method="HEAD", accept="text/html")
        self.assertEqual((response.code, body), (200, b""))

    def test_api_routes_keep_working_beside_it(self):
        response, body = self.get("/healthz")
        self.assertEqual(json.loads(body), {"ok": True, "status": "live"})
        self.assertIsNone(header(response, "X-Frame-Options"))

    def test_bootstrap_config_needs_gateway_auth(self):
        response, body = self.get("/control-ui-config.json")
        self.assertEqual(response.code, 401)
        self.assertEqual(json.loads(body), {"error": {"message": "Unauthorized", "type": "unauthorized"}})
        response, body = self.get("/control-ui-config.json", authorization=f"Bearer {TOKEN}")
        self.assertEqual(response.code, 200)
        config = json.loads(body)
        self.assertEqual(config["basePath"], "")
        self.assertEqual(config["assistantName"], "Assistant")
        self.assertEqual(config["assistantAgentId"], "main")
        self.assertIs(config["terminalEnabled"], False)

    def test_disabled_in_config_is_plain_404(self):
        # enabled is hot: read from the current config on every request.
        self.gateway.settings = attrs.evolve(self.gateway.settings, config={"gateway": {"controlUi": {"enabled": False}}})
        response, body = self.get("/", accept="text/html")
        self.assertEqual((response.code, body), (404, b"Not Found"))


class BasePathTests(_UiMixin, SynchronousTestCase):
    base_path = "/ui"

    def test_served_under_the_base_path_only(self):
        response, body = self.get("/ui/", accept="text/html")
        self.assertEqual(response.code, 200)
        self.assertIn(b'data-openclaw-control-ui-base-path="/ui"', body)
        self.assertIn(b'src="/ui/assets/app-AbC123.js"', body)
        response, _ = self.get("/ui/assets/app-AbC123.js")
        self.assertEqual(response.code, 200)
        response, body = self.get("/chat", accept="text/html")
        self.assertEqual((response.code, body), (404, b"Not Found"))
        response, _ = self.get("/ui/control-ui-config.json", authorization=f"Bearer {TOKEN}")
        self.assertEqual(response.code, 200)


class MissingRootTests(_UiMixin, SynchronousTestCase):
    with_root = False

    def test_page_says_what_to_configure(self):
        response, body = self.get("/", accept="text/html")
        self.assertEqual(response.code, 503)
        self.assertIn(b"gateway.controlUi.root", body)
        self.assertIn(b"npm install -g openclaw", body)
        self.assertIn(b"no Control UI root is configured", body)

    def test_non_page_paths_stay_404(self):
        response, body = self.get("/missing")
        self.assertEqual((response.code, body), (404, b"Not Found"))


class SettingsTests(SynchronousTestCase):
    def test_root_from_option_env_or_config(self):
        root = write_ui(tempfile.mkdtemp())
        config = {"gateway": {"controlUi": {"root": "/nowhere"}}}
        self.assertEqual(resolve({"control-ui-root": root}, {}, config).root, os.path.realpath(root))
        self.assertEqual(resolve({}, {"OPENCLAW_CONTROL_UI_ROOT": root}, config).root, os.path.realpath(root))
        unusable = resolve({}, {}, config)
        self.assertFalse(unusable.usable)
        self.assertIn("/nowhere is not a directory", unusable.problem)

    def test_a_root_without_index_is_unusable(self):
        settings = resolve({"control-ui-root": tempfile.mkdtemp()}, {}, {})
        self.assertIn("no index.html", settings.problem)

    def test_base_path(self):
        self.assertEqual(normalise_base_path("/"), "")
        self.assertEqual(normalise_base_path("ui/"), "/ui")
        self.assertEqual(normalise_base_path("/a//b/"), "/a/b")
        self.assertRaises(ConfigError, normalise_base_path, "/../x")
        self.assertRaises(ConfigError, normalise_base_path, 3)


class PieceTests(SynchronousTestCase):
    def test_accept_encoding(self):
        self.assertEqual(encoding.choose(b"gzip, br"), "br")
        self.assertEqual(encoding.choose(b"gzip;q=1, br;q=0"), "gzip")
        self.assertEqual(encoding.choose(b"*"), "br")
        self.assertIsNone(encoding.choose(b""))
        self.assertIsNone(encoding.choose(b"br", ("gzip",)))

    def test_relative_parts(self):
        self.assertEqual(files.relative_parts(b"/a/b.js"), ["a", "b.js"])
        for bad in (b"/../x", b"/%2e%2e/x", b"/a%5cb", b"/a%00", b"/%ff"):
            self.assertRaises(files.BadPath, files.relative_parts, bad)

    def test_cache_is_bounded(self):
        cache = files.FileCache(limit=100)
        for n in range(5):
            cache.put(str(n), (1.0, 40), files.UiFile(path=str(n), data=b"x" * 40, mtime=1.0))
        self.assertLessEqual(cache.held_bytes, 100)
        self.assertIsNone(cache.get("0", (1.0, 40)))
        self.assertIsNotNone(cache.get("4", (1.0, 40)))
        self.assertIsNone(cache.get("4", (2.0, 40)))  # a changed file is read again

    def test_index_rewrite_keeps_unrelated_links(self):
        page = index.rewrite(b'<html><a href="https://x/./y">', "/b")
        self.assertEqual(page, b'<html data-openclaw-control-ui-base-path="/b" data-openclaw-terminal-enabled="false"><a href="https://x/./y">')
