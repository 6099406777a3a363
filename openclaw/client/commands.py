"""The ``openclaw-gateway`` commands that read or change something with one or two calls.

Each handler gets a :class:`Session` (the connected client, the parsed arguments, the output
streams) and fires with the exit status. With ``--json`` every command prints the gateway's
payload as JSON; otherwise it prints what a person wants to read (see ``render``).
"""
from __future__ import annotations

import json
from typing import Any, TextIO
from collections.abc import Callable

import attrs
import json5
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from . import render
from .client import GatewayCallError, GatewayClient

DEFAULT_LOG_LIMIT = 200
MAX_LOG_BYTES = 250_000


@attrs.define
class Session:
    client: GatewayClient
    args: Any
    out: TextIO
    err: TextIO
    reactor: Any
    lines: Any = None  # a DeferredQueue of input lines (None at the end), for ``chat``
    prompt: bool = False  # print a prompt before reading (standard input is a terminal)

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def emit(self, payload: Any, human: Callable[[Any], str]) -> int:
        self.out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n" if self.args.json else human(payload))
        return 0


def one_call(method: str, params: dict[str, Any], human: Callable[[Session, Any], str], expect_final: bool = False) -> Callable[[Session], Any]:
    @inlineCallbacks
    def handler(session: Session) -> Any:
        payload = yield session.client.call(method, params, expect_final=expect_final)
        return session.emit(payload, lambda p: human(session, p))

    return handler


def _health(session: Session, p: dict[str, Any]) -> str:
    loop = p.get("eventLoop") or {}
    return render.pairs(
        [
            ("ok", p.get("ok")),
            ("default agent", p.get("defaultAgentId")),
            ("sessions", (p.get("sessions") or {}).get("count")),
            ("runs active", (p.get("runs") or {}).get("active")),
            ("event loop degraded", loop.get("degraded")),
            ("event loop p99", f"{loop.get('delayP99Ms', '-')} ms"),
        ]
    )


def _status(session: Session, p: dict[str, Any]) -> str:
    connections = p.get("connections") or {}
    memory = p.get("processMemory") or {}
    return render.pairs(
        [
            ("version", p.get("runtimeVersion")),
            ("uptime", render.duration(p.get("uptimeMs"))),
            ("connections", connections.get("total")),
            ("sessions", (p.get("sessions") or {}).get("count")),
            ("event loop degraded", (p.get("eventLoop") or {}).get("degraded")),
            ("memory", f"{memory.get('rssBytes', 0) // (1024 * 1024)} MiB" if memory else None),
            ("queued system events", len(p.get("queuedSystemEvents") or [])),
        ]
    )


def _sessions(session: Session, p: dict[str, Any]) -> str:
    now = session.now_ms()
    rows = [
        [row.get("key"), row.get("label") or row.get("displayName"), render.ago(row.get("updatedAt"), now), row.get("model")]
        for row in p.get("sessions", [])
    ]
    return render.table(rows, ["key", "label", "updated", "model"])


def _devices(session: Session, p: dict[str, Any]) -> str:
    now = session.now_ms()
    pending = [["pending", r.get("requestId"), r.get("deviceId"), r.get("role"), r.get("remoteIp"), render.ago(r.get("ts"), now)] for r in p.get("pending", [])]
    paired = [
        ["paired", "", r.get("deviceId"), ",".join(r.get("roles", [])), r.get("remoteIp"), render.ago(r.get("approvedAtMs") or r.get("createdAtMs"), now)]
        for r in p.get("paired", [])
    ]
    return render.table(pending + paired, ["state", "requestId", "deviceId", "role", "remoteIp", "since"])


def _nodes(session: Session, p: dict[str, Any]) -> str:
    rows = [[n.get("nodeId"), n.get("displayName"), n.get("platform"), n.get("paired"), n.get("connected"), ",".join(n.get("commands", []))] for n in p.get("nodes", [])]
    return render.table(rows, ["nodeId", "name", "platform", "paired", "connected", "commands"])


def _pending_nodes(session: Session, p: dict[str, Any]) -> str:
    rows = [[r.get("requestId"), r.get("nodeId"), r.get("displayName"), ",".join(r.get("commands", []))] for r in p.get("pending", [])]
    return render.table(rows, ["requestId", "nodeId", "name", "commands"])


def _models(session: Session, p: dict[str, Any]) -> str:
    models = p.get("models", [])
    if not models:
        return "No models configured: set agents.defaults.model or declare models.providers (docs/agents.md).\n"
    rows = [
        [f"{m.get('provider')}/{m.get('id')}", m.get("name"), m.get("contextWindow"), m.get("local"), m.get("available")]
        for m in models
    ]
    return render.table(rows, ["model", "name", "context", "local", "key set"])


def simple_handler(args: Any) -> Callable[[Session], Any] | None:
    """The handler for the one-call commands, or ``None`` for the others."""
    command = args.command
    if command == "call":
        return one_call(args.method, args.params, lambda s, p: json.dumps(p, indent=2, ensure_ascii=False) + "\n", args.expect_final)
    if command == "health":
        return one_call("health", {}, _health)
    if command == "status":
        return one_call("status", {}, _status)
    if command == "models":
        return one_call("models.list", {}, _models)
    if command == "sessions":
        params: dict[str, Any] = {"limit": args.limit}
        if args.search:
            params["search"] = args.search
        return one_call("sessions.list", params, _sessions)
    if command == "devices":
        if args.action == "list":
            return one_call("device.pair.list", {}, _devices)
        return one_call(f"device.pair.{args.action}", {"requestId": args.request_id}, lambda s, p: f"{args.action}d {args.request_id}\n")
    if command == "nodes":
        if args.action == "list":
            return one_call("node.list", {}, _nodes)
        if args.action == "pending":
            return one_call("node.pair.list", {}, _pending_nodes)
        return one_call(f"node.pair.{args.action}", {"requestId": args.request_id}, lambda s, p: f"{args.action}d {args.request_id}\n")
    return None


# -- config ------------------------------------------------------------------------------------


def lookup_path(document: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at a dotted path (``agents.list.0.id`` indexes lists)."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def parse_value(text: str) -> Any:
    """``config set`` values: JSON5 when it parses (numbers, booleans, objects), else the text."""
    try:
        return json5.loads(text)
    except ValueError:
        return text


def nested(path: str, value: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for index, part in enumerate(reversed(path.split("."))):
        result = {part: value if index == 0 else result}
    return result


@inlineCallbacks
def config_command(session: Session) -> Any:
    args = session.args
    if args.action == "get":
        snapshot = yield session.client.call("config.get", {})
        if not args.path:
            return session.emit(snapshot, lambda s: json.dumps(s.get("config"), indent=2, ensure_ascii=False) + "\n")
        found, value = lookup_path(snapshot.get("config") or {}, args.path)
        if not found:
            session.err.write(f"{args.path} is not set in {snapshot.get('path')} (the built-in default applies)\n")
            return 1
        return session.emit({"path": args.path, "value": value}, lambda p: render.cell(value) + "\n" if not isinstance(value, (dict, list)) else json.dumps(value, indent=2) + "\n")
    if args.action == "set":
        patch = nested(args.path, parse_value(args.value))
    else:
        try:
            patch = json5.loads(args.patch)
        except ValueError as exc:
            session.err.write(f"the patch is not JSON5: {exc}\n")
            return 2
    current = yield session.client.call("config.get", {})
    result = yield session.client.call("config.patch", {"raw": json.dumps(patch), "baseHash": current.get("hash")})
    return session.emit(result, _patched)


def _patched(result: dict[str, Any]) -> str:
    if result.get("noop"):
        return "No change.\n"
    changed = ", ".join(result.get("changedPaths") or []) or "(none)"
    after = "the gateway restarts to apply it" if result.get("restart") else "applied without a restart"
    return f"Updated {changed} in {result.get('path')}: {after}.\n"


# -- logs --------------------------------------------------------------------------------------


@inlineCallbacks
def logs_command(session: Session) -> Any:
    args = session.args
    params: dict[str, Any] = {"limit": args.limit, "maxBytes": MAX_LOG_BYTES}
    payload = yield session.client.call("logs.tail", params)
    _print_lines(session, payload, first=True)
    while args.follow:
        yield deferLater(session.reactor, args.interval, lambda: None)
        try:
            payload = yield session.client.call("logs.tail", {**params, "cursor": payload.get("cursor", 0)})
        except GatewayCallError as exc:
            if not exc.may_retry:
                raise
            continue
        _print_lines(session, payload, first=False)
    return 0


def _print_lines(session: Session, payload: dict[str, Any], first: bool) -> None:
    if session.args.json:
        for line in payload.get("lines", []):
            session.out.write(line + "\n")
        session.out.flush()
        return
    if first:
        session.err.write(f"Log file: {payload.get('file')}\n")
    elif payload.get("reset"):
        session.err.write("(the log file was rotated or skipped ahead)\n")
    for line in payload.get("lines", []):
        session.out.write(render.log_line(line, utc=session.args.utc) + "\n")
    session.out.flush()


# -- dashboard ---------------------------------------------------------------------------------


def dashboard_url(gateway_url: str) -> str:
    """The Control UI address on the gateway's own port: ``ws(s)://host:port`` → ``http(s)://host:port/``."""
    scheme, _, rest = gateway_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}/"
