"""Start an agent run for an HTTP request, on the same run path WebSocket ``agent`` uses.

The run is owned by the request: when the client disconnects, the run is aborted and the upstream
request closed, because nobody else is waiting for this answer. The disconnect arrives the way
Klein delivers it: Klein cancels the Deferred a route returned when its request's connection is
lost before the response finished, and :func:`abort_on_cancel` makes that cancellation abort the run.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred

from ...agents.runs import STATUS_TIMEOUT, QueueFull, Run
from ...providers.errors import KIND_CONTEXT_LENGTH, KIND_RATE_LIMIT, KIND_TIMEOUT
from .common import HttpError

if TYPE_CHECKING:
    from ...hub import GatewayHub

_T = TypeVar("_T")

EMPTY_ANSWER = "No response from OpenClaw."
# The abort reason a run records when its HTTP client went away.
CLIENT_DISCONNECTED = "client-disconnected"


def start_http_run(
    gateway: GatewayHub,
    *,
    run_id: str,
    agent_id: str,
    session_key: str,
    message: str,
    context: list[dict[str, Any]] | None,
    system_prompt: str | None,
    options: dict[str, Any],
) -> Run:
    owner = f"http:{run_id}"
    run = Run(
        run_id=run_id,
        session_key=session_key,
        agent_id=agent_id,
        message=message,
        accepted_at=gateway.now_ms(),
        kind="http",
        owner=owner,
        timeout_s=float(gateway.catalog.run_timeout_s),
        extra_system_prompt=system_prompt,
        context=context,
        options=options,
    )
    try:
        gateway.runs.submit(run)
    except QueueFull as exc:
        raise HttpError(429, str(exc), "rate_limit_error") from None
    return run


def abort_on_cancel(gateway: GatewayHub, run: Run, outcome: Deferred[_T]) -> Deferred[_T]:
    """``outcome``'s result, in a Deferred whose cancellation stops waiting and aborts ``run``.

    The route returns this Deferred (or one with callbacks added to it), so when Klein cancels
    it for a client that went away, the run stops and with it the upstream request. ``outcome``
    is cancelled first, so that whatever it would still deliver (the ended run, the end of a
    stream) is dropped instead of arriving at an answer that is already settled.
    """
    answer: Deferred[_T] = Deferred(functools.partial(_client_gone, gateway, run, outcome))
    outcome.chainDeferred(answer)
    return answer


def _client_gone(gateway: GatewayHub, run: Run, outcome: Deferred[Any], answer: Deferred[Any]) -> None:
    """The canceller of :func:`abort_on_cancel`'s Deferred (``answer``)."""
    outcome.cancel()
    gateway.runs.abort(run.session_key, run.run_id, reason=CLIENT_DISCONNECTED)


def run_error(run: Run) -> HttpError:
    """An ended run's failure as an OpenAI-style status and type."""
    message = run.error or "internal error"
    if run.error_kind == KIND_RATE_LIMIT:
        return HttpError(429, message, "rate_limit_error")
    if run.error_kind == KIND_CONTEXT_LENGTH:
        return HttpError(400, message, "invalid_request_error")
    if run.status == STATUS_TIMEOUT or run.error_kind == KIND_TIMEOUT:
        return HttpError(504, message, "api_error")
    return HttpError(500, message, "api_error")


def answer_text(run: Run) -> str:
    return run.text or EMPTY_ANSWER


def token_usage(run: Run) -> tuple[int, int, int]:
    """(prompt, completion, total) as OpenAI counts them."""
    usage = run.usage or {}
    prompt = int(usage.get("input", 0))
    completion = int(usage.get("output", 0))
    return prompt, completion, max(prompt + completion, int(usage.get("totalTokens", 0)))
