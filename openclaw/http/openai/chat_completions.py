"""``POST /v1/chat/completions`` (http spec §1): the request schema, prompt, JSON and SSE answers.

The schema is not strict (unknown fields are ignored, as OpenAI SDKs send many), but the fields
that change generation are checked, each refused with the reference's message for it.
"""
from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from ...agents.runs import STATUS_OK, Run
from ...protocol.schema.common import BOOLEAN, NON_EMPTY, Schema, array, enum, integer, obj, string
from .common import IMAGE_ONLY_TEXT, HttpError, write_error, write_json
from .runs import abort_on_cancel, answer_text, run_error, start_http_run, token_usage
from .sse import SSEWriter
from .targets import canonical_explicit_key, requested_session_key, resolve_agent, session_key
from .validation import ANY_KEYWORD, BodyValidator, explained, nullable

if TYPE_CHECKING:
    from ...hub import GatewayHub

MAX_SAFE_INTEGER = 2**53 - 1
ROLE_REQUIRED = "messages.{1}.role: required"
EVERY_TOOL_A_FUNCTION = "Invalid tools/tool_choice: every tool must be a function tool"
BAD_TOOL_CHOICE = "Invalid tools/tool_choice: tool_choice must be auto, none, required or a declared function"


def _in_range(field: str, low: int, high: int) -> Schema:
    return explained(nullable({"type": "number", "minimum": low, "maximum": high}), f"`{field}` must be between {low:g} and {high:g}.")


def _token_limit(field: str) -> Schema:
    return explained(nullable(integer(1, MAX_SAFE_INTEGER)), f"{field} must be a positive safe integer")


_MESSAGE = explained(obj({"role": explained(string(), ROLE_REQUIRED)}, ("role",), closed=False), ROLE_REQUIRED)
_FUNCTION = explained(
    obj({"name": explained(NON_EMPTY, "Invalid tools/tool_choice: function.name is required")}, ("name",), closed=False),
    EVERY_TOOL_A_FUNCTION,
)
_TOOL = explained(obj({"type": enum("function"), "function": _FUNCTION}, ("type", "function"), closed=False), EVERY_TOOL_A_FUNCTION)
_NAMED_FUNCTION = obj({"type": enum("function"), "function": obj({"name": string()}, ("name",), closed=False)}, ("type", "function"), closed=False)
_STOP = explained(
    nullable({"type": ["string", "array"], "maxItems": 4, "items": explained(NON_EMPTY, "Invalid stop: stop entries must be non-empty strings")}),
    {"maxItems": "Invalid stop: stop supports at most 4 sequences", ANY_KEYWORD: "Invalid stop: expected a string or an array of strings"},
)
# Not strict: unknown fields are ignored, as OpenAI SDKs send many. The fields are listed in the
# order they are checked: the first one that is wrong is the one the error names. ``model`` and
# ``user`` are checked where they are resolved (targets.py), with messages of their own.
REQUEST_SCHEMA = obj(
    {
        "messages": explained(array(_MESSAGE), "messages: expected an array"),
        "stream": explained(nullable(BOOLEAN), "stream: expected a boolean"),
        "stream_options": explained(nullable({"type": "object"}), "stream_options: expected an object"),
        "max_completion_tokens": _token_limit("max_completion_tokens"),
        "max_tokens": _token_limit("max_tokens"),
        "temperature": _in_range("temperature", 0, 2),
        "top_p": _in_range("top_p", 0, 1),
        "frequency_penalty": _in_range("frequency_penalty", -2, 2),
        "presence_penalty": _in_range("presence_penalty", -2, 2),
        "seed": explained(nullable(integer()), "`seed` must be an integer."),
        "stop": _STOP,
        "tools": explained(nullable(array(_TOOL)), "Invalid tools/tool_choice: tools must be an array"),
        "tool_choice": explained({"anyOf": [{"type": "null"}, enum("auto", "none", "required"), _NAMED_FUNCTION]}, BAD_TOOL_CHOICE),
        "response_format": explained(
            nullable(obj({"type": enum("text", "json_object", "json_schema")}, ("type",), closed=False)),
            "Invalid response_format: type must be text, json_object or json_schema",
        ),
    },
    ("messages",),
    closed=False,
)
def validate(validator: BodyValidator, body: dict[str, Any]) -> dict[str, Any]:
    """Check the body against the schema; returns the sampling options to pass upstream."""
    problem = validator.first_error(body)
    if problem is not None:
        raise HttpError(400, problem)
    _check_tool_choice(body)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    seed = body.get("seed")
    options: dict[str, Any] = {
        "max_tokens": None if limit is None else int(limit),  # JSON's 10.0 is the integer 10
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "frequency_penalty": body.get("frequency_penalty"),
        "presence_penalty": body.get("presence_penalty"),
        "seed": None if seed is None else int(seed),
        "stop": body.get("stop"),
    }
    return {name: value for name, value in options.items() if value is not None}


def _check_tool_choice(body: dict[str, Any]) -> None:
    """A named ``tool_choice`` must name a declared tool (which a schema cannot say)."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    declared = {tool["function"]["name"] for tool in body.get("tools") or ()}
    if choice["function"]["name"] not in declared:
        raise HttpError(400, BAD_TOOL_CHOICE)


def content_text(content: Any) -> tuple[str, bool]:
    """Text of a message's content (string or parts), and whether it carried images."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        return "", False
    texts, images = [], False
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            images = True
    return "\n".join(texts), images


def build_prompt(messages: list[dict[str, Any]]) -> tuple[str | None, str, list[dict[str, Any]] | None]:
    """(system prompt, the active user turn, the conversation when the client sent one).

    A request carrying earlier turns is its own context (OpenAI clients resend the history);
    one carrying only the new message leaves the context to the session's transcript.
    """
    system: list[str] = []
    conversation: list[dict[str, Any]] = []
    active: str | None = None
    for message in messages:
        role = message["role"]
        text, images = content_text(message.get("content"))
        if role in ("system", "developer"):
            if text:
                system.append(text)
        elif role == "user":
            if not text and images:
                text = IMAGE_ONLY_TEXT
            if text:
                conversation.append({"role": "user", "content": text})
                active = text
        elif role == "assistant" and text:
            conversation.append({"role": "assistant", "content": text})
    if active is None:
        raise HttpError(400, "Missing user message in `messages`.")
    earlier_turns = len(conversation) > 1
    return ("\n\n".join(system) or None), active, (conversation if earlier_turns else None)


class ChatCompletionsEndpoint:
    """Holds the compiled request schema for one gateway."""

    def __init__(self, gateway: GatewayHub):
        self._gateway = gateway
        self._validator = BodyValidator(REQUEST_SCHEMA)

    def handle(self, request: Any, body: dict[str, Any]) -> Deferred[bytes] | Deferred[None]:
        """The answer (JSON or an SSE stream); cancelling it aborts the run (``runs.py``)."""
        gateway = self._gateway
        options = validate(self._validator, body)
        model = body.get("model", "openclaw")
        agent_id = resolve_agent(gateway, request, model)
        explicit = requested_session_key(request)
        key = session_key(agent_id, canonical_explicit_key(gateway, explicit, agent_id), body.get("user"), "openai")
        system, active, context = build_prompt(body["messages"])
        run = start_http_run(
            gateway,
            run_id=f"chatcmpl_{uuid.uuid4()}",
            agent_id=agent_id,
            session_key=key,
            message=active,
            context=context,
            system_prompt=system,
            options=options,
        )
        echo = model if isinstance(model, str) else "openclaw"
        if body.get("stream") is True:
            stream_options = body.get("stream_options")
            include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
            return abort_on_cancel(gateway, run, _stream(request, run, echo, include_usage))
        return abort_on_cancel(gateway, run, run.when_finished()).addCallback(_respond, request, echo)


def _respond(run: Run, request: Any, model: str) -> bytes:
    if run.status != STATUS_OK:
        return write_error(request, run_error(run))
    prompt, completion, total = token_usage(run)
    return write_json(
        request,
        200,
        {
            "id": run.run_id,
            "object": "chat.completion",
            "created": int(run.accepted_at / 1000),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer_text(run)},
                    "finish_reason": "length" if run.stop_reason == "length" else "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total},
        },
    )


def _stream(request: Any, run: Run, model: str, include_usage: bool) -> Deferred[None]:
    """Chunks as the model writes; the Deferred fires when the response is finished."""
    created = int(run.accepted_at / 1000) or int(time.time())
    writer = SSEWriter(request)

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": run.run_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}

    def send_delta(delta: str) -> None:
        writer.data(chunk([{"index": 0, "delta": {"content": delta}, "finish_reason": None}]))

    def ended(finished: Run) -> None:
        if finished.status != STATUS_OK:
            error = run_error(finished)
            writer.data({"error": {"message": error.message, "type": error.error_type}})
        else:
            if not finished.text:
                send_delta(answer_text(finished))
            reason = "length" if finished.stop_reason == "length" else "stop"
            writer.data(chunk([{"index": 0, "delta": {}, "finish_reason": reason}]))
            if include_usage:
                prompt, completion, total = token_usage(finished)
                writer.data(chunk([], usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}))
        writer.done()

    writer.start()
    writer.data(chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]))
    run.on_text(send_delta)
    run.when_finished().addCallback(ended)
    return writer.finished
