"""``openclaw-gateway chat`` and ``agent``: talk to the assistant, answers streamed as they come.

``chat`` sends each line typed (or ``--message`` once) with ``chat.send`` and prints the run's
``chat`` delta events as they arrive, then waits for the run's end (``final``, ``error`` or
``aborted``) before reading the next line; ``/quit`` or end of input ends it. ``agent`` runs one
turn with the two-phase ``agent`` method and streams its ``agent`` assistant events.

Input comes from a ``DeferredQueue`` of lines (``None`` at end of input): standard input in the
real command, a list in tests, so the loop never blocks the reactor.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from .commands import Session

DEFAULT_RUN_TIMEOUT_S = 600.0
QUIT_WORDS = ("/quit", "/exit")
RUN_END_STATES = ("final", "error", "aborted")


class StdinLines(Protocol):
    """Standard input as lines on a queue (``twisted.internet.stdio.StandardIO`` drives it)."""

    def __init__(self, queue: DeferredQueue[str | None], max_line: int = 1 << 20):
        self.queue = queue
        self._buffer = b""
        self._max_line = max_line

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > self._max_line:  # bounded: an endless line is cut, not buffered
            lines.append(self._buffer)
            self._buffer = b""
        for line in lines:
            self.queue.put(line.rstrip(b"\r").decode("utf-8", "replace"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self._buffer:
            self.queue.put(self._buffer.decode("utf-8", "replace"))
            self._buffer = b""
        self.queue.put(None)


class RunWatcher:
    """Streams one run's text to the terminal and fires ``done`` with its last ``chat`` event."""

    def __init__(self, session: Session, run_id: str):
        self.session = session
        self.run_id = run_id
        self.done: Deferred[dict[str, Any]] = Deferred()
        self.printed = False

    def chat_event(self, payload: dict[str, Any]) -> None:
        if payload.get("runId") != self.run_id or self.done.called:
            return
        state = payload.get("state")
        if state == "delta" and not self.session.args.json:
            delta = payload.get("deltaText") or ""
            if delta:
                self.session.out.write(delta)
                self.session.out.flush()
                self.printed = True
        elif state in RUN_END_STATES:
            self.done.callback(payload)


def _final_text(payload: dict[str, Any]) -> str:
    message = payload.get("message") or {}
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


@inlineCallbacks
def chat_command(session: Session) -> Any:
    args = session.args
    watchers: dict[str, RunWatcher] = {}

    def on_event(event: str, payload: Any, frame: dict[str, Any]) -> None:
        if event == "chat" and isinstance(payload, dict) and payload.get("runId") in watchers:
            watchers[payload["runId"]].chat_event(payload)

    session.client.on_event = on_event
    interactive = args.message is None
    status = 0
    while True:
        if interactive:
            if session.prompt:
                session.out.write("you> ")
                session.out.flush()
            line = yield session.lines.get()
            if line is None or line.strip() in QUIT_WORDS:
                break
            if not line.strip():
                continue
        else:
            line = args.message
        status = yield _one_turn(session, watchers, line)
        if not interactive:
            break
    return status


@inlineCallbacks
def _one_turn(session: Session, watchers: dict[str, RunWatcher], text: str) -> Any:
    args = session.args
    run_id = str(uuid.uuid4())
    watcher = watchers[run_id] = RunWatcher(session, run_id)
    params: dict[str, Any] = {"sessionKey": args.session, "message": text, "idempotencyKey": run_id}
    if args.agent:
        params["agentId"] = args.agent
    try:
        yield session.client.call("chat.send", params)
        end = yield watcher.done.addTimeout(args.run_timeout, session.reactor)
    finally:
        watchers.pop(run_id, None)
    if args.json:
        session.out.write(json.dumps(end, ensure_ascii=False) + "\n")
    elif end.get("state") == "final":
        session.out.write(("" if watcher.printed else _final_text(end)) + "\n")
    else:
        if watcher.printed:
            session.out.write("\n")
        session.err.write(f"[{end.get('state')}] {end.get('errorMessage') or end.get('stopReason') or 'the run ended without an answer'}\n")
        return 1
    session.out.flush()
    return 0


@inlineCallbacks
def agent_command(session: Session) -> Any:
    """One ``agent`` turn: stream its text, then the final status (exit 1 unless ``ok``)."""
    args = session.args
    run_id = str(uuid.uuid4())
    printed = []

    def on_event(event: str, payload: Any, frame: dict[str, Any]) -> None:
        if event != "agent" or not isinstance(payload, dict) or payload.get("runId") != run_id or args.json:
            return
        if payload.get("stream") == "assistant" and (payload.get("data") or {}).get("delta"):
            session.out.write(payload["data"]["delta"])
            session.out.flush()
            printed.append(True)

    session.client.on_event = on_event
    params: dict[str, Any] = {"message": args.message, "idempotencyKey": run_id}
    if args.agent:
        params["agentId"] = args.agent
    if args.session:
        params["sessionKey"] = args.session
    final = yield session.client.call("agent", params, expect_final=True, timeout_s=args.run_timeout)
    if args.json:
        session.out.write(json.dumps(final, indent=2, ensure_ascii=False) + "\n")
        return 0 if final.get("status") == "ok" else 1
    if not printed:
        texts = [p.get("text", "") for p in ((final.get("result") or {}).get("payloads") or []) if isinstance(p, dict)]
        session.out.write("\n".join(texts))
    session.out.write("\n")
    if final.get("status") != "ok":
        session.err.write(f"[{final.get('status')}] {final.get('summary')}\n")
        return 1
    return 0

