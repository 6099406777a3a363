"""Request bodies checked against a JSON Schema, refused in the words the endpoint's users read.

The schema decides what is wrong and where; the sentence comes from the ``x-error`` keyword of
the innermost schema on the way to the problem (``temperature``'s reads "`temperature` must be
between 0 and 2."), so each field keeps the message OpenAI clients already show for it: which
field, and what it must be. A missing required property is worded by that property's own schema.
A problem under no ``x-error`` gets the generic explanation (``at /field: must be …``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from ...protocol.schema.common import ERROR_MESSAGE_KEY, Schema
from ...protocol.validation import SchemaValidator

# A mapping under ``x-error`` words each failing keyword; this key words any other.
ANY_KEYWORD = "*"


def explained(schema: Schema, message: str | Mapping[str, str]) -> Schema:
    """``schema``, with the sentence a value rejected under it is refused with.

    ``{0}``, ``{1}``… in the sentence are the parts of the rejected value's path in the body
    (``messages.{1}.role`` names the message's index). A mapping gives one sentence per JSON
    Schema keyword (``maxItems``…) and :data:`ANY_KEYWORD` for the rest.
    """
    return {**schema, ERROR_MESSAGE_KEY: message}


def nullable(schema: Schema) -> Schema:
    """``schema`` that also accepts ``null``, which OpenAI clients send for an unset option."""
    kind = schema["type"]
    kinds = list(kind) if isinstance(kind, list) else [kind]
    return {**schema, "type": [*kinds, "null"]}


class BodyValidator:
    """One endpoint's request schema, compiled once; :meth:`first_error` is its 400 message."""

    def __init__(self, schema: Schema):
        self._schema = schema
        self._validator = SchemaValidator(schema)
        self._fields = list(schema.get("properties", {}))

    def first_error(self, body: Any) -> str | None:
        """The sentence for the first problem, in the order the schema lists the fields; None if valid."""
        problems = self._validator.problems(body)
        if not problems:
            return None
        problem = min(problems, key=self._field_position)  # the first of equals: schema order
        return self._sentence(problem) or self._validator.errors(body)[0]

    def _field_position(self, problem: jsonschema.ValidationError) -> int:
        path = list(problem.absolute_path)
        field = path[0] if path else _missing_property(problem)
        return self._fields.index(field) if field in self._fields else len(self._fields)

    def _sentence(self, problem: jsonschema.ValidationError) -> str | None:
        path = list(problem.absolute_path)
        text = None
        missing = _missing_property(problem)
        if missing is not None:
            schema = problem.schema if isinstance(problem.schema, Mapping) else {}
            text = schema.get("properties", {}).get(missing, {}).get(ERROR_MESSAGE_KEY)
            path.append(missing)
        if text is None:
            text = self._innermost_text(problem)
        if isinstance(text, Mapping):
            text = text.get(str(problem.validator), text.get(ANY_KEYWORD))
        return None if text is None else str(text).format(*path)

    def _innermost_text(self, problem: jsonschema.ValidationError) -> Any:
        """The ``x-error`` nearest to the failing keyword, on the way down from the root."""
        node: Any = self._schema
        text = node.get(ERROR_MESSAGE_KEY)
        for key in list(problem.absolute_schema_path)[:-1]:
            node = node[key]
            if isinstance(node, dict) and ERROR_MESSAGE_KEY in node:
                text = node[ERROR_MESSAGE_KEY]
        return text


def _missing_property(problem: jsonschema.ValidationError) -> str | None:
    """For a ``required`` problem, the first property the object lacks."""
    if problem.validator != "required" or not isinstance(problem.instance, dict):
        return None
    required = problem.validator_value if isinstance(problem.validator_value, list) else []
    return next((name for name in required if name not in problem.instance), None)
