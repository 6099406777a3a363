"""The single JSON Schema document for the protocol: frames, handshake, methods and events.

Validators (``openclaw.protocol.validation``) compile from these definitions and the exporter
(``python -m openclaw.protocol.schema``) prints them, so the two can never disagree.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from ..constants import MIN_CLIENT_PROTOCOL_VERSION, MIN_NODE_PROTOCOL_VERSION, PROTOCOL_VERSION
from . import connect, events, frames, methods

DEFINITIONS: dict[str, Any] = {**frames.DEFINITIONS, **connect.DEFINITIONS}
METHOD_PARAMS: dict[str, Any] = methods.METHOD_PARAMS
EVENT_PAYLOADS: dict[str, Any] = events.EVENT_PAYLOADS

SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def with_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """Make ``schema`` self-contained so ``#/definitions/…`` refs resolve when compiled alone."""
    return {"$schema": SCHEMA_DIALECT, **schema, "definitions": DEFINITIONS}


def document() -> dict[str, Any]:
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "https://openclaw.ai/schemas/gateway-protocol.json",
        "title": "OpenClaw gateway protocol",
        "protocolVersion": PROTOCOL_VERSION,
        "minClientProtocolVersion": MIN_CLIENT_PROTOCOL_VERSION,
        "minNodeProtocolVersion": MIN_NODE_PROTOCOL_VERSION,
        "definitions": DEFINITIONS,
        "methods": {name: {"params": schema} for name, schema in sorted(METHOD_PARAMS.items())},
        "events": {name: {"payload": schema} for name, schema in sorted(EVENT_PAYLOADS.items())},
    }


def main() -> None:
    json.dump(document(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
