"""The three frame envelopes and the error shape (protocol §1.1, §7)."""
from .common import ANY, BOOLEAN, NON_EMPTY, integer, obj, ref, string

ERROR_SHAPE = obj(
    {
        "code": NON_EMPTY,
        "message": NON_EMPTY,
        "details": ANY,
        "retryable": BOOLEAN,
        "retryAfterMs": integer(0),
    },
    ("code", "message"),
)

STATE_VERSION = obj({"presence": integer(0), "health": integer(0)}, ("presence", "health"))

REQUEST_FRAME = obj(
    {
        "type": {"const": "req"},
        "id": NON_EMPTY,
        "method": NON_EMPTY,
        "params": ANY,
        "traceparent": string(max_length=128),
        "expectedProfileId": string(1, 128),
    },
    ("type", "id", "method"),
)

RESPONSE_FRAME = obj(
    {
        "type": {"const": "res"},
        "id": NON_EMPTY,
        "ok": BOOLEAN,
        "payload": ANY,
        "error": ref("ErrorShape"),
    },
    ("type", "id", "ok"),
)

EVENT_FRAME = obj(
    {
        "type": {"const": "event"},
        "event": NON_EMPTY,
        "payload": ANY,
        "seq": integer(0),
        "stateVersion": ref("StateVersion"),
        "recipientProfileId": string(1, 128),
    },
    ("type", "event"),
)

DEFINITIONS = {
    "ErrorShape": ERROR_SHAPE,
    "StateVersion": STATE_VERSION,
    "RequestFrame": REQUEST_FRAME,
    "ResponseFrame": RESPONSE_FRAME,
    "EventFrame": EVENT_FRAME,
}
