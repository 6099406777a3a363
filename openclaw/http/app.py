"""The Klein application for every non-WebSocket request on the gateway port.

Routes are methods of a class bound to the gateway (Klein's non-global-state style), so tests
build one per gateway and drive it through ``treq.testing.StubTreq``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from klein import Klein
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..security.shared_secret import check_bearer
from .headers import plain_text

if TYPE_CHECKING:
    from ..gateway import Gateway

PROBE_METHODS = ("GET", "HEAD")


def bearer_token(request: Any) -> str | None:
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, value = header.decode("latin-1").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def json_body(request: Any, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    encoded = orjson.dumps(body)
    request.setHeader(b"Content-Length", str(len(encoded)).encode("ascii"))
    return encoded


class GatewayHttpApp:
    app = Klein()
    _log = Logger()

    def __init__(self, gateway: "Gateway"):
        self._gateway = gateway

    def resource(self) -> Any:
        return self.app.resource()

    def _authenticated(self, request: Any) -> bool:
        return check_bearer(self._gateway.settings.auth, bearer_token(request))

    @app.route("/health", methods=PROBE_METHODS)
    @app.route("/healthz", methods=PROBE_METHODS)
    def liveness(self, request: Any) -> bytes:
        return json_body(request, 200, {"ok": True, "status": "live"})

    @app.route("/ready", methods=PROBE_METHODS)
    @app.route("/readyz", methods=PROBE_METHODS)
    def readiness(self, request: Any) -> bytes:
        failing = self._gateway.failing_checks()
        body: dict[str, Any] = {"ready": not failing}
        if self._authenticated(request):
            body.update(
                failing=failing,
                uptimeMs=self._gateway.uptime_ms(),
                eventLoop=self._gateway.event_loop.summary(),
            )
        return json_body(request, 503 if failing else 200, body)

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Any) -> bytes:
        return plain_text(request, 404, "Not Found")

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: Any, failure: Any) -> bytes:
        allowed = getattr(failure.value, "valid_methods", None) or []
        if allowed:
            request.setHeader(b"Allow", ", ".join(sorted(allowed)).encode("latin-1"))
        return plain_text(request, 405, "Method Not Allowed")

    @app.handle_errors(Exception)
    def internal_error(self, request: Any, failure: Any) -> bytes:
        self._log.failure("HTTP handler failed for {path}", failure, path=request.path)
        request.setHeader(b"Cache-Control", b"no-store")
        return plain_text(request, 500, "Internal Server Error")
