"""``chat.send``, ``chat.history``, ``chat.abort`` and ``chat.inject`` (protocol §9.2).

``chat.send`` answers at once with the run id (the idempotency key) and streams the rest as
``chat``/``agent`` events; ``chat.history`` reads the transcript back, newest ``limit`` messages
in order, with an opaque cursor for paging further back.
"""
from __future__ import annotations

import base64
from typing import Any

import attrs
import orjson
from twisted.internet.defer import Deferred, inlineCallbacks

from ..agents.dedupe import IdempotencyCache
from ..agents.dedupe import fingerprint as input_digest
from ..agents.runs import QueueFull, Run
from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..sessions.keys import agent_id_of
from ..security.scopes import ADMIN, SESSIONS_READ, SESSIONS_WRITE
from ..stores.sessions import truncate
from .registry import MethodSpec, RequestContext

HISTORY_DEFAULT_LIMIT = 200
HISTORY_MAX_LIMIT = 1000
CONFLICT_MESSAGE = (
    "This message ID was already used for different input. "
    "Check the conversation history and use a new message ID to send again."
)


@attrs.frozen
class SubmittedRun:
    """What an idempotency key remembers: the run and the input that started it (no run for
    an ``agent "/new"`` that only reset its session)."""

    run: Run | None
    fingerprint: tuple[Any, ...]


def replay_or_conflict(cache: IdempotencyCache[Any], key: str, fingerprint: tuple[Any, ...]) -> Run | None:
    """The run an earlier request with this key started, or None; different input is refused."""
    previous: SubmittedRun | None = cache.get(key)
    if previous is None:
        return None
    if previous.fingerprint != fingerprint:
        raise invalid_request(CONFLICT_MESSAGE, {"reason": "chat-request-conflict"})
    return previous.run


def claim_or_conflict(
    cache: IdempotencyCache[Any], key: str, fingerprint: tuple[Any, ...]
) -> Deferred[dict[str, Any] | None]:
    """Take the key cluster-wide; fires with None (go ahead) or the record of whoever took it
    first with the same input (different input is refused, as on one gateway)."""

    def check(record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is not None and "fp" in record and record["fp"] != digest:
            raise invalid_request(CONFLICT_MESSAGE, {"reason": "chat-request-conflict"})
        return record

    digest = input_digest(fingerprint)
    return cache.claim(key, digest).addCallback(check)


def resolve_agent(ctx: RequestContext, session_key: str, agent_id: str | None) -> str:
    """The agent a run belongs to; unknown agents are refused rather than silently created."""
    catalog = ctx.gateway.catalog
    wanted = agent_id_of(session_key) or agent_id or catalog.default_agent_id
    agent = catalog.agent(wanted)
    if agent is None:
        raise invalid_request(f'unknown agent id "{wanted}"')
    return agent.id


def start_run(
    ctx: RequestContext,
    *,
    kind: str,
    session_key: str,
    agent_id: str,
    message: str,
    timeout_s: float | None,
    cache_key: str,
    fingerprint: tuple[Any, ...],
    **options: Any,
) -> Run:
    """Queue a run keyed by the request's idempotency key and remember it for replays."""
    gateway = ctx.gateway
    key = ctx.params["idempotencyKey"]
    run = Run(
        run_id=key,
        session_key=session_key,
        agent_id=agent_id,
        message=message,
        accepted_at=gateway.now_ms(),
        kind=kind,
        timeout_s=timeout_s or float(gateway.catalog.run_timeout_s),
        idempotency_key=key,
        **options,
    )
    try:
        gateway.runs.submit(run)
    except QueueFull as exc:
        raise GatewayError(UNAVAILABLE, str(exc), retryable=True) from None
    gateway.dedupe.put(cache_key, SubmittedRun(run, fingerprint))
    return run


@inlineCallbacks
def chat_send(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    message = params["message"]
    if not message.strip() and not params.get("attachments"):
        raise invalid_request("invalid chat.send params: message must not be empty")
    session_key = gateway.session_key(params["sessionKey"], params.get("agentId"))
    agent_id = resolve_agent(ctx, session_key, params.get("agentId"))
    cache_key = f"chat:{params['idempotencyKey']}"
    fingerprint = (session_key, message)
    previous = replay_or_conflict(gateway.dedupe, cache_key, fingerprint)
    if previous is None:
        if gateway.runs.get(params["idempotencyKey"]) is not None:
            raise invalid_request(CONFLICT_MESSAGE, {"reason": "chat-request-conflict"})
        elsewhere = yield claim_or_conflict(gateway.dedupe, cache_key, fingerprint)
        # Taken meanwhile by a request on this instance, or first sent to another instance.
        previous = replay_or_conflict(gateway.dedupe, cache_key, fingerprint)
        if previous is None and elsewhere is not None:
            status = (elsewhere.get("result") or {}).get("status") if elsewhere.get("done") else None
            return {"runId": params["idempotencyKey"], "status": status or "in_flight"}
    if previous is not None:
        return {"runId": previous.run_id, "status": previous.status if previous.finished else "in_flight"}
    timeout_ms = params.get("timeoutMs")
    try:
        run = start_run(
            ctx,
            kind="chat",
            session_key=session_key,
            agent_id=agent_id,
            message=message,
            timeout_s=timeout_ms / 1000.0 if timeout_ms else None,
            cache_key=cache_key,
            fingerprint=fingerprint,
        )
    except GatewayError:
        gateway.dedupe.abandon(cache_key)
        raise
    run.when_finished().addCallback(lambda finished: gateway.dedupe.complete(cache_key, input_digest(fingerprint), {"status": finished.status}))
    return {"runId": run.run_id, "status": "started"}


def _encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"before:{before_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "before":
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("invalid chat.history params: cursor is not one this gateway issued") from None


def _clip(message: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    if not max_chars:
        return message
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": truncate(content, max_chars)}
    if isinstance(content, list):
        clipped = [
            {**part, "text": truncate(part["text"], max_chars)}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
        return {**message, "content": clipped}
    return message


@inlineCallbacks
def chat_history(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    session_key = gateway.session_key(params["sessionKey"], params.get("agentId"))
    limit = min(params.get("limit") or HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
    before_id = _decode_cursor(params["cursor"]) if params.get("cursor") else None
    entry = yield gateway.sessions.get(session_key)
    result: dict[str, Any] = {"sessionKey": session_key, "sessionId": None, "messages": []}
    if entry is None:
        return result
    session_id = params.get("sessionId") or entry["sessionId"]
    rows, has_more = yield gateway.sessions.history(session_id, limit, before_id)
    messages = []
    seqs = []
    for row_id, line in rows:
        message = line.get("message") if line.get("type") == "message" else None
        if isinstance(message, dict):
            meta = {"id": line.get("id"), "seq": row_id}
            if line.get("runId"):
                meta["runId"] = line["runId"]
            messages.append({**_clip(message, params.get("maxChars")), "__openclaw": meta})
            seqs.append(row_id)
    messages, clipped = newest_within(messages, params.get("maxBytes"))
    has_more = has_more or clipped
    result.update({"sessionId": session_id, "messages": messages, "hasMore": has_more})
    if clipped:
        result["nextCursor"] = _encode_cursor(seqs[len(seqs) - len(messages)])
    elif has_more and rows:
        result["nextCursor"] = _encode_cursor(rows[0][0])
    for field in ("thinkingLevel", "verboseLevel"):
        if entry.get(field) is not None:
            result[field] = entry[field]
    return result


def newest_within(messages: list[dict[str, Any]], max_bytes: int | None) -> tuple[list[dict[str, Any]], bool]:
    """The newest messages whose JSON fits in ``max_bytes`` (always at least the newest one), and
    whether older ones were left out."""
    if not max_bytes:
        return messages, False
    kept = 0
    used = 0
    for message in reversed(messages):
        size = len(orjson.dumps(message))
        if kept and used + size > max_bytes:
            break
        kept += 1
        used += size
    return messages[len(messages) - kept :], kept < len(messages)


def chat_abort(ctx: RequestContext) -> dict[str, Any]:
    params = ctx.params
    session_key = ctx.gateway.session_key(params["sessionKey"], params.get("agentId"))
    run_ids = ctx.gateway.runs.abort(session_key, params.get("runId"), reason="rpc")
    return {"ok": True, "aborted": bool(run_ids), "runIds": run_ids}


@inlineCallbacks
def chat_inject(ctx: RequestContext) -> Any:
    """Append an assistant note to a transcript without running the model (admin)."""
    params = ctx.params
    gateway = ctx.gateway
    session_key = gateway.session_key(params["sessionKey"], params.get("agentId"))
    now = gateway.now_ms()
    entry = yield gateway.sessions.ensure(session_key, now)
    message: dict[str, Any] = {"role": "assistant", "content": [{"type": "text", "text": params["message"]}], "timestamp": now, "stopReason": "stop"}
    if params.get("label"):
        message["label"] = params["label"]
    line = gateway.runs.transcript_line(message)
    yield gateway.sessions.append(session_key, entry["sessionId"], [line], {"updatedAt": now})
    gateway.sessions_changed(session_key, reason="chat.inject")
    return {"ok": True, "messageId": line["id"]}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("chat.send", chat_send, scope=SESSIONS_WRITE),
        MethodSpec("chat.history", chat_history, scope=SESSIONS_READ),
        MethodSpec("chat.abort", chat_abort, scope=SESSIONS_WRITE),
        MethodSpec("chat.inject", chat_inject, scope=ADMIN, advertised=False),
    ]
