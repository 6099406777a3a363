"""``openclaw-gateway``: call the gateway from a shell.

    openclaw-gateway call health --url ws://127.0.0.1:18789 --token SECRET --json
    openclaw-gateway sessions list --search work
    openclaw-gateway devices approve <requestId>
    openclaw-gateway --url wss://gw.example:18789 --tls-fingerprint sha256:AB:CD:… nodes pending
    openclaw-gateway state migrate --cluster-postgres DSN   (cluster mode; see openclaw/cluster/migrate.py)

Friendly commands print tables; ``--json`` prints the response payload as JSON instead. The CLI
keeps a device identity (``~/.openclaw/identity/cli-device.pem`` unless ``--identity``) so the
gateway can pair it and issue it a device token; on loopback that pairing is silent.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Callable, Sequence, TextIO

from autobahn.websocket.util import parse_url
from twisted.internet.defer import inlineCallbacks

from ..protocol.constants import DEFAULT_PORT
from ..tls.certificates import normalize_fingerprint
from .client import ClientOptions, GatewayCallError, GatewayClient
from .identity import DeviceTokenStore, load_or_create_identity

ALL_OPERATOR_SCOPES = ("operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing")


def _fingerprint(text: str) -> str:
    try:
        normalize_fingerprint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _url(text: str) -> str:
    try:
        parse_url(text)
    except Exception as exc:  # noqa: BLE001 - autobahn raises a bare Exception
        raise argparse.ArgumentTypeError(f"not a ws:// or wss:// URL: {text!r} ({exc})") from None
    return text


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command shares, accepted before and after the subcommand.

    The top-level parser holds the real defaults; each subcommand gets copies defaulting to
    ``SUPPRESS``, so a value given before the subcommand is not overwritten by a default after it.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--url",
        type=_url,
        default=default(os.environ.get("OPENCLAW_GATEWAY_URL", f"ws://127.0.0.1:{DEFAULT_PORT}")),
        help=f"gateway URL [default: $OPENCLAW_GATEWAY_URL, else ws://127.0.0.1:{DEFAULT_PORT}]",
    )
    parser.add_argument("--token", default=default(os.environ.get("OPENCLAW_GATEWAY_TOKEN")), help="shared token [$OPENCLAW_GATEWAY_TOKEN]")
    parser.add_argument(
        "--password", default=default(os.environ.get("OPENCLAW_GATEWAY_PASSWORD")), help="shared password [$OPENCLAW_GATEWAY_PASSWORD]"
    )
    parser.add_argument("--tls-fingerprint", type=_fingerprint, default=default(None), help="pin the server certificate (sha256:AB:CD:…)")
    parser.add_argument("--identity", default=default(None), help="device key file [default: ~/.openclaw/identity/cli-device.pem]")
    parser.add_argument("--timeout", type=float, default=default(30.0), help="seconds to wait for a response")
    parser.add_argument("--json", action="store_true", default=default(False), help="print the response payload as JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openclaw-gateway", description="Call an OpenClaw gateway.")
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(group: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub = group.add_parser(name, **kwargs)
        _connection_options(sub, suppress=True)
        return sub

    call = command(commands, "call", help="call any method")
    call.add_argument("method")
    call.add_argument("--params", type=_json, default={}, help="the params as JSON [default: {}]")
    call.add_argument("--expect-final", action="store_true", help="wait for the second response (agent)")
    command(commands, "health")
    command(commands, "status")
    sessions = command(commands, "sessions").add_subparsers(dest="action", required=True)
    listing = command(sessions, "list")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--search")
    devices = command(commands, "devices").add_subparsers(dest="action", required=True)
    command(devices, "list")
    for action in ("approve", "reject"):
        command(devices, action).add_argument("request_id")
    nodes = command(commands, "nodes").add_subparsers(dest="action", required=True)
    command(nodes, "list")
    command(nodes, "pending")
    for action in ("approve", "reject"):
        command(nodes, action).add_argument("request_id")
    return parser


def parse_args(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> argparse.Namespace | int:
    """The parsed command line, or the exit status when argparse ended it (2: usage error, 0: --help)."""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return _parser().parse_args(list(argv))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(header) for header in headers]] + [["" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any], Callable[[Any], str] | None, bool]:
    """(method, params, renderer, expect_final) for the chosen command."""
    if args.command == "call":
        return args.method, args.params, None, args.expect_final
    if args.command == "health":
        return "health", {}, lambda p: table([[p.get("ok"), p.get("durationMs"), (p.get("sessions") or {}).get("count")]], ["ok", "durationMs", "sessions"]), False
    if args.command == "status":
        return "status", {}, lambda p: table(
            [[p.get("runtimeVersion"), (p.get("connections") or {}).get("total"), (p.get("sessions") or {}).get("count"), p.get("uptimeMs")]],
            ["version", "connections", "sessions", "uptimeMs"],
        ), False
    if args.command == "sessions":
        params: dict[str, Any] = {"limit": args.limit}
        if args.search:
            params["search"] = args.search
        return "sessions.list", params, lambda p: table(
            [[row.get("key"), row.get("label") or row.get("displayName"), row.get("updatedAt"), row.get("model")] for row in p.get("sessions", [])],
            ["key", "label", "updatedAt", "model"],
        ), False
    if args.command == "devices":
        if args.action == "list":
            return "device.pair.list", {}, lambda p: table(
                [["pending", r.get("requestId"), r.get("deviceId"), r.get("role"), r.get("remoteIp")] for r in p.get("pending", [])]
                + [["paired", "", r.get("deviceId"), ",".join(r.get("roles", [])), r.get("remoteIp")] for r in p.get("paired", [])],
                ["state", "requestId", "deviceId", "role", "remoteIp"],
            ), False
        return f"device.pair.{args.action}", {"requestId": args.request_id}, lambda p: f"{args.action}d {args.request_id}\n", False
    if args.action in ("list", "pending"):
        if args.action == "list":
            return "node.list", {}, lambda p: table(
                [[n.get("nodeId"), n.get("displayName"), n.get("platform"), n.get("paired"), n.get("connected"), ",".join(n.get("commands", []))] for n in p.get("nodes", [])],
                ["nodeId", "name", "platform", "paired", "connected", "commands"],
            ), False
        return "node.pair.list", {}, lambda p: table(
            [[r.get("requestId"), r.get("nodeId"), r.get("displayName"), ",".join(r.get("commands", []))] for r in p.get("pending", [])],
            ["requestId", "nodeId", "name", "commands"],
        ), False
    return f"node.pair.{args.action}", {"requestId": args.request_id}, lambda p: f"{args.action}d {args.request_id}\n", False


@inlineCallbacks
def run(argv: Sequence[str], reactor: Any, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> Any:
    """Run one command; fires with the exit status (0 ok, 1 call failed, 2 usage error or could not connect)."""
    args = parse_args(argv, out, err)
    if isinstance(args, int):
        return args
    method, params, render, expect_final = _request(args)
    identity_path = args.identity or os.path.expanduser("~/.openclaw/identity/cli-device.pem")
    try:
        device = load_or_create_identity(identity_path)
    except (OSError, ValueError, TypeError) as exc:  # unreadable, not a PEM key, encrypted, not Ed25519
        err.write(f"cannot use the device identity {identity_path}: {exc}\n")
        err.write("move it aside to create a new identity (the device must then be paired again)\n")
        return 2
    options = ClientOptions(
        url=args.url,
        token=args.token,
        password=args.password,
        client_id="cli",
        mode="cli",
        scopes=ALL_OPERATOR_SCOPES,
        device=device,
        device_tokens=DeviceTokenStore(os.path.splitext(identity_path)[0] + "-tokens.json"),
        tls_fingerprint=args.tls_fingerprint,
        request_timeout_s=args.timeout,
        reconnect=False,
    )
    client = GatewayClient(options, reactor=reactor)
    try:
        yield client.connect()
    except GatewayCallError as exc:
        err.write(f"could not connect to {args.url}: {exc.message}\n")
        details = exc.details if isinstance(exc.details, dict) else {}
        if details.get("code") == "PAIRING_REQUIRED" and details.get("requestId"):
            request_id = details["requestId"]
            err.write(f"an operator approves this device with: openclaw-gateway devices approve {request_id}\n")
        return 2
    try:
        payload = yield client.call(method, params, expect_final=expect_final)
    except GatewayCallError as exc:
        if args.json:
            out.write(json.dumps({"ok": False, "error": {"code": exc.code, "message": exc.message, "details": exc.details}}, indent=2) + "\n")
        else:
            err.write(f"{method} failed: {exc.code}: {exc.message}\n")
        return 1
    finally:
        yield client.close()
    if args.json or render is None:
        out.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(render(payload))
    return 0


def _exit_with(status: int) -> None:
    if status:
        raise SystemExit(status)  # task.react exits with this status


def main() -> None:
    if sys.argv[1:2] == ["state"]:
        # Offline storage tools (cluster schema, SQLite import): no gateway connection involved.
        from ..cluster.migrate import main as state_main

        raise SystemExit(state_main(sys.argv[2:]))
    from twisted.internet import task

    task.react(lambda reactor: run(sys.argv[1:], reactor).addCallback(_exit_with))


if __name__ == "__main__":  # pragma: no cover
    main()
