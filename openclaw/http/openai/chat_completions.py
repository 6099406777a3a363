"""``POST /v1/chat/completions`` (http spec §1): validation, prompt, JSON and SSE answers.

The schema is not strict (unknown fields are ignored, as OpenAI SDKs send many), but the fields
that change generation are checked with the reference's messages.
"""
from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from ...agents.runs import STATUS_OK, Run
from .common import IMAGE_ONLY_TEXT, HttpError, write_error, write_json
from .runs import answer_text, run_error, start_http_run, token_usage
from .sse import SSEWriter
from .targets import canonical_explicit_key, requested_session_key, resolve_agent, session_key

if TYPE_CHECKING:
    from ...hub import GatewayHub

MAX_SAFE_INTEGER = 2**53 - 1


def _number_in(body: dict[str, Any], field: str, low: float, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise HttpError(400, f"`{field}` must be between {low:g} and {high:g}.")


def _positive_int(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SAFE_INTEGER:
        raise HttpError(400, f"{field} must be a positive safe integer")
    return value


def validate(body: dict[str, Any]) -> dict[str, Any]:
    """Check generation fields; returns the sampling options to pass upstream."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise HttpError(400, "messages: expected an array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise HttpError(400, f"messages.{index}.role: required")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise HttpError(400, "stream: expected a boolean")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise HttpError(400, "stream_options: expected an object")
    completion_tokens = _positive_int(body, "max_completion_tokens")
    max_tokens = _positive_int(body, "max_tokens")
    _number_in(body, "temperature", 0, 2)
    _number_in(body, "top_p", 0, 1)
    _number_in(body, "frequency_penalty", -2, 2)
    _number_in(body, "presence_penalty", -2, 2)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise HttpError(400, "`seed` must be an integer.")
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, list):
            if len(stop) > 4:
                raise HttpError(400, "Invalid stop: stop supports at most 4 sequences")
            if not all(isinstance(entry, str) and entry for entry in stop):
                raise HttpError(400, "Invalid stop: stop entries must be non-empty strings")
        elif not isinstance(stop, str):
            raise HttpError(400, "Invalid stop: expected a string or an array of strings")
    _validate_tools(body)
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object", "json_schema"):
            raise HttpError(400, "Invalid response_format: type must be text, json_object or json_schema")
    options: dict[str, Any] = {
        "max_tokens": completion_tokens or max_tokens,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "frequency_penalty": body.get("frequency_penalty"),
        "presence_penalty": body.get("presence_penalty"),
        "seed": seed,
        "stop": stop,
    }
    return {name: value for name, value in options.items() if value is not None}


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise HttpError(400, "Invalid tools/tool_choice: tools must be an array")
        for tool in tools:
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                raise HttpError(400, "Invalid tools/tool_choice: every tool must be a function tool")
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise HttpError(400, "Invalid tools/tool_choice: function.name is required")
            names.add(function["name"])
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none", "required"):
        return
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or name not in names:
        raise HttpError(400, "Invalid tools/tool_choice: tool_choice must be auto, none, required or a declared function")


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


def handle(gateway: GatewayHub, request: Any, body: dict[str, Any]) -> Any:
    options = validate(body)
    model = body.get("model", "openclaw")
    agent_id = resolve_agent(gateway, request, model)
    explicit = requested_session_key(request)
    key = session_key(agent_id, canonical_explicit_key(gateway, explicit, agent_id), body.get("user"), "openai")
    system, active, context = build_prompt(body["messages"])
    run_id = f"chatcmpl_{uuid.uuid4()}"
    run = start_http_run(
        gateway,
        request,
        run_id=run_id,
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
        return _stream(gateway, request, run, echo, include_usage)
    return run.when_finished().addCallback(_respond, request, echo)


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


def _stream(gateway: GatewayHub, request: Any, run: Run, model: str, include_usage: bool) -> Deferred:
    created = int(run.accepted_at / 1000) or int(time.time())
    writer = SSEWriter(request, on_overflow=lambda: gateway.runs.connection_lost(run.owner or ""))

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": run.run_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}

    writer.start()
    writer.data(chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]))
    run.on_text(lambda delta: writer.data(chunk([{"index": 0, "delta": {"content": delta}, "finish_reason": None}])))

    def ended(finished: Run) -> None:
        if finished.status != STATUS_OK:
            error = run_error(finished)
            writer.data({"error": {"message": error.message, "type": error.error_type}})
        else:
            if not finished.text:
                writer.data(chunk([{"index": 0, "delta": {"content": answer_text(finished)}, "finish_reason": None}]))
            reason = "length" if finished.stop_reason == "length" else "stop"
            writer.data(chunk([{"index": 0, "delta": {}, "finish_reason": reason}]))
            if include_usage:
                prompt, completion, total = token_usage(finished)
                writer.data(chunk([], usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}))
        writer.done()

    run.when_finished().addCallback(ended)
    return writer.finished
