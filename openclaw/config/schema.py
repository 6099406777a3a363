"""The keys this gateway acts on, as a JSON Schema: ``CONFIG_SCHEMA``.

Each key may carry ``default``, a ``description``, ``x-sensitive`` (redacted by ``config.get``)
and ``x-reload`` (``hot``: applied in place, ``restart``: the service tree restarts, ``none``:
nothing to do). The key table of ``docs/configuration.md`` is generated from this document
(``python -m openclaw.config.key_table``, :mod:`.key_table`) and a test keeps the two in step.

A file is *checked* against more than this: :mod:`.accepted` merges it into the reference's own
schema, so every key the reference accepts is accepted here too (and named at start-up as
"accepted, not used here" when it is not in this document). A key in neither is refused.
"""
from __future__ import annotations

import json
import sys
from typing import Any
from collections.abc import Iterator

Schema = dict[str, Any]


def _reload(mode: str) -> dict[str, Any]:
    """The ``x-reload`` annotation (how a change to the section is applied), as keyword extras."""
    return {"x-reload": mode}


def _obj(properties: dict[str, Schema], description: str = "", *, strict: bool = True, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if strict:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def _leaf(kind: Any, description: str, default: Any = None, **extra: Any) -> Schema:
    schema: Schema = {"type": kind, "description": description} if kind else {"description": description}
    if default is not None:
        schema["default"] = default
    schema.update(extra)
    return schema


def _enum(values: tuple[Any, ...], description: str, default: Any = None, **extra: Any) -> Schema:
    return _leaf(None, description, default, enum=list(values), **extra)


def _secret(description: str) -> Schema:
    return _leaf("string", description, **{"x-sensitive": True})


def _free(description: str, **extra: Any) -> Schema:
    return {"type": "object", "description": description, **extra}


_STRINGS = {"type": "array", "items": {"type": "string"}}

MODEL_SELECTION = {
    "anyOf": [
        {"type": "string"},
        _obj({"primary": {"type": "string"}, "fallbacks": _STRINGS}),
    ],
    "description": '"provider/model" or {primary, fallbacks}',
}

HEARTBEAT = _obj(
    {
        "every": _leaf("string", 'how often the heartbeat turn runs ("30m", "1h", "0m" disables)', "30m"),
        "prompt": _leaf("string", "the message the heartbeat turn sends"),
        "target": _leaf("string", "where replies go (owner, last, none or a channel)"),
        "timeoutSeconds": _leaf("integer", "time limit of a heartbeat turn", minimum=1),
    },
    "the periodic agent turn",
    **_reload("hot"),
)

PROVIDER = _obj(
    {
        "baseUrl": _leaf("string", "OpenAI-compatible base URL", pattern="^https?://"),
        "apiKey": _secret("sent as Authorization: Bearer"),
        "api": _enum(("openai-completions", "openai-responses"), "which OpenAI API to speak", "openai-completions"),
        "headers": {"type": "object", "additionalProperties": {"type": "string"}, "description": "extra request headers"},
        "models": {
            "type": "array",
            "description": "models this provider serves",
            "items": _obj(
                {
                    "id": _leaf("string", "model id sent upstream", minLength=1),
                    "name": _leaf("string", "display name"),
                    "contextWindow": _leaf("integer", "context window in tokens", minimum=1),
                    "maxTokens": _leaf("integer", "output token limit", minimum=1),
                },
                required=["id"],
            ),
        },
    },
    required=["baseUrl"],
)

AGENT = _obj(
    {
        "name": _leaf("string", "display name"),
        "default": _leaf("boolean", "the default agent"),
        "model": MODEL_SELECTION,
        "identity": _free("name, emoji, avatar shown by clients"),
        "heartbeat": HEARTBEAT,
    },
)

GATEWAY = _obj(
    {
        "mode": _enum(("local", "remote"), "this process serves the gateway when local", "local"),
        "port": _leaf("integer", "TCP port for WebSocket and HTTP", 18789, minimum=1, maximum=65535),
        "bind": _leaf("string", "loopback, lan, or an interface address", "loopback", **{"x-widens": True}),
        "customBindHost": _leaf("string", "address for bind=custom"),
        "auth": _obj(
            {
                "mode": _enum(("none", "token", "password"), "how clients authenticate"),
                "token": _secret("shared gateway token"),
                "password": _secret("shared gateway password"),
                "rateLimit": _obj(
                    {
                        "maxAttempts": _leaf("integer", "failures before lockout", 10, minimum=1),
                        "windowMs": _leaf("integer", "window for counting failures", 60000, minimum=1),
                        "lockoutMs": _leaf("integer", "lockout length", 300000, minimum=1),
                        "exemptLoopback": _leaf("boolean", "never lock out loopback clients", True),
                    },
                    "failed-auth limiting",
                    **_reload("hot"),
                ),
            },
            "client authentication",
        ),
        "controlUi": _obj(
            {
                "enabled": _leaf("boolean", "serve the control UI", True),
                "basePath": {**_leaf("string", "URL path of the control UI"), "x-reload": "restart"},
                "root": {
                    **_leaf("string", "directory of the built Control UI (an installed openclaw package's dist/control-ui)"),
                    "x-reload": "restart",
                },
                "allowedOrigins": {**_STRINGS, "description": "browser origins allowed to connect"},
            },
            "browser clients",
            **_reload("hot"),
        ),
        "tls": _free("TLS for the listener (enabled, certPath, keyPath, caPath, autoGenerate)", properties={
            "enabled": _leaf("boolean", "serve TLS", False),
            "autoGenerate": _leaf(
                "boolean", "create (once) a self-signed certificate in the state dir's tls/ folder when no certPath/keyPath is given; on unless false"
            ),
            "certPath": _leaf("string", "PEM certificate chain (with keyPath; --tls-cert wins)"),
            "keyPath": _leaf("string", "PEM private key, unencrypted (with certPath; --tls-key wins)"),
            "caPath": _leaf("string", "PEM CA bundle for client certificates (accepted, not used yet)"),
        }),
        "reload": _obj(
            {
                "mode": _enum(("off", "hot", "restart", "hybrid"), "what a config change does", "hybrid"),
                "debounceMs": _leaf("integer", "wait after the last change before reloading", 300, minimum=0),
            },
            "config hot reload",
            **_reload("none"),
        ),
        "http": _obj(
            {
                "endpoints": _obj(
                    {
                        "chatCompletions": _obj(
                            {"enabled": _leaf("boolean", "serve POST /v1/chat/completions", False), "images": _free("image input limits")},
                        ),
                        "responses": _obj(
                            {
                                "enabled": _leaf("boolean", "serve POST /v1/responses", False),
                                "maxUrlParts": _leaf("integer", "URL-sourced parts per request", 8, minimum=0),
                                "files": _free("file input limits"),
                                "images": _free("image input limits"),
                            },
                        ),
                    },
                    "OpenAI-compatible endpoints (read on every request)",
                    **_reload("hot"),
                ),
                "securityHeaders": _obj(
                    {"strictTransportSecurity": {"anyOf": [{"type": "string"}, {"const": False}], "description": "HSTS header value"}},
                    **_reload("hot"),
                ),
            },
            "the HTTP side of the port",
        ),
        "nodes": _obj(
            {
                "pairing": _obj({"autoApproveLocal": _leaf("boolean", "pair loopback devices silently", True)}),
                "commands": _obj({"allow": _STRINGS, "deny": _STRINGS}, "node command allow/deny lists"),
            },
            "capability nodes",
            **_reload("hot"),
        ),
        "tools": _obj({"allow": _STRINGS, "deny": _STRINGS}, "/tools/invoke allow/deny lists", **_reload("hot")),
        "trustedProxies": {**_STRINGS, "description": "reverse proxies whose forwarding headers are trusted"},
        "metrics": _obj(
            {
                "enabled": _leaf("boolean", "serve GET /metrics (Prometheus text format)", True),
                "auth": _leaf("boolean", "require the gateway token or password for /metrics", True),
            },
            "Prometheus metrics",
            **_reload("hot"),
        ),
        "remote": _free("client-side settings for reaching a remote gateway", **_reload("none")),
    },
    "the gateway process",
)

CONFIG_SCHEMA: Schema = _obj(
    {
        "$schema": _leaf("string", "editor schema URL"),
        "gateway": GATEWAY,
        "models": _obj(
            {
                "providers": {"type": "object", "additionalProperties": PROVIDER, "description": "model servers by id"},
            },
            "model providers",
            **_reload("hot"),
        ),
        "agents": _obj(
            {
                "defaults": _obj(
                    {
                        "model": MODEL_SELECTION,
                        "timeoutSeconds": _leaf("integer", "run time limit", 600, minimum=1),
                        "heartbeat": HEARTBEAT,
                    },
                    "settings every agent inherits",
                ),
                "entries": {
                    "type": "object",
                    "description": "the agents by id (what the reference's onboarding writes); without entries or list there is one agent, main",
                    "additionalProperties": AGENT,
                },
                "list": {
                    "type": "array",
                    "description": "the agents as a list with ids (the older form; the reference moves it to agents.entries)",
                    "items": _obj({"id": _leaf("string", "agent id", minLength=1), **AGENT["properties"]}, required=["id"]),
                },
            },
            "agents",
            **_reload("hot"),
        ),
        "session": _obj(
            {
                "mainKey": _leaf("string", "the main session's key", "main"),
                "scope": _enum(("per-sender", "global"), "one session per sender or one shared", "per-sender"),
            },
            "session keys",
            **_reload("hot"),
        ),
        "env": _obj(
            {
                "vars": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "variables for the gateway; model provider keys (OPENAI_API_KEY, …) are read from here when the environment lacks them",
                },
            },
            "environment",
            **_reload("hot"),
        ),
        "hooks": _free("webhook ingress", **_reload("hot")),
        "logging": _obj(
            {
                "level": _enum(("debug", "info", "warn", "error"), "minimum level written to the log file", "info"),
            },
            "logging",
            **_reload("hot"),
        ),
    },
    "OpenClaw gateway configuration",
)


def walk(schema: Schema = CONFIG_SCHEMA, prefix: str = "") -> Iterator[tuple[str, Schema]]:
    """Every named key as (dotted path, schema node), parents before children."""
    for name, node in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, node
        if node.get("type") == "object" and "properties" in node:
            yield from walk(node, path)


def sensitive_paths() -> list[str]:
    return [path for path, node in walk() if node.get("x-sensitive")]


if __name__ == "__main__":  # pragma: no cover
    json.dump(CONFIG_SCHEMA, sys.stdout, indent=2)
