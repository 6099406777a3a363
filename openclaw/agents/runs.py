"""Agent runs: one model turn for one session, streamed to clients as ``agent`` and ``chat`` events.

A session runs one turn at a time; later sends wait in that session's queue (bounded), in order.
A run appends the user message to the transcript, sends the recent history to the model (with
fallbacks), streams text deltas out as events, and appends the answer. Whatever ends a run (the
model finishing, ``chat.abort``, the run timeout, the owning HTTP client going away, an upstream
error) produces exactly one terminal event and records the outcome for ``agent.wait`` and for
idempotent replays.

Event shapes follow the reference: ``agent`` events carry ``{runId, stream, data, sessionKey,
agentId, seq, ts, isHeartbeat}`` with a per-run ``seq``; ``chat`` events mirror them with
``state`` delta/final/aborted/error. Streamed text goes out in batches (see :mod:`.live_text`):
each batch is one ``agent`` assistant event and one ``chat`` delta.
"""
from __future__ import annotations

import uuid
from collections import deque
from typing import Any
from collections.abc import Callable, Mapping

import attrs
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..seams import ISessionLeases
from ..providers.client import Completion, FallbackStream, ModelClient
from ..providers.errors import KIND_TIMEOUT, ProviderError, StreamAborted
from ..stores.sessions import SessionStore, message_text, model_override
from .catalog import Catalog, ModelRef
from .dedupe import IdempotencyCache
from .live_text import LiveText

MAX_QUEUED_PER_SESSION = 32
MAX_HISTORY_MESSAGES = 200
FINISHED_RUNS_KEPT = 1000
FINISHED_RUN_TTL_S = 600.0
CHARS_PER_TOKEN = 4
TIMEOUT_MESSAGE = (
    "Request timed out before a response was generated. Please try again, "
    "or increase `agents.defaults.timeoutSeconds` in your config."
)

STATUS_QUEUED = "queued"
STATUS_RUNNING = "running"
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_ABORTED = "aborted"
STATUS_TIMEOUT = "timeout"
# A session's last-run status, in the reference's words (its UI: Running, Done, Failed, Killed,
# Timed out).
SESSION_RUNNING = "running"
SESSION_DONE = "done"
SESSION_FAILED = "failed"
SESSION_KILLED = "killed"
SESSION_TIMEOUT = "timeout"
TERMINAL = (STATUS_OK, STATUS_ERROR, STATUS_ABORTED, STATUS_TIMEOUT)


def _failover_reason(error: ProviderError) -> str:
    if error.status == 429:
        return "rate_limit"
    if error.status is not None and error.status >= 500:
        return "server_error"
    if error.kind == KIND_TIMEOUT:
        return "timeout"
    if error.retryable:
        return "network"
    return error.kind


@implementer(ISessionLeases)
class LocalLeases:
    """One process runs every session it is asked to: the lease is always free."""

    def hold(self, session_key: str) -> Deferred[None]:
        return succeed(None)

    def release(self, session_key: str) -> None:
        pass


class QueueFull(Exception):
    pass


@attrs.define(eq=False)
class Run:
    run_id: str
    session_key: str
    agent_id: str
    message: str
    accepted_at: int
    kind: str = "chat"  # or "agent", "heartbeat"
    # The connection whose loss cancels the run: set for HTTP requests, whose client is the only
    # reader. WebSocket runs belong to the session (other operators watch them, the transcript
    # keeps the answer), so a CLI that sends and disconnects still gets its message answered.
    owner: str | None = None
    timeout_s: float | None = None
    model_override: str | None = None
    extra_system_prompt: str | None = None
    # The conversation a caller supplies itself (OpenAI HTTP clients send their history); when
    # None the session's transcript is the context.
    context: list[dict[str, Any]] | None = None
    options: dict[str, Any] = attrs.field(factory=dict)  # sampling settings for the upstream
    idempotency_key: str | None = None
    status: str = STATUS_QUEUED
    session_id: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    error: str | None = None
    error_kind: str | None = None
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    error_detail: dict[str, Any] | None = None
    target: ModelRef | None = None
    seq: int = 0
    _observers: list[Deferred[Run]] = attrs.field(factory=list, repr=False)
    _text_listeners: list[Callable[[str], None]] = attrs.field(factory=list, repr=False)
    _stream: FallbackStream | None = attrs.field(default=None, repr=False)
    _timer: IDelayedCall | None = attrs.field(default=None, repr=False)
    _abort_reason: str | None = attrs.field(default=None, repr=False)
    # While waiting for the session's lease (cluster mode: another instance runs this session).
    _lease: Deferred[None] | None = attrs.field(default=None, repr=False)
    # The answer so far, joined when read: re-joining per chunk made a long answer quadratic.
    _text_parts: list[str] = attrs.field(factory=list, repr=False)

    @property
    def text(self) -> str:
        if len(self._text_parts) > 1:
            self._text_parts[:] = ["".join(self._text_parts)]
        return self._text_parts[0] if self._text_parts else ""

    @text.setter
    def text(self, value: str) -> None:
        self._text_parts[:] = [value] if value else []

    def append_text(self, delta: str) -> None:
        self._text_parts.append(delta)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def on_text(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(delta)`` for every piece of answer text as it streams."""
        self._text_listeners.append(listener)

    # -- lifecycle: the manager drives it through these, never through the fields ----------

    @property
    def abort_reason(self) -> str | None:
        """Why the run is being (or was) stopped early: "timeout", "rpc", ...; None while it runs on."""
        return self._abort_reason

    def begin(self, now_ms: int, clock: IReactorTime, on_timeout: Callable[[Run], None]) -> None:
        self.status = STATUS_RUNNING
        self.started_at = now_ms
        if self.timeout_s:
            self._timer = clock.callLater(self.timeout_s, on_timeout, self)

    def attach_stream(self, stream: FallbackStream) -> FallbackStream:
        self._stream = stream
        return stream

    def publish_delta(self, delta: str) -> None:
        """Answer text as it streams: kept, and handed to every text listener."""
        self.append_text(delta)
        for listener in self._text_listeners:
            listener(delta)

    def request_abort(self, reason: str) -> bool:
        """Stop early: the stream is cancelled now, or the run notices at its next step.

        False when the run has already finished or is already stopping.
        """
        if self.finished or self._abort_reason is not None:
            return False
        self._abort_reason = reason
        if self._lease is not None:
            self._lease.cancel()  # still waiting for the session's lease: stop waiting
        if self._stream is not None:
            self._stream.cancel(reason)
        return True

    def settle(self, status: str, now_ms: int, abort_reason: str | None = None) -> None:
        """The terminal status: timers, stream and listeners released, observers told."""
        self.status = status
        self.ended_at = now_ms
        if abort_reason is not None:
            self._abort_reason = abort_reason
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._stream = None
        self._text_listeners = []
        observers, self._observers = self._observers, []
        for d in observers:
            d.callback(self)

    def when_finished(self) -> Deferred[Run]:
        """Fires with this run once it reaches a terminal status."""
        if self.finished:
            return succeed(self)
        d: Deferred[Run] = Deferred()
        self._observers.append(d)
        return d

    def wait_summary(self) -> dict[str, Any]:
        """The ``agent.wait`` answer for this run (shape as the reference reports it)."""
        summary: dict[str, Any] = {"runId": self.run_id, "status": self.status if self.finished else "pending"}
        if self.started_at is not None:
            summary["startedAt"] = self.started_at
        if self.ended_at is not None:
            summary["endedAt"] = self.ended_at
        if self.status == STATUS_ABORTED:
            summary.update({"status": STATUS_ERROR, "error": "aborted", "stopReason": "rpc"})
        elif self.status == STATUS_TIMEOUT:
            summary.update({"error": self.error, "timeoutPhase": "provider", "providerStarted": self.target is not None})
        elif self.status == STATUS_ERROR:
            summary["error"] = self.error
        elif self.status == STATUS_OK:
            summary["stopReason"] = self.stop_reason
        return summary


class RunManager:
    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: SessionStore,
        catalog: Callable[[], Catalog],
        model_client: ModelClient,
        emit: Callable[[str, Mapping[str, Any]], None],
        sessions_changed: Callable[..., None],
        leases: Any = None,
    ):
        self._clock = clock
        # ISessionLeases: one instance runs a session at a time (a no-op in one process).
        self._leases = leases if leases is not None else LocalLeases()
        self._store = store
        self._catalog = catalog
        self._client = model_client
        self._emit = emit
        self._sessions_changed = sessions_changed
        self._active: dict[str, Run] = {}  # session key -> running run
        self._queues: dict[str, deque[Run]] = {}
        self._runs: dict[str, Run] = {}  # run id -> unfinished run
        # Ended runs stay queryable (agent.wait, replays) for a while, bounded in time and count.
        self._finished: IdempotencyCache[Run] = IdempotencyCache(clock, FINISHED_RUN_TTL_S, FINISHED_RUNS_KEPT)
        self._waiters: dict[str, list[Deferred[dict[str, Any]]]] = {}

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- queries -----------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        if run is not None:
            return run
        return self._finished.get(run_id)

    def active_run(self, session_key: str) -> Run | None:
        return self._active.get(session_key)

    def has_activity(self, session_key: str) -> bool:
        return session_key in self._active or bool(self._queues.get(session_key))

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def queued_count(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    # -- submitting and stopping -------------------------------------------------------------

    def submit(self, run: Run) -> Run:
        """Start ``run`` now or queue it behind the session's current run."""
        queue = self._queues.setdefault(run.session_key, deque())
        if run.session_key in self._active and len(queue) >= MAX_QUEUED_PER_SESSION:
            raise QueueFull(f"session {run.session_key} already has {MAX_QUEUED_PER_SESSION} queued messages")
        self._runs[run.run_id] = run
        if run.session_key in self._active:
            queue.append(run)
        else:
            self._start(run)
        return run

    def abort(self, session_key: str, run_id: str | None = None, reason: str = "aborted") -> list[str]:
        """Abort the session's running run and drop its queued ones (or just ``run_id``)."""
        aborted = []
        queue = self._queues.get(session_key) or deque()
        for run in list(queue):
            if run_id is None or run.run_id == run_id:
                self._drop_queued(run, reason)
                aborted.append(run.run_id)
        active = self._active.get(session_key)
        if active is not None and (run_id is None or active.run_id == run_id):
            self._cancel(active, reason)
            aborted.insert(0, active.run_id)
        return aborted

    def connection_lost(self, owner: str) -> None:
        """Runs owned by a client that is gone stop, so nobody pays for an answer nobody reads."""
        for run in [r for r in self._runs.values() if r.owner == owner]:
            if run.status == STATUS_QUEUED:
                self._drop_queued(run, "client-disconnected")
            else:
                self._cancel(run, "client-disconnected")

    def _drop_queued(self, run: Run, reason: str) -> None:
        self._queues[run.session_key].remove(run)
        self._chat(run, "aborted", stopReason="aborted")
        self._finish(run, STATUS_ABORTED, abort_reason=reason)

    def stop_all(self) -> None:
        for session_key in list(set(self._active) | set(self._queues)):
            self.abort(session_key, reason="gateway-stopping")

    def wait(self, run_id: str, timeout_ms: int) -> Deferred[dict[str, Any]]:
        """``agent.wait``: the run's outcome, or ``status: timeout`` if it is still going."""
        run = self.get(run_id)
        if run is not None and run.finished:
            return succeed(run.wait_summary())
        waiters = self._waiters.setdefault(run_id, [])

        def forget(cancelled: Deferred[dict[str, Any]]) -> None:
            if cancelled in waiters:
                waiters.remove(cancelled)
            if not waiters:
                self._waiters.pop(run_id, None)

        def timed_out(result: Any, timeout: float) -> dict[str, Any]:
            current = self.get(run_id)
            summary = current.wait_summary() if current is not None else {"runId": run_id}
            summary["status"] = STATUS_TIMEOUT
            return summary

        d: Deferred[dict[str, Any]] = Deferred(forget)
        waiters.append(d)
        return d.addTimeout(timeout_ms / 1000.0, self._clock, onTimeoutCancel=timed_out)

    # -- the run itself ----------------------------------------------------------------------

    def _event(self, run: Run, stream: str, data: Mapping[str, Any], **extra: Any) -> int:
        run.seq += 1
        payload: dict[str, Any] = {"runId": run.run_id, "stream": stream, "data": dict(data), "sessionKey": run.session_key, "agentId": run.agent_id}
        payload.update(extra)
        payload.update({"seq": run.seq, "ts": self.now_ms(), "isHeartbeat": run.kind == "heartbeat"})
        self._emit("agent", payload)
        return run.seq

    def _chat(self, run: Run, state: str, seq: int | None = None, **fields: Any) -> None:
        payload: dict[str, Any] = {
            "runId": run.run_id,
            "sessionKey": run.session_key,
            "agentId": run.agent_id,
            "seq": seq if seq is not None else run.seq,
            "state": state,
        }
        payload.update({k: v for k, v in fields.items() if v is not None})
        self._emit("chat", payload)

    def _assistant_message(self, text: str) -> dict[str, Any]:
        return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": self.now_ms()}

    def _start(self, run: Run) -> None:
        self._active[run.session_key] = run
        run.begin(self.now_ms(), self._clock, self._timed_out)
        lease = run._lease = self._leases.hold(run.session_key)
        lease.addCallbacks(self._leased, self._lease_refused, callbackArgs=(run,), errbackArgs=(run,))
        lease.addErrback(self._crashed, run)

    def _leased(self, _: None, run: Run) -> Deferred[Any]:
        run._lease = None
        return self._drive(run)

    def _lease_refused(self, failure: Failure, run: Run) -> None:
        """Cancelled while waiting for the lease (abort, timeout): the run ends as aborted."""
        failure.trap(CancelledError)
        run._lease = None
        self._conclude_aborted(run)

    def _timed_out(self, run: Run) -> None:
        self._cancel(run, "timeout")

    def _crashed(self, failure: Failure, run: Run) -> None:
        self._log.failure("run {run_id} failed unexpectedly", failure, run_id=run.run_id)
        if not run.finished:
            run.error = failure.getErrorMessage() or type(failure.value).__name__
            self._chat(run, STATUS_ERROR, errorMessage=run.error, errorKind="unknown")
            self._finish(run, STATUS_ERROR)

    @inlineCallbacks
    def _drive(self, run: Run) -> Any:
        """Prepare (session, the user's line, history), stream the answer, then record how it ended."""
        prepared = yield self._prepare(run)
        if prepared is None:
            return self._conclude_aborted(run)
        catalog, entry, history = prepared
        refs = catalog.candidates(run.agent_id, run.model_override or model_override(entry))
        targets = [target for target in (catalog.resolve(ref) for ref in refs) if target is not None]
        unavailable = None if targets else "; ".join(filter(None, map(catalog.why_unavailable, refs))) or None
        live = LiveText(self._clock, lambda batch: self._publish_text(run, batch))
        try:
            completion = yield self._stream_answer(run, targets, history, live, unavailable)
        except StreamAborted:
            yield self._record_partial(run)
            return self._conclude_aborted(run)
        except ProviderError as error:
            self._note_error(run, error)
            yield self._record_error(run)
            return self._conclude_error(run)
        yield self._conclude_ok(run, completion)

    @inlineCallbacks
    def _prepare(self, run: Run) -> Any:
        """The session row, the user's line and the start events; None when aborted meanwhile."""
        catalog = self._catalog()
        entry = yield self._store.ensure(run.session_key, self.now_ms())
        run.session_id = entry["sessionId"]
        if run.finished or run.abort_reason is not None:
            return None
        user_message = {"role": "user", "content": run.message, "timestamp": run.accepted_at}
        if run.idempotency_key:
            user_message["idempotencyKey"] = f"{run.idempotency_key}:user"
        yield self._store.append(
            run.session_key,
            run.session_id,
            [self.transcript_line(user_message, run.run_id)],
            {
                "updatedAt": self.now_ms(),
                "lastInteractionAt": self.now_ms(),
                "abortedLastRun": None,
                # The run state the UI's session status shows ("Running", then "Done", ...).
                "status": SESSION_RUNNING,
                "startedAt": run.started_at,
                "endedAt": None,
                "runtimeMs": None,
                "lastRunId": run.run_id,
            },
        )
        self._sessions_changed(run.session_key, reason="agent.run.started", runId=run.run_id)
        self._event(run, "lifecycle", {"phase": "start", "startedAt": run.started_at}, sessionId=run.session_id)
        history: list[tuple[int, dict[str, Any]]] = []
        if run.context is None:
            history, _ = yield self._store.history(run.session_id, MAX_HISTORY_MESSAGES)
        if run.abort_reason is not None:
            return None
        return catalog, entry, history

    def _stream_answer(
        self, run: Run, targets: list[Any], history: Any, live: LiveText, unavailable: str | None
    ) -> Deferred[Completion]:
        """Start the upstream stream; the text goes out in paced batches, flushed however it ends."""
        messages = self._prompt(run, history, targets[0] if targets else None)

        def on_delta(delta: str) -> None:
            run.publish_delta(delta)
            live.add(delta)

        stream = run.attach_stream(self._client.complete(targets, messages, on_delta, run.options, unavailable))
        if targets:
            run.target = targets[0]
            self._event(run, "lifecycle", {"phase": "model", "provider": targets[0].provider.id, "model": targets[0].model.id})

        def flushed(result: Completion | Failure) -> Completion | Failure:
            live.flush()
            return result

        return stream.start().addBoth(flushed)

    def _note_error(self, run: Run, error: ProviderError) -> None:
        run.error = error.message
        run.error_kind = error.kind
        if run.target is not None:
            run.error_detail = {
                "provider": run.target.provider.id,
                "model": run.target.model.id,
                "failoverReason": _failover_reason(error),
            }

    @inlineCallbacks
    def _conclude_ok(self, run: Run, completion: Completion) -> Any:
        run.target = completion.target
        run.usage = completion.result.usage
        run.stop_reason = completion.result.stop_reason
        run.text = completion.result.text or run.text
        yield self._record_answer(run, completion)
        if run.usage:
            self._event(run, "usage", {"outputTokens": run.usage.get("output", 0)})
        message = self._assistant_message(run.text)
        self._event(
            run,
            "lifecycle",
            {"phase": "end", "startedAt": run.started_at, "endedAt": self.now_ms(), "stopReason": run.stop_reason, "aborted": False},
            sessionId=run.session_id,
        )
        self._chat(run, "final", stopReason=run.stop_reason, message=message, usage=run.usage)
        self._finish(run, STATUS_OK)

    def _publish_text(self, run: Run, batch: str) -> None:
        """One batch of answer text: an ``agent`` assistant event and a ``chat`` delta."""
        text = run.text
        self._event(run, "assistant", {"text": text, "delta": batch})
        self._chat(run, "delta", deltaText=batch, message=self._assistant_message(text))

    def _prompt(self, run: Run, history: list[tuple[int, dict[str, Any]]], target: ModelRef | None) -> list[dict[str, Any]]:
        """System prompt plus as much recent history as fits the model's context window."""
        budget = (target.model.context_window if target and target.model.context_window else 128_000) * CHARS_PER_TOKEN
        if target and target.model.max_tokens:
            budget -= target.model.max_tokens * CHARS_PER_TOKEN
        messages: list[dict[str, Any]] = []
        if run.context is not None:
            history = [(0, {"type": "message", "message": message}) for message in run.context]
        for _, line in reversed(history):
            message = line.get("message") if line.get("type") == "message" else None
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                continue
            if message.get("stopReason") == "error":
                continue
            text = message_text(message)
            if not text:
                continue
            budget -= len(text)
            if budget < 0 and messages:
                break
            messages.append({"role": message["role"], "content": text})
        messages.reverse()
        if run.extra_system_prompt:
            messages.insert(0, {"role": "system", "content": run.extra_system_prompt})
        return messages

    def transcript_line(self, message: Mapping[str, Any], run_id: str | None = None) -> dict[str, Any]:
        """One transcript entry; ``run_id`` ties a turn's messages to the run that produced them
        (history reports it, so a UI that streamed the run can match the stored answer)."""
        line = {"type": "message", "id": str(uuid.uuid4()), "timestamp": self.now_ms(), "message": dict(message)}
        if run_id is not None:
            line["runId"] = run_id
        return line

    def _record(self, run: Run, message: dict[str, Any], changes: dict[str, Any]) -> Deferred[dict[str, Any] | None]:
        if run.session_id is None:
            return succeed(None)
        message.setdefault("timestamp", self.now_ms())
        changes.setdefault("updatedAt", self.now_ms())
        d = self._store.append(run.session_key, run.session_id, [self.transcript_line(message, run.run_id)], changes)
        return d.addErrback(self._record_failed, run)

    def _record_answer(self, run: Run, completion: Completion) -> Deferred[dict[str, Any] | None]:
        target = completion.target
        usage = run.usage or {}
        message = self._assistant_message(run.text)
        message.update(
            {
                "api": target.provider.api,
                "provider": target.provider.id,
                "model": completion.result.model or target.model.id,
                "usage": {"input": usage.get("input", 0), "output": usage.get("output", 0), "totalTokens": usage.get("totalTokens", 0)},
                "stopReason": run.stop_reason,
            }
        )
        changes: dict[str, Any] = {"modelProvider": target.provider.id, "model": target.model.id, "abortedLastRun": False, **self._ended(run, SESSION_DONE)}
        if usage:
            changes.update(
                {"inputTokens": usage.get("input", 0), "outputTokens": usage.get("output", 0), "totalTokens": usage.get("totalTokens", 0)}
            )
        if target.model.context_window:
            changes["contextTokens"] = target.model.context_window
        return self._record(run, message, changes)

    def _record_partial(self, run: Run) -> Deferred[dict[str, Any] | None]:
        ended = self._ended(run, SESSION_TIMEOUT if run.abort_reason == "timeout" else SESSION_KILLED)
        if not run.text:
            return self._record_flag(run, {"abortedLastRun": True, **ended})
        message = self._assistant_message(run.text)
        message["stopReason"] = "aborted"
        return self._record(run, message, {"abortedLastRun": True, **ended})

    def _record_flag(self, run: Run, changes: dict[str, Any]) -> Deferred[dict[str, Any] | None]:
        if run.session_id is None:
            return succeed(None)
        changes.setdefault("updatedAt", self.now_ms())
        d = self._store.append(run.session_key, run.session_id, [], changes)
        return d.addErrback(self._record_failed, run)

    def _record_failed(self, failure: Failure, run: Run) -> None:
        self._log.failure("could not record run {run_id}", failure, run_id=run.run_id)

    def _record_error(self, run: Run) -> Deferred[dict[str, Any] | None]:
        message = self._assistant_message(run.text)
        message.update({"stopReason": "error", "errorMessage": run.error})
        return self._record(run, message, self._ended(run, SESSION_TIMEOUT if run.error_kind == KIND_TIMEOUT else SESSION_FAILED))

    def _ended(self, run: Run, status: str) -> dict[str, Any]:
        """The session's last-run fields once ``run`` is over, as the reference keeps them."""
        ended = self.now_ms()
        runtime = ended - run.started_at if run.started_at is not None else None
        return {"status": status, "endedAt": ended, "runtimeMs": runtime}

    def _conclude_aborted(self, run: Run) -> None:
        reason = run.abort_reason or "aborted"
        ended = self.now_ms()
        if reason == "timeout":
            run.error = TIMEOUT_MESSAGE
            run.error_kind = KIND_TIMEOUT
            self._event(run, "lifecycle", {"phase": "error", "startedAt": run.started_at, "endedAt": ended, "error": run.error, "aborted": True})
            self._chat(run, "error", errorMessage=run.error, errorKind=KIND_TIMEOUT, stopReason="timeout")
            self._finish(run, STATUS_TIMEOUT)
            return
        self._event(run, "lifecycle", {"phase": "end", "startedAt": run.started_at, "endedAt": ended, "stopReason": "aborted", "aborted": True})
        self._chat(run, "aborted", stopReason="aborted", message=self._assistant_message(run.text) if run.text else None)
        self._finish(run, STATUS_ABORTED, abort_reason=reason)

    def _conclude_error(self, run: Run) -> None:
        self._event(run, "lifecycle", {"phase": "error", "startedAt": run.started_at, "endedAt": self.now_ms(), "error": run.error})
        self._chat(run, "error", errorMessage=run.error, errorKind=run.error_kind or "unknown", errorDetail=run.error_detail)
        self._finish(run, STATUS_TIMEOUT if run.error_kind == KIND_TIMEOUT else STATUS_ERROR)

    def _cancel(self, run: Run, reason: str) -> None:
        run.request_abort(reason)

    def _finish(self, run: Run, status: str, abort_reason: str | None = None) -> None:
        if run.finished:
            return
        self._runs.pop(run.run_id, None)
        self._finished.put(run.run_id, run)
        run.settle(status, self.now_ms(), abort_reason)
        for d in self._waiters.pop(run.run_id, []):
            d.callback(run.wait_summary())
        if self._active.get(run.session_key) is run:
            del self._active[run.session_key]
            self._leases.release(run.session_key)
            self._sessions_changed(run.session_key, reason="agent.run.ended", runId=run.run_id)
            queue = self._queues.get(run.session_key)
            if queue:
                self._start(queue.popleft())
            else:
                self._queues.pop(run.session_key, None)
