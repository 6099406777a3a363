"""The start-up banner: where the gateway listens, how to get in, where its files are.

A newcomer starting ``twistd -n openclaw`` needs, in one place, the URLs to point clients and
the browser at, the auth mode, which config file was read (or that none was), where state
lives, and what will not work yet: no model provider means every chat fails, and the
OpenAI-compatible HTTP API is off unless enabled. It is logged once the port listens (and again
after an in-process restart), so it lands in twistd's output and in ``gateway.log``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from .config.loader import lookup

if TYPE_CHECKING:
    from .hub import GatewayHub

_log = Logger(namespace="openclaw.banner")

NO_PROVIDER = (
    "no model provider configured: chats will fail until agents.defaults.model names a usable model "
    "(e.g. openai/gpt-4.1-mini with OPENAI_API_KEY set) or models.providers declares one"
)
HTTP_API_DISABLED = (
    "HTTP API disabled: /v1/chat/completions and /v1/responses answer 404 until "
    "gateway.http.endpoints.chatCompletions.enabled (or .responses.enabled) is true"
)


def _host(settings: Any) -> str:
    interface = settings.interfaces[0]
    if interface == "0.0.0.0":
        return "127.0.0.1"  # reachable here; other machines use this host's LAN address
    return f"[{interface}]" if ":" in interface else interface


def base_urls(settings: Any) -> tuple[str, str]:
    """``(ws://…, http://…)`` a client on this machine uses (``wss``/``https`` with TLS)."""
    secure = "s" if settings.tls_enabled else ""
    where = f"{_host(settings)}:{settings.port}"
    return f"ws{secure}://{where}", f"http{secure}://{where}"


def dashboard_url(settings: Any) -> str:
    """The Control UI's address (``gateway.controlUi.basePath``, default ``/``)."""
    base_path: str = settings.control_ui.base_path
    return base_urls(settings)[1] + base_path + "/"


def dashboard_line(settings: Any) -> str:
    """The URL, or why the Control UI is not served there (docs/control-ui.md says how to fix it)."""
    control_ui = settings.control_ui
    if not control_ui.enabled:
        return "off (gateway.controlUi.enabled is false)"
    if not control_ui.usable:
        problem = control_ui.problem or "no Control UI root is configured"
        return f"{dashboard_url(settings)} (not served: {problem}; see docs/control-ui.md)"
    return dashboard_url(settings)


def model_ready(gateway: GatewayHub) -> bool:
    """Whether the default agent has at least one model a run can be sent to."""
    catalog = gateway.catalog
    return any(catalog.resolve(ref) is not None for ref in catalog.candidates(None))


def http_api_enabled(config: Any) -> bool:
    return any(lookup(config, f"gateway.http.endpoints.{name}.enabled") is True for name in ("chatCompletions", "responses"))


def banner_lines(gateway: GatewayHub) -> tuple[list[str], list[str]]:
    """``(lines, warnings)`` of the banner for this gateway's current settings."""
    settings = gateway.settings
    ws_url, http_url = base_urls(settings)
    if settings.config_path and os.path.exists(settings.config_path):
        config = settings.config_path
    elif settings.config_path:
        config = f"{settings.config_path} (not there yet: built-in defaults)"
    else:
        config = "none (built-in defaults)"
    auth = settings.auth.mode
    if auth == "none":
        auth = "none (anyone who can reach the port is an operator)"
    lines = [
        f"OpenClaw gateway {gateway.version} ready",
        f"  WebSocket: {ws_url}",
        f"  HTTP:      {http_url}",
        f"  Dashboard: {dashboard_line(settings)}",
        f"  Auth:      {auth}",
        f"  Config:    {config}",
        f"  State:     {settings.state_dir}",
    ]
    warnings = []
    if not model_ready(gateway):
        warnings.append(NO_PROVIDER)
    if not http_api_enabled(settings.config):
        warnings.append(HTTP_API_DISABLED)
    return lines, warnings


def log_banner(gateway: GatewayHub) -> None:
    lines, warnings = banner_lines(gateway)
    _log.info("{banner}", banner="\n".join(lines))
    for warning in warnings:
        _log.warn("warning: {text}", text=warning)
