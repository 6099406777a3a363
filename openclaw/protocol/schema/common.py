"""Small builders that keep the schema modules short and uniformly closed.

Objects are closed (``additionalProperties: false``) unless a caller opts out, because the
reference rejects unknown keys in every params object and envelope.
"""
from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# A schema may carry this (vendor) keyword: when the value is rejected, the message is this text
# instead of the generated explanation, for methods whose reference answers with a fixed sentence.
ERROR_MESSAGE_KEY = "x-error"


def obj(properties: dict[str, Schema], required: tuple[str, ...] | list[str] = (), *, closed: bool = True, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def string(min_length: int | None = None, max_length: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string"}
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    schema.update(extra)
    return schema


NON_EMPTY = string(1)


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


BOOLEAN: Schema = {"type": "boolean"}
ANY: Schema = {}
EMPTY_PARAMS = obj({})


def array(items: Schema, min_items: int | None = None, max_items: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return schema


def enum(*values: Any) -> Schema:
    return {"enum": list(values)}


def ref(name: str) -> Schema:
    return {"$ref": f"#/definitions/{name}"}
