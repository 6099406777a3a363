"""Compiled validators for frames and params, with ajv-style messages on failure.

fastjsonschema generates straight-line Python for the hot path (every inbound frame); it stops at
the first error, so only when a value is rejected do we re-run it through ``jsonschema`` to list
every problem in the wording the reference clients show (``at /client/id: must be …``).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable, Mapping

import fastjsonschema
import jsonschema

from .errors import invalid_request
from .schema import EVENT_PAYLOADS, METHOD_PARAMS, with_definitions
from .schema.common import ERROR_MESSAGE_KEY

MAX_REPORTED_ERRORS = 8


class SchemaValidator:
    """One schema compiled for speed, explained with jsonschema when it rejects a value."""

    def __init__(self, schema: dict[str, Any]):
        self._schema = with_definitions(schema)
        self._compiled: Callable[[Any], Any] | None = None
        self._explainer: jsonschema.Draft7Validator | None = None
        # Whether ``{}`` passes: most read methods are called with empty params, and the answer
        # for one schema never changes (one bool per validator, so nothing to bound or expire).
        self._empty_valid: bool | None = None

    def _check(self, value: Any) -> Any:
        # Compiled on first use: a gateway has dozens of schemas and most never see a frame.
        if self._compiled is None:
            self._compiled = fastjsonschema.compile(self._schema)
        return self._compiled(value)

    def is_valid(self, value: Any) -> bool:
        if type(value) is dict and not value:
            if self._empty_valid is None:
                self._empty_valid = self._passes({})
            return self._empty_valid
        return self._passes(value)

    def _passes(self, value: Any) -> bool:
        try:
            self._check(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def problems(self, value: Any) -> list[jsonschema.ValidationError]:
        """Every problem with ``value`` as jsonschema reports it (schema order); empty when valid.

        For callers that word their own messages from where each problem is (the HTTP API)."""
        if self.is_valid(value):
            return []
        return self._explain(value)

    def _explain(self, value: Any) -> list[jsonschema.ValidationError]:
        if self._explainer is None:
            self._explainer = jsonschema.Draft7Validator(self._schema)
        return list(self._explainer.iter_errors(value))

    def errors(self, value: Any) -> list[str]:
        """Every problem with ``value`` in the reference's wording; empty when it is valid."""
        if self.is_valid(value):
            return []
        found = sorted(self._explain(value), key=_error_order)
        messages: list[str] = []
        for error in found:
            for message in _describe(error):
                if message not in messages:
                    messages.append(message)
        if not messages:  # the two engines disagree: never report a rejection with no reason
            messages.append("must match the schema")
        return messages[:MAX_REPORTED_ERRORS]

    def error_text(self, value: Any) -> str | None:
        errors = self.errors(value)
        if not errors:
            return None
        return self._schema.get(ERROR_MESSAGE_KEY) or "; ".join(errors)


_PLAIN_REQUEST_KEYS = frozenset({"type", "id", "method", "params"})


def is_plain_request(frame: Any) -> bool:
    """A request frame that RequestFrame certainly accepts, decided without running the schema.

    Only ``type``/``id``/``method``/``params`` with ``type == "req"`` and non-empty string id
    and method: everything else (``traceparent``, wrong types, extra keys) goes to the schema,
    so the answer and the error text for any frame are the schema's.
    """
    if type(frame) is not dict or not _PLAIN_REQUEST_KEYS.issuperset(frame):
        return False
    request_id, method = frame.get("id"), frame.get("method")
    return frame.get("type") == "req" and type(request_id) is str and type(method) is str and bool(request_id) and bool(method)


class ProtocolValidators:
    """Every validator the connection needs, compiled once per gateway."""

    def __init__(self, method_params: dict[str, Any] | None = None):
        self.request_frame = SchemaValidator({"$ref": "#/definitions/RequestFrame"})
        self.connect_params = SchemaValidator({"$ref": "#/definitions/ConnectParams"})
        self.hello_ok = SchemaValidator({"$ref": "#/definitions/HelloOk"})
        self.event_frame = SchemaValidator({"$ref": "#/definitions/EventFrame"})
        self.response_frame = SchemaValidator({"$ref": "#/definitions/ResponseFrame"})
        self._params = {
            name: SchemaValidator(schema)
            for name, schema in (method_params if method_params is not None else METHOD_PARAMS).items()
        }
        self._events = {name: SchemaValidator(schema) for name, schema in EVENT_PAYLOADS.items()}

    def request_frame_ok(self, frame: Any) -> bool:
        """RequestFrame's verdict, with the common shape answered without the schema."""
        return is_plain_request(frame) or self.request_frame.is_valid(frame)

    def has_params_schema(self, method: str) -> bool:
        return method in self._params

    def check_params(self, method: str, params: Any) -> None:
        """Raise ``INVALID_REQUEST invalid <method> params: …`` when params do not fit."""
        validator = self._params.get(method)
        if validator is None:
            return
        text = validator.error_text(params)
        if text is not None:
            raise invalid_request(f"invalid {method} params: {text}")

    def event_payload_errors(self, event: str, payload: Any) -> list[str]:
        validator = self._events.get(event)
        return validator.errors(payload) if validator is not None else []


def _error_order(error: jsonschema.ValidationError) -> tuple[int, int]:
    structural = error.validator in ("additionalProperties", "required")
    return (0 if structural else 1, len(error.absolute_path))


def _pointer(error: jsonschema.ValidationError) -> str:
    return "".join(f"/{part}" for part in error.absolute_path)


def _at(error: jsonschema.ValidationError, message: str, *, root_label: bool = False) -> str:
    pointer = _pointer(error)
    if pointer:
        return f"at {pointer}: {message}"
    return f"at root: {message}" if root_label else message


def _describe(error: jsonschema.ValidationError) -> list[str]:
    keyword = error.validator
    value: Any = error.validator_value  # the keyword's value in the schema: any JSON
    instance = error.instance
    if keyword == "required":
        missing = [name for name in value if isinstance(instance, dict) and name not in instance]
        return [_at(error, f"must have required property '{name}'") for name in missing[:1]]
    if keyword == "additionalProperties" and value is False and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = [name for name in instance if name not in known]
        return [_at(error, f"unexpected property '{name}'", root_label=True) for name in extra]
    if keyword == "type":
        expected = ",".join(value) if isinstance(value, list) else value
        return [_at(error, f"must be {expected}")]
    simple = {
        "enum": "must be equal to one of the allowed values",
        "const": "must be equal to constant",
        "anyOf": "must match a schema in anyOf",
        "oneOf": "must match exactly one schema in oneOf",
    }
    if keyword in simple:
        return [_at(error, simple[keyword])]
    bounded = {
        "minLength": "must NOT have fewer than {} characters",
        "maxLength": "must NOT have more than {} characters",
        "minItems": "must NOT have fewer than {} items",
        "maxItems": "must NOT have more than {} items",
        "minimum": "must be >= {}",
        "maximum": "must be <= {}",
        "exclusiveMinimum": "must be > {}",
        "exclusiveMaximum": "must be < {}",
        "pattern": 'must match pattern "{}"',
        "minProperties": "must NOT have fewer than {} properties",
        "maxProperties": "must NOT have more than {} properties",
    }
    if keyword in bounded:
        return [_at(error, bounded[keyword].format(value))]
    return [_at(error, error.message)]

