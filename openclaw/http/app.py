"""The Klein application for every non-WebSocket request on the gateway port.

Routes are methods of a class bound to the gateway (Klein's non-global-state style), so tests
build one per gateway and drive it through ``treq.testing.StubTreq``.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..agents.identity import agent_identity
from ..config.loader import lookup
from ..control_ui.handler import ControlUiHandler
from ..security.scopes import READ, WRITE
from ..security.shared_secret import check_bearer
from .headers import plain_text, sized
from .openai import models
from .openai.chat_completions import ChatCompletionsEndpoint
from .openai.common import (
    CHAT_COMPLETIONS,
    RESPONSES,
    HttpError,
    authenticate,
    bearer_token,
    endpoint_enabled,
    models_enabled,
    read_json_body,
    write_error,
    write_json,
)
from .openai.responses import ResponsesEndpoint

if TYPE_CHECKING:
    from ..hub import GatewayHub

PROBE_METHODS = ("GET", "HEAD")


def json_body(request: Any, status: int, body: Any) -> bytes:
    """Probe answers: JSON that no cache may keep."""
    request.setHeader(b"Cache-Control", b"no-store")
    return write_json(request, status, body)


def openai_route(
    app: Klein, path: str, method: bytes, scope: str, enabled: Callable[[GatewayHub], bool], branch: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A ``/v1`` route: 404 when its endpoint is off (whatever the method, so a disabled API is
    invisible), 405 for another method (before auth), then the bearer and ``scope`` checks.

    The handler gets the authenticated subject; an :class:`HttpError` it raises is written by
    ``GatewayHttpApp.http_error`` in the OpenAI shape.
    """

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(handler)
        def route(self: GatewayHttpApp, request: Any, **kwargs: Any) -> Any:
            if not enabled(self._gateway):
                return plain_text(request, 404, "Not Found")
            if request.method != method:
                request.setHeader(b"Allow", method)
                return plain_text(request, 405, "Method Not Allowed")
            subject = authenticate(self._gateway, request, scope)
            return handler(self, request, subject, **kwargs)

        return app.route(path, branch=False)(route) if not branch else app.route(path)(route)

    return decorate


class _NonUtf8PathGuard(Resource):
    """Klein cannot route a path that does not percent-decode to UTF-8: it answers a bare 400 of
    its own and logs an error. Such a path can only be a model id (``/v1/models/%E0%A4``, which
    ``get_model`` answers 400 ``Invalid model id encoding.``) or no route at all (plain 404)."""

    isLeaf = True

    def __init__(self, app: GatewayHttpApp, klein: Any):
        super().__init__()
        self._app = app
        self._klein = klein

    def render(self, request: Any) -> Any:
        try:
            b"/".join(request.postpath).decode("utf-8")
        except UnicodeDecodeError:
            if request.path.startswith(b"/v1/models/"):
                try:  # outside Klein, so its error handlers do not apply here
                    return self._app.get_model(request, rest="")
                except HttpError as error:
                    return write_error(request, error)
            return plain_text(request, 404, "Not Found")
        return self._klein.render(request)


class GatewayHttpApp:
    app = Klein()
    _log = Logger()

    def __init__(self, gateway: GatewayHub):
        self._gateway = gateway
        self._chat_completions = ChatCompletionsEndpoint(gateway)
        self._responses = ResponsesEndpoint(gateway)
        self.control_ui = ControlUiHandler(gateway, gateway.file_executor, self._control_ui_config, self._ui_auth)

    def resource(self) -> Any:
        return _NonUtf8PathGuard(self, self.app.resource())

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

    @app.route("/metrics", branch=False)
    def metrics(self, request: Any) -> Any:
        """Prometheus text format, behind the gateway auth unless gateway.metrics.auth is false."""
        config = self._gateway.current_config()
        if lookup(config, "gateway.metrics.enabled", True) is False:
            return plain_text(request, 404, "Not Found")
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return plain_text(request, 405, "Method Not Allowed")
        if lookup(config, "gateway.metrics.auth", True) is not False:
            authenticate(self._gateway, request, READ)
        body = self._gateway.metrics.render()
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return body

    # -- OpenAI-compatible API ---------------------------------------------------------------

    @openai_route(app, "/v1/chat/completions", b"POST", WRITE, lambda gateway: endpoint_enabled(gateway, CHAT_COMPLETIONS))
    def chat_completions(self, request: Any, subject: str) -> Any:
        return self._chat_completions.handle(request, read_json_body(request))

    @openai_route(app, "/v1/responses", b"POST", WRITE, lambda gateway: endpoint_enabled(gateway, RESPONSES))
    def responses(self, request: Any, subject: str) -> Any:
        return self._responses.handle(request, read_json_body(request), subject)

    @openai_route(app, "/v1/models", b"GET", READ, models_enabled)
    def list_models(self, request: Any, subject: str) -> Any:
        return write_json(request, 200, models.list_models(self._gateway))

    @openai_route(app, "/v1/models/<path:rest>", b"GET", READ, models_enabled, branch=True)
    def get_model(self, request: Any, subject: str, rest: str = "") -> Any:
        raw_id = request.path.split(b"?", 1)[0][len(b"/v1/models/") :]
        return write_json(request, 200, models.get_model(self._gateway, raw_id))

    @app.handle_errors(HttpError)
    def http_error(self, request: Any, failure: Any) -> bytes:
        """Every ``/v1`` refusal, raised anywhere before the answer starts, in the OpenAI shape."""
        return write_error(request, failure.value)

    # -- Control UI ------------------------------------------------------------------------------
    # It has no route of its own: whatever no API route matched is the UI's (files, SPA routes),
    # as in the reference, where the UI is the last handler before the 404.

    @app.handle_errors(NotFound)
    def not_found(self, request: Any, failure: Any) -> Any:
        result = self.control_ui.render(request)
        if isinstance(result, Deferred):
            return result.addCallback(lambda body: sized(request, body))
        return sized(request, result)

    def _ui_auth(self, request: Any) -> bytes | None:
        try:
            authenticate(self._gateway, request, READ)
        except HttpError as error:
            return write_error(request, error)
        return None

    def _control_ui_config(self, build_id: str | None) -> dict[str, Any]:
        """``/control-ui-config.json``: the fields the reference's UI reads at start."""
        gateway = self._gateway
        identity = agent_identity(gateway.catalog)
        return {
            "basePath": gateway.settings.control_ui.base_path,
            "assistantName": identity["name"],
            "assistantAvatar": identity["avatar"],
            "assistantAvatarSource": None,
            "assistantAvatarStatus": None,
            "assistantAvatarReason": None,
            "assistantAgentId": identity["agentId"],
            "serverVersion": gateway.version,
            "serverBuildId": None,
            "embedSandbox": "scripts",
            "allowExternalEmbedUrls": False,
            "automaticallyFetchFavicons": False,
            "communityInvite": False,
            "terminalEnabled": False,
            "cliAgentsEnabled": False,
            "pluginAssetsRequireAuth": True,
            "pluginFrameGrants": [],
        }

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
