"""``POST /v1/responses`` (http spec §2): the strict request schema, response objects, SSE events.

``previous_response_id`` continues the session an earlier response ran in, for the same caller
and agent, for 30 minutes (at most 500 remembered responses).
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred

from ...agents.dedupe import IdempotencyCache
from ...agents.runs import STATUS_OK, Run
from ...protocol.schema.common import BOOLEAN, NON_EMPTY, array, enum, obj, string
from ...protocol.validation import SchemaValidator
from .common import IMAGE_ONLY_TEXT, HttpError, write_json
from .runs import abort_on_cancel, answer_text, run_error, start_http_run, token_usage
from .sse import SSEWriter
from .targets import canonical_explicit_key, requested_session_key, resolve_agent, session_key

if TYPE_CHECKING:
    from ...hub import GatewayHub

PREVIOUS_RESPONSE_TTL_S = 30 * 60
PREVIOUS_RESPONSE_MAX = 500
FILE_ONLY_TEXT = "User sent file(s) with no text."

_SOURCE = {"anyOf": [obj({"type": enum("url"), "url": NON_EMPTY}, ("type", "url")), obj(
    {"type": enum("base64"), "media_type": NON_EMPTY, "data": {"type": "string"}, "filename": {"type": "string"}},
    ("type", "media_type", "data"),
)]}
_PART = {
    "anyOf": [
        obj({"type": enum("input_text", "output_text"), "text": {"type": "string"}}, ("type", "text"), closed=False),
        obj({"type": enum("input_image"), "source": _SOURCE}, ("type",), closed=False),
        obj({"type": enum("input_file"), "source": _SOURCE}, ("type",), closed=False),
    ]
}
_ITEM = {
    "anyOf": [
        obj(
            {
                "type": enum("message"),
                "id": {"type": "string"},
                "role": enum("system", "developer", "user", "assistant"),
                "content": {"anyOf": [{"type": "string"}, array(_PART)]},
                "phase": enum("commentary", "final_answer"),
                "status": {"type": "string"},
            },
            ("role", "content"),
        ),
        obj(
            {
                "type": enum("function_call"),
                "id": {"type": "string"},
                "call_id": {"type": "string"},
                "name": NON_EMPTY,
                "arguments": {"type": "string"},
                "status": {"type": "string"},
            },
            ("type", "name", "arguments"),
        ),
        obj({"type": enum("function_call_output"), "call_id": NON_EMPTY, "output": {"type": "string"}}, ("type", "call_id", "output")),
        obj({"type": enum("reasoning")}, ("type",), closed=False),
        obj({"type": enum("item_reference"), "id": NON_EMPTY}, ("type", "id")),
    ]
}
_TOOL = obj(
    {
        "type": enum("function"),
        "name": NON_EMPTY,
        "description": {"type": "string"},
        "parameters": {"type": "object"},
        "strict": BOOLEAN,
    },
    ("type", "name"),
)
REQUEST_SCHEMA = obj(
    {
        "model": string(1),
        "input": {"anyOf": [{"type": "string"}, array(_ITEM)]},
        "instructions": {"type": "string"},
        "tools": array(_TOOL),
        "tool_choice": {
            "anyOf": [
                enum("auto", "none", "required"),
                obj({"type": enum("function"), "name": NON_EMPTY}, ("type", "name")),
                obj({"type": enum("function"), "function": obj({"name": NON_EMPTY}, ("name",))}, ("type", "function")),
            ]
        },
        "text": obj({"format": obj({"type": enum("text")}, ("type",))}),
        "stream": BOOLEAN,
        "max_output_tokens": {"type": "integer", "minimum": 1},
        "max_tool_calls": {"type": "integer", "minimum": 1},
        "user": {"type": "string"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "store": BOOLEAN,
        "previous_response_id": {"type": "string"},
        "reasoning": obj({"effort": enum("low", "medium", "high"), "summary": enum("auto", "concise", "detailed")}),
        "truncation": enum("auto", "disabled"),
    },
    ("model", "input"),
)


@attrs.frozen
class PreviousResponse:
    session_key: str
    auth_subject: str
    agent_id: str
    requested_session_key: str | None


class ResponsesEndpoint:
    """Holds the schema validator and the ``previous_response_id`` map for one gateway."""

    def __init__(self, gateway: GatewayHub):
        self._gateway = gateway
        self._validator = SchemaValidator(REQUEST_SCHEMA)
        self._previous: IdempotencyCache[PreviousResponse] = IdempotencyCache(
            gateway.clock, ttl_s=PREVIOUS_RESPONSE_TTL_S, max_entries=PREVIOUS_RESPONSE_MAX
        )

    def handle(self, request: Any, body: dict[str, Any], auth_subject: str) -> Deferred[bytes] | Deferred[None]:
        """The answer (JSON or an SSE stream); cancelling it aborts the run (``runs.py``)."""
        gateway = self._gateway
        problems = self._validator.errors(body)
        if problems:
            raise HttpError(400, problems[0])
        agent_id = resolve_agent(gateway, request, body["model"])
        explicit = requested_session_key(request)
        key = None
        previous_id = body.get("previous_response_id")
        if previous_id:
            previous = self._previous.get(previous_id)
            if previous is not None and (previous.auth_subject, previous.agent_id, previous.requested_session_key) == (
                auth_subject,
                agent_id,
                explicit,
            ):
                key = previous.session_key
        if key is None:
            key = session_key(agent_id, canonical_explicit_key(gateway, explicit, agent_id), body.get("user"), "openresponses")
        system, active, context = build_prompt(body)
        response_id = f"resp_{uuid.uuid4()}"
        options = {"max_tokens": body.get("max_output_tokens"), "temperature": body.get("temperature"), "top_p": body.get("top_p")}
        run = start_http_run(
            gateway,
            run_id=response_id,
            agent_id=agent_id,
            session_key=key,
            message=active,
            context=context,
            system_prompt=system,
            options={name: value for name, value in options.items() if value is not None},
        )
        remember = PreviousResponse(key, auth_subject, agent_id, explicit)
        run.when_finished().addCallback(self._remember, response_id, remember)
        view = ResponseView(run, body["model"])
        if body.get("stream") is True:
            return abort_on_cancel(gateway, run, _stream(request, run, view))
        return abort_on_cancel(gateway, run, run.when_finished()).addCallback(_respond, request, view)

    def _remember(self, _: Run, response_id: str, previous: PreviousResponse) -> None:
        """Once the run has ended, ``previous_response_id`` may continue its session."""
        self._previous.put(response_id, previous)


def build_prompt(body: dict[str, Any]) -> tuple[str | None, str, list[dict[str, Any]] | None]:
    """(system prompt, the active user turn, the conversation when the input carries one)."""
    instructions = body.get("instructions")
    system: list[str] = [instructions] if instructions else []
    raw = body["input"]
    if isinstance(raw, str):
        if not raw.strip():
            raise HttpError(400, "Missing user message in `input`.")
        return ("\n\n".join(system) or None), raw, None
    conversation: list[dict[str, Any]] = []
    active: str | None = None
    for item in raw:
        kind = item.get("type", "message")
        if kind == "function_call_output":
            active = None  # a tool result after the last user message: no user turn to answer
            continue
        if kind != "message":
            continue
        text, media = _parts_text(item["content"])
        role = item["role"]
        if role in ("system", "developer"):
            if text:
                system.append(text)
            continue
        if role == "user":
            text = text or media
            if text:
                conversation.append({"role": "user", "content": text})
                active = text
        elif text:
            conversation.append({"role": "assistant", "content": text})
    if active is None:
        raise HttpError(400, "Missing user message in `input`.")
    return ("\n\n".join(system) or None), active, (conversation if len(conversation) > 1 else None)


def _parts_text(content: Any) -> tuple[str, str]:
    """(text, placeholder for media-only content)."""
    if isinstance(content, str):
        return content, ""
    texts, placeholder = [], ""
    for part in content:
        if part.get("type") in ("input_text", "output_text"):
            texts.append(part.get("text", ""))
        elif part.get("type") == "input_image":
            placeholder = placeholder or IMAGE_ONLY_TEXT
        elif part.get("type") == "input_file":
            placeholder = placeholder or FILE_ONLY_TEXT
    return "\n".join(text for text in texts if text), placeholder


class ResponseView:
    """The response object for a run, at any point of its life."""

    def __init__(self, run: Run, model: str):
        self.run = run
        self.model = model
        self.message_id = f"msg_{uuid.uuid4()}"

    @property
    def status(self) -> str:
        if not self.run.finished:
            return "in_progress"
        if self.run.status != STATUS_OK:
            return "failed"
        return "incomplete" if self.run.stop_reason == "length" else "completed"

    def usage(self) -> dict[str, Any]:
        prompt, completion, total = token_usage(self.run) if self.run.finished else (0, 0, 0)
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": total,
        }

    def message_item(self, status: str, text: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "message", "id": self.message_id, "role": "assistant"}
        item["content"] = [] if text is None else [{"type": "output_text", "text": text}]
        if text is not None:
            item["phase"] = "final_answer"
        item["status"] = status
        return item

    def body(self) -> dict[str, Any]:
        status = self.status
        body: dict[str, Any] = {
            "id": self.run.run_id,
            "object": "response",
            "created_at": int(self.run.accepted_at / 1000),
            "status": status,
            "model": self.model,
            "output": [],
            "usage": self.usage(),
        }
        if status in ("completed", "incomplete"):
            body["output"] = [self.message_item(status, answer_text(self.run))]
        if status == "incomplete":
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        if status == "failed":
            error = run_error(self.run)
            body["error"] = {"code": error.error_type if error.status != 500 else "server_error", "message": error.message}
        return body


def _respond(_: Run, request: Any, view: ResponseView) -> bytes:
    body = view.body()
    status = run_error(view.run).status if body["status"] == "failed" else 200
    return write_json(request, status, body)


def _stream(request: Any, run: Run, view: ResponseView) -> Deferred[None]:
    """Response events as the model writes; the Deferred fires when the response is finished."""
    writer = SSEWriter(request)
    part = {"item_id": view.message_id, "output_index": 0, "content_index": 0}

    def send(event_type: str, **fields: Any) -> None:
        writer.data({"type": event_type, **fields}, event=event_type)

    def send_delta(delta: str) -> None:
        send("response.output_text.delta", **part, delta=delta)

    def ended(finished: Run) -> None:
        body = view.body()
        if body["status"] == "failed":
            send("response.failed", response=body)
        else:
            text = answer_text(finished)
            if not finished.text:
                send_delta(text)
            send("response.output_text.done", **part, text=text)
            send("response.content_part.done", **part, part={"type": "output_text", "text": text})
            send("response.output_item.done", output_index=0, item=view.message_item(body["status"], text))
            send(f"response.{body['status']}", response=body)
        writer.done()

    writer.start()
    send("response.created", response=view.body())
    send("response.in_progress", response=view.body())
    send("response.output_item.added", output_index=0, item=view.message_item("in_progress"))
    send("response.content_part.added", **part, part={"type": "output_text", "text": ""})
    run.on_text(send_delta)
    run.when_finished().addCallback(ended)
    return writer.finished
