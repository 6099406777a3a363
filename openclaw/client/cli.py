"""``openclaw-gateway``: talk to the gateway from a shell.

    openclaw-gateway chat                                  # interactive, answers stream
    openclaw-gateway agent -m "summarise the day"
    openclaw-gateway logs --follow
    openclaw-gateway config set logging.level debug
    openclaw-gateway call health --url ws://127.0.0.1:18789 --token SECRET --json
    openclaw-gateway sessions list --search work
    openclaw-gateway devices approve <requestId>
    openclaw-gateway --url wss://gw.example:18789 --tls-fingerprint sha256:AB:CD:… nodes pending
    openclaw-gateway state migrate --cluster-postgres DSN   (cluster mode; see openclaw/cluster/migrate.py)

Friendly commands print tables with local times and yes/no; ``--json`` prints the response
payload as JSON instead. Command handlers live in ``commands`` and ``conversation``. The CLI
keeps a device identity (``~/.openclaw/identity/cli-device.pem`` unless ``--identity``) so the
gateway can pair it and issue it a device token; on loopback that pairing is silent.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import webbrowser
from typing import Any, TextIO
from collections.abc import Callable, Sequence

from urllib.parse import quote

from autobahn.websocket.util import parse_url
from twisted.internet.defer import DeferredQueue, inlineCallbacks

from ..protocol.constants import DEFAULT_PORT
from ..tls.certificates import normalize_fingerprint
from .client import ClientOptions, GatewayCallError, GatewayClient
from .commands import DEFAULT_LOG_LIMIT, Session, config_command, dashboard_url, logs_command, simple_handler
from .conversation import DEFAULT_RUN_TIMEOUT_S, StdinLines, agent_command, chat_command
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
    parser = argparse.ArgumentParser(prog="openclaw-gateway", description="Talk to an OpenClaw gateway.")
    _connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(group: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, **kwargs)
        _connection_options(sub, suppress=True)
        return sub

    call = command(commands, "call", help="call any method")
    call.add_argument("method")
    call.add_argument("--params", type=_json, default={}, help="the params as JSON [default: {}]")
    call.add_argument("--expect-final", action="store_true", help="wait for the second response (agent)")
    chat = command(commands, "chat", help="chat with the assistant (interactive; answers stream)")
    chat.add_argument("--session", default="main", help="session key [default: main]")
    chat.add_argument("--agent", help="agent id [default: the default agent]")
    chat.add_argument("-m", "--message", help="send this one message, print the answer and exit")
    chat.add_argument("--run-timeout", type=float, default=DEFAULT_RUN_TIMEOUT_S, help="seconds to wait for an answer [600]")
    agent = command(commands, "agent", help="run one agent turn and print the answer")
    agent.add_argument("-m", "--message", required=True)
    agent.add_argument("--agent", help="agent id")
    agent.add_argument("--session", help="session key [default: the agent's main session]")
    agent.add_argument("--run-timeout", type=float, default=DEFAULT_RUN_TIMEOUT_S, help="seconds to wait for the answer [600]")
    logs = command(commands, "logs", help="print the gateway's log (gateway.log)")
    logs.add_argument("--limit", type=int, default=DEFAULT_LOG_LIMIT, help="lines to start with [200]")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("--interval", type=float, default=1.0, help="seconds between polls with --follow [1]")
    logs.add_argument("--utc", action="store_true", help="times in UTC, not local time")
    config = command(commands, "config", help="read or change the gateway's config file").add_subparsers(dest="action", required=True)
    command(config, "get").add_argument("path", nargs="?", help="dotted path, e.g. gateway.port [default: everything]")
    setting = command(config, "set")
    setting.add_argument("path")
    setting.add_argument("value", help="JSON5 value (text that does not parse is taken as a string)")
    command(config, "patch").add_argument("patch", help="a JSON5 merge patch, e.g. '{logging: {level: \"debug\"}}'")
    command(commands, "models", help="list the models this gateway can use")
    dashboard = command(commands, "dashboard", help="print the Control UI URL")
    dashboard.add_argument("--open", action="store_true", help="open it in a browser (with the token)")
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


@inlineCallbacks
def run(
    argv: Sequence[str], reactor: Any, out: TextIO = sys.stdout, err: TextIO = sys.stderr, lines: DeferredQueue[str | None] | None = None
) -> Any:
    """Run one command; fires with the exit status (0 ok, 1 call failed, 2 usage error or could not connect).

    ``lines`` feeds ``chat`` its input (standard input when not given).
    """
    args = parse_args(argv, out, err)
    if isinstance(args, int):
        return args
    if args.command == "dashboard":
        return _dashboard(args, out)
    handler = _handler(args)
    identity_path = args.identity or os.path.expanduser("~/.openclaw/identity/cli-device.pem")
    try:
        device = load_or_create_identity(identity_path)
    except (OSError, ValueError, TypeError) as exc:  # unreadable, not a PEM key, encrypted, not Ed25519
        err.write(f"cannot use the device identity {identity_path}: {exc}\n")
        err.write("move it aside to create a new identity (the device must then be paired again)\n")
        return 2
    client = GatewayClient(_client_options(args, device, identity_path), reactor=reactor)
    try:
        hello = yield client.connect()
    except GatewayCallError as exc:
        err.write(f"could not connect to {args.url}: {exc.message}\n")
        details = exc.details if isinstance(exc.details, dict) else {}
        if details.get("code") == "PAIRING_REQUIRED" and details.get("requestId"):
            request_id = details["requestId"]
            err.write(f"an operator approves this device with: openclaw-gateway devices approve {request_id}\n")
        return 2
    _warn_if_secret_refused(args, hello, err)
    session = Session(client, args, out, err, reactor)
    if args.command == "chat" and args.message is None:
        session.lines = lines if lines is not None else _stdin_lines()
        session.prompt = lines is None and sys.stdin.isatty()
    try:
        status = yield handler(session)
    except GatewayCallError as exc:
        if args.json:
            out.write(json.dumps({"ok": False, "error": {"code": exc.code, "message": exc.message, "details": exc.details}}, indent=2) + "\n")
        else:
            err.write(f"{_what(args)} failed: {exc.code}: {exc.message}\n")
        return 1
    except TimeoutError:
        err.write(f"no answer within {args.run_timeout:g} s\n")
        return 1
    finally:
        yield client.close()
    return status


def _what(args: argparse.Namespace) -> str:
    if args.command == "call":
        return str(args.method)
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if action else str(args.command)


def _handler(args: argparse.Namespace) -> Callable[[Session], Any]:
    special = {"chat": chat_command, "agent": agent_command, "logs": logs_command, "config": config_command}
    handler = special.get(args.command) or simple_handler(args)
    assert handler is not None, args.command
    return handler


def _client_options(args: argparse.Namespace, device: Any, identity_path: str) -> ClientOptions:
    return ClientOptions(
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


def _warn_if_secret_refused(args: argparse.Namespace, hello: Any, err: TextIO) -> None:
    """A wrong --token/--password must not pass silently because a stored device token got in."""
    method = ((hello or {}).get("auth") or {}).get("method")
    if (args.token or args.password) and method == "device-token":
        which = "token" if args.token else "password"
        err.write(
            f"warning: the gateway refused the shared {which}; connected with this device's stored token instead. "
            f"Check --{which} (or OPENCLAW_GATEWAY_{which.upper()}).\n"
        )


def _dashboard(args: argparse.Namespace, out: TextIO) -> int:
    url = dashboard_url(args.url)
    if args.json:
        out.write(json.dumps({"url": url}) + "\n")
    else:
        out.write(f"Dashboard: {url}\n")
    if args.open:
        secret = f"#token={quote(args.token)}" if args.token else ""
        if not webbrowser.open(url + secret):
            out.write("No browser could be started here; open the URL above yourself.\n")
    return 0


def _stdin_lines() -> DeferredQueue[str | None]:
    from twisted.internet import stdio

    queue: DeferredQueue[str | None] = DeferredQueue()
    stdio.StandardIO(StdinLines(queue))
    return queue


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
