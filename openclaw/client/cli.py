"""``openclaw-gateway``: call the gateway from a shell.

    openclaw-gateway call health --url ws://127.0.0.1:18789 --token SECRET --json
    openclaw-gateway sessions list --search work
    openclaw-gateway devices approve <requestId>
    openclaw-gateway --url wss://gw.example:18789 --tls-fingerprint sha256:AB:CD:… nodes pending

Friendly commands print tables; ``--json`` prints the response payload as JSON instead. The CLI
keeps a device identity (``~/.openclaw/identity/cli-device.pem`` unless ``--identity``) so the
gateway can pair it and issue it a device token; on loopback that pairing is silent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence, TextIO

from twisted.internet.defer import inlineCallbacks

from ..protocol.constants import DEFAULT_PORT
from .client import ClientOptions, GatewayCallError, GatewayClient
from .identity import DeviceTokenStore, load_or_create_identity

ALL_OPERATOR_SCOPES = ("operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openclaw-gateway", description="Call an OpenClaw gateway.")
    parser.add_argument("--url", default=os.environ.get("OPENCLAW_GATEWAY_URL", f"ws://127.0.0.1:{DEFAULT_PORT}"))
    parser.add_argument("--token", default=os.environ.get("OPENCLAW_GATEWAY_TOKEN"))
    parser.add_argument("--password", default=os.environ.get("OPENCLAW_GATEWAY_PASSWORD"))
    parser.add_argument("--tls-fingerprint", help="pin the server certificate (sha256:AB:CD:…)")
    parser.add_argument("--identity", help="device key file [default: ~/.openclaw/identity/cli-device.pem]")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a response")
    parser.add_argument("--json", action="store_true", help="print the response payload as JSON")
    commands = parser.add_subparsers(dest="command", required=True)
    call = commands.add_parser("call", help="call any method")
    call.add_argument("method")
    call.add_argument("--params", default="{}", help="JSON object")
    call.add_argument("--expect-final", action="store_true", help="wait for the second response (agent)")
    commands.add_parser("health")
    commands.add_parser("status")
    sessions = commands.add_parser("sessions").add_subparsers(dest="action", required=True)
    listing = sessions.add_parser("list")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--search")
    devices = commands.add_parser("devices").add_subparsers(dest="action", required=True)
    devices.add_parser("list")
    for action in ("approve", "reject"):
        devices.add_parser(action).add_argument("request_id")
    nodes = commands.add_parser("nodes").add_subparsers(dest="action", required=True)
    nodes.add_parser("list")
    nodes.add_parser("pending")
    for action in ("approve", "reject"):
        nodes.add_parser(action).add_argument("request_id")
    return parser


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(header) for header in headers]] + [["" if value is None else str(value) for value in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any], Callable[[Any], str] | None, bool]:
    """(method, params, renderer, expect_final) for the chosen command."""
    if args.command == "call":
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise SystemExit(f"--params is not JSON: {exc}") from None
        return args.method, params, None, args.expect_final
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
    """Run one command; fires with the exit status (0 ok, 1 call failed, 2 could not connect)."""
    argv = list(argv)
    as_json = "--json" in argv  # accepted anywhere, as the reference CLI takes it after the method
    args = _parser().parse_args([arg for arg in argv if arg != "--json"])
    args.json = args.json or as_json
    method, params, render, expect_final = _request(args)
    identity_path = args.identity or os.path.expanduser("~/.openclaw/identity/cli-device.pem")
    device = load_or_create_identity(identity_path)
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
    from twisted.internet import task

    task.react(lambda reactor: run(sys.argv[1:], reactor).addCallback(_exit_with))


if __name__ == "__main__":  # pragma: no cover
    main()
