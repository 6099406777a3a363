"""``GET /v1/models`` and ``GET /v1/models/{id}``: the agents, named the way ``model`` selects them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
import re
from urllib.parse import unquote_to_bytes

from .common import HttpError
from .targets import agent_from_model

if TYPE_CHECKING:
    from ...hub import GatewayHub


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "openclaw", "permission": []}


def list_models(gateway: GatewayHub) -> dict[str, Any]:
    ids = ["openclaw", "openclaw/default"] + [f"openclaw/{agent.id}" for agent in gateway.catalog.agents]
    return {"object": "list", "data": [_model(model_id) for model_id in ids]}


def get_model(gateway: GatewayHub, raw_id: bytes) -> dict[str, Any]:
    """``raw_id`` is the still percent-encoded path segment."""
    if not raw_id:
        raise HttpError(400, "Missing model id.")
    if _BAD_ESCAPE.search(raw_id):
        raise HttpError(400, "Invalid model id encoding.")
    try:
        model_id = unquote_to_bytes(raw_id).decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "Invalid model id encoding.") from None
    if not model_id:
        raise HttpError(400, "Missing model id.")
    try:
        agent_id = agent_from_model(model_id)
    except HttpError:
        raise HttpError(400, "Invalid model id.") from None
    if agent_id is not None and gateway.catalog.agent(agent_id) is None:
        raise HttpError(404, f"Model '{model_id}' not found.")
    return _model(model_id)
