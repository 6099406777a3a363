"""Params of the operations methods (``logs.tail``, ``last-heartbeat``, ``set-heartbeats``) and the
``heartbeat`` event payload (protocol §9.7, spec §7).

``set-heartbeats`` is the one open object: the reference checks only ``enabled`` by hand and
ignores other keys, and it answers every rejection with one fixed sentence, which ``x-error``
makes the validator use instead of the generated explanation.
"""
from .common import BOOLEAN, EMPTY_PARAMS, ERROR_MESSAGE_KEY, enum, integer, obj

LOGS_TAIL_MAX_LIMIT = 5000
LOGS_TAIL_MAX_BYTES = 1_000_000

LOGS_TAIL = obj(
    {
        "cursor": integer(0),
        "limit": integer(1, LOGS_TAIL_MAX_LIMIT),
        "maxBytes": integer(1, LOGS_TAIL_MAX_BYTES),
    }
)

SET_HEARTBEATS = obj(
    {"enabled": BOOLEAN},
    ("enabled",),
    closed=False,
    **{ERROR_MESSAGE_KEY: "enabled (boolean) required"},
)

OPERATION_METHOD_PARAMS = {
    "logs.tail": LOGS_TAIL,
    "last-heartbeat": EMPTY_PARAMS,
    "set-heartbeats": SET_HEARTBEATS,
}

STRING = {"type": "string"}

HEARTBEAT_EVENT = obj(
    {
        "ts": integer(0),
        "status": enum("sent", "ok-empty", "ok-token", "skipped", "failed"),
        "to": STRING,
        "preview": STRING,
        "durationMs": integer(0),
        "hasMedia": BOOLEAN,
        "reason": STRING,
        "message": STRING,
        "channel": STRING,
        "accountId": STRING,
        "indicatorType": enum("ok", "alert", "error"),
    },
    ("ts", "status"),
    closed=False,
)

OPERATION_EVENT_PAYLOADS = {"heartbeat": HEARTBEAT_EVENT}
