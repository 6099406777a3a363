"""Resolved gateway settings: command line over environment over config file over defaults."""
from __future__ import annotations

import ipaddress
import os
from typing import Any
from collections.abc import Mapping

import attrs

from .agents.catalog import Catalog, provider_keys
from .config import snapshot as config_snapshot
from .config.loader import ConfigError, config_path_for, default_state_dir, lookup
from .control_ui.settings import ControlUiSettings
from .control_ui.settings import resolve as resolve_control_ui
from .protocol.constants import (
    DEFAULT_PORT,
    HANDSHAKE_TIMEOUT_MS,
    HEALTH_REFRESH_INTERVAL_MS,
    MAX_BUFFERED_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_PREAUTH_CONNECTIONS_PER_IP,
    TICK_INTERVAL_MS,
)
from .security.shared_secret import AUTH_MODES, AUTH_NONE, AUTH_PASSWORD, AUTH_TOKEN, AuthSettings

BIND_MODES = ("loopback", "lan")


@attrs.frozen
class GatewaySettings:
    port: int = DEFAULT_PORT
    bind: str = "loopback"
    auth: AuthSettings = AuthSettings()
    state_dir: str = attrs.field(factory=lambda: default_state_dir({}))
    config_path: str | None = None
    handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS
    tick_interval_ms: int = TICK_INTERVAL_MS
    health_refresh_interval_ms: int = HEALTH_REFRESH_INTERVAL_MS
    max_payload: int = MAX_PAYLOAD_BYTES
    max_buffered_bytes: int = MAX_BUFFERED_BYTES
    max_preauth_per_ip: int = MAX_PREAUTH_CONNECTIONS_PER_IP
    allowed_origins: tuple[str, ...] = ()
    auto_approve_local: bool = True
    rate_limit_exempt_loopback: bool = True
    rate_limit: Mapping[str, int] = attrs.field(factory=dict)
    reload_mode: str = "hybrid"
    reload_debounce_ms: int = 300
    strict_transport_security: str | None = None
    tls_enabled: bool = False
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    tls_auto_generate: bool = False
    control_ui: ControlUiSettings = ControlUiSettings()
    config: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    # Model provider keys from the environment (OPENAI_API_KEY, …): only those names.
    provider_env: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    @property
    def interfaces(self) -> tuple[str, ...]:
        """Addresses to listen on for the bind mode (``lan`` means every IPv4 interface)."""
        if self.bind == "loopback":
            return ("127.0.0.1", "::1")
        if self.bind == "lan":
            return ("0.0.0.0",)
        return (self.bind,)


def _pick(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive integer, not {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return number


def _resolve_tls(options: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """TLS fields: ``--tls-cert``/``--tls-key`` (both, and they imply TLS) over ``gateway.tls``.

    Enabled without paths means a self-signed certificate under ``<state-dir>/tls`` unless
    ``autoGenerate`` is explicitly false, which is refused here rather than at bind time.
    """
    cli_cert, cli_key = options.get("tls-cert"), options.get("tls-key")
    if cli_cert or cli_key:
        if not (cli_cert and cli_key):
            raise ConfigError("--tls-cert and --tls-key must be given together")
        return {"tls_enabled": True, "tls_cert_path": cli_cert, "tls_key_path": cli_key, "tls_auto_generate": False}
    enabled = lookup(config, "gateway.tls.enabled", False) is True
    cert, key = lookup(config, "gateway.tls.certPath"), lookup(config, "gateway.tls.keyPath")
    auto = lookup(config, "gateway.tls.autoGenerate")
    if not enabled:
        return {"tls_enabled": False, "tls_cert_path": None, "tls_key_path": None, "tls_auto_generate": False}
    if bool(cert) != bool(key):
        raise ConfigError("gateway.tls.certPath and gateway.tls.keyPath must be given together")
    if not cert and auto is False:
        raise ConfigError("gateway.tls is enabled without certPath/keyPath and autoGenerate is false")
    return {"tls_enabled": True, "tls_cert_path": cert or None, "tls_key_path": key or None, "tls_auto_generate": not cert}


def read_config(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> config_snapshot.ConfigSnapshot:
    """The config file the options point at, read once (pass it on to :func:`resolve_settings`)."""
    env = os.environ if env is None else env
    state_dir = os.path.expanduser(options.get("state-dir") or default_state_dir(env))
    return config_snapshot.read(config_path_for(options.get("config"), state_dir, env), env)


def resolve_settings(
    options: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    snapshot: config_snapshot.ConfigSnapshot | None = None,
) -> GatewaySettings:
    """Combine the command line (``options``), the environment and the config file.

    ``snapshot`` is the already-read config file (the reloader passes the new one); without it
    the file is read here. Raises :class:`ConfigError` with a message meant for the operator,
    listing every problem, when the result cannot run.
    """
    env = os.environ if env is None else env
    state_dir = os.path.expanduser(options.get("state-dir") or default_state_dir(env))
    config_path = config_path_for(options.get("config"), state_dir, env)
    if snapshot is None:
        snapshot = config_snapshot.read(config_path, env)
    if not snapshot.valid:
        problems = "\n  ".join(str(issue) for issue in snapshot.issues)
        raise ConfigError(f"{config_path} is not a valid config:\n  {problems}")
    try:
        config = with_model_override(snapshot.config, options.get("model"))
        return _settings_for_config(options, env, state_dir, config_path, config)
    except ConfigError as exc:
        # Messages quote values (an unknown model, say); one taken from ${VAR} reads as written.
        raise ConfigError(snapshot.scrub(str(exc))) from None


def with_model_override(config: Mapping[str, Any], model: str | None) -> Mapping[str, Any]:
    """``--model provider/model`` as the default agent's primary model (fallbacks kept).

    It lets a newcomer start with a built-in provider and its key in the environment and no
    config file at all. The file itself is not changed (``config.get`` shows it as written).
    """
    if not model:
        return config
    agents = dict(config.get("agents") or {})
    defaults = dict(agents.get("defaults") or {})
    current = defaults.get("model")
    defaults["model"] = {**current, "primary": model} if isinstance(current, Mapping) else model
    agents["defaults"] = defaults
    return {**config, "agents": agents}


def _secret(config: Mapping[str, Any], path: str, env: Mapping[str, str]) -> Any:
    """A secret as written (a string), or the reference's ``{source: "env", provider, id}``
    reference read from the environment. Other sources (file, exec, store) cannot be read here:
    refusing to start beats starting without the secret."""
    value = lookup(config, path)
    if not isinstance(value, Mapping):
        return value
    name = value.get("id")
    if value.get("source") != "env" or not isinstance(name, str):
        raise ConfigError(f"{path}: a secret from source {value.get('source')!r} is not supported here (use a string, ${{VAR}} or source env)")
    if not env.get(name):
        raise ConfigError(f"{path} names environment variable {name}, which is not set")
    return env[name]


def _bind(bind: Any, config: Mapping[str, Any]) -> Any:
    """The reference's bind modes: ``auto`` is loopback here, ``custom`` is ``gateway.customBindHost``."""
    if bind == "auto":
        return "loopback"
    if bind == "custom":
        host = lookup(config, "gateway.customBindHost")
        if not host:
            raise ConfigError("gateway.bind 'custom' needs gateway.customBindHost")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"gateway.customBindHost must be an IP address to listen on, not {host!r}") from None
        return host
    if bind == "tailnet":
        raise ConfigError("gateway.bind 'tailnet' is not available here (no Tailscale support): use loopback, lan or an address")
    return bind


def _settings_for_config(
    options: Mapping[str, Any], env: Mapping[str, str], state_dir: str, config_path: str, config: Mapping[str, Any]
) -> GatewaySettings:
    port = _port(options, env, config)
    bind = _bind(_pick(options.get("bind"), lookup(config, "gateway.bind"), "loopback"), config)
    auth = _auth(options, env, config, bind)

    handshake_timeout = _positive_int(env.get("OPENCLAW_HANDSHAKE_TIMEOUT_MS"), "OPENCLAW_HANDSHAKE_TIMEOUT_MS")
    max_preauth = _positive_int(env.get("OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP"), "OPENCLAW_MAX_PREAUTH_CONNECTIONS_PER_IP")
    origins = lookup(config, "gateway.controlUi.allowedOrigins", ()) or ()
    auto_approve = lookup(config, "gateway.nodes.pairing.autoApproveLocal", True)
    exempt_loopback = lookup(config, "gateway.auth.rateLimit.exemptLoopback", True)

    Catalog.from_config(config)  # a malformed models/agents section stops start-up with a message, not a run later
    hsts = lookup(config, "gateway.http.securityHeaders.strictTransportSecurity")
    tls = _resolve_tls(options, config)

    return GatewaySettings(
        port=port,
        bind=bind,
        auth=auth,
        state_dir=state_dir,
        config_path=config_path,
        handshake_timeout_ms=handshake_timeout or HANDSHAKE_TIMEOUT_MS,
        max_preauth_per_ip=max_preauth or MAX_PREAUTH_CONNECTIONS_PER_IP,
        allowed_origins=tuple(origins),
        auto_approve_local=auto_approve is not False,
        rate_limit_exempt_loopback=exempt_loopback is not False,
        rate_limit={
            key: value
            for key, value in (lookup(config, "gateway.auth.rateLimit", {}) or {}).items()
            if key in ("maxAttempts", "windowMs", "lockoutMs")
        },
        reload_mode=lookup(config, "gateway.reload.mode", "hybrid"),
        reload_debounce_ms=lookup(config, "gateway.reload.debounceMs", 300),
        strict_transport_security=hsts if isinstance(hsts, str) and hsts else None,
        **tls,
        control_ui=resolve_control_ui(options, env, config),
        config=config,
        provider_env=provider_keys(config, env),
    )


def _port(options: Mapping[str, Any], env: Mapping[str, str], config: Mapping[str, Any]) -> int:
    """--port, then OPENCLAW_GATEWAY_PORT, then gateway.port, then the default."""
    port = _positive_int(
        _pick(options.get("port"), env.get("OPENCLAW_GATEWAY_PORT"), lookup(config, "gateway.port")), "port"
    ) or DEFAULT_PORT
    if port > 65535:
        raise ConfigError(f"port must be at most 65535, not {port}")
    return port


def _auth(options: Mapping[str, Any], env: Mapping[str, str], config: Mapping[str, Any], bind: str) -> AuthSettings:
    """The auth mode and its secret; a mode without its secret, or no auth beyond loopback, is refused."""
    token = _pick(options.get("token"), env.get("OPENCLAW_GATEWAY_TOKEN"), _secret(config, "gateway.auth.token", env))
    password = _pick(
        options.get("password"), env.get("OPENCLAW_GATEWAY_PASSWORD"), _secret(config, "gateway.auth.password", env)
    )
    mode = _pick(options.get("auth"), lookup(config, "gateway.auth.mode"))
    if mode is None:
        mode = AUTH_TOKEN if token else AUTH_PASSWORD if password else AUTH_NONE
    if mode not in AUTH_MODES:
        if mode == "trusted-proxy":
            raise ConfigError("gateway.auth.mode 'trusted-proxy' is not available here: use token or password")
        raise ConfigError(f"auth mode must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
    if mode == AUTH_TOKEN and not token:
        raise ConfigError("auth mode 'token' needs a token (--token, OPENCLAW_GATEWAY_TOKEN or gateway.auth.token)")
    if mode == AUTH_PASSWORD and not password:
        raise ConfigError(
            "auth mode 'password' needs a password (--password, OPENCLAW_GATEWAY_PASSWORD or gateway.auth.password)"
        )
    if mode == AUTH_NONE and bind != "loopback":
        raise ConfigError("refusing to serve beyond loopback without auth: set a token or password, or --bind loopback")
    return AuthSettings(mode=mode, token=token, password=password)
