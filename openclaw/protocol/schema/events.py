"""Payloads of the events this gateway emits (protocol §6.5)."""
from .approvals import APPROVAL_EVENT_PAYLOADS
from .nodes import NODE_EVENT_PAYLOADS
from .operations import OPERATION_EVENT_PAYLOADS
from .common import NON_EMPTY, array, enum, integer, obj, ref

PENDING_DEVICE = obj(
    {
        "requestId": NON_EMPTY,
        "deviceId": NON_EMPTY,
        "publicKey": NON_EMPTY,
        "displayName": {"type": "string"},
        "platform": {"type": "string"},
        "deviceFamily": {"type": "string"},
        "clientId": {"type": "string"},
        "clientMode": {"type": "string"},
        "role": {"type": "string"},
        "roles": array({"type": "string"}),
        "scopes": array({"type": "string"}),
        "remoteIp": {"type": "string"},
        "silent": {"type": "boolean"},
        "isRepair": {"type": "boolean"},
        "reason": {"type": "string"},
        "ts": integer(0),
        "refreshedAtMs": integer(0),
    },
    ("requestId", "deviceId", "publicKey", "ts"),
)

RUN_EVENT = obj(
    {"runId": NON_EMPTY, "sessionKey": {"type": "string"}, "agentId": {"type": "string"}, "seq": integer(0)},
    ("runId", "seq"),
    closed=False,
)

EVENT_PAYLOADS = {
    "agent": obj(
        {**RUN_EVENT["properties"], "stream": NON_EMPTY, "data": {"type": "object"}, "ts": integer(0), "isHeartbeat": {"type": "boolean"}},
        ("runId", "seq", "stream", "data", "ts"),
        closed=False,
    ),
    "chat": obj(
        {**RUN_EVENT["properties"], "state": enum("status", "delta", "final", "aborted", "error")},
        ("runId", "sessionKey", "seq", "state"),
        closed=False,
    ),
    "config.changed": obj(
        {"hash": NON_EMPTY, "changedPaths": array({"type": "string"}), "restart": {"type": "boolean"}, "ts": integer(0)},
        ("hash", "changedPaths", "restart", "ts"),
    ),
    "sessions.changed": obj(
        {"sessionKey": NON_EMPTY, "agentId": {"type": ["string", "null"]}, "reason": {"type": "string"}, "ts": integer(0)},
        ("sessionKey", "ts"),
        closed=False,
    ),
    "session.message": obj(
        {"sessionKey": NON_EMPTY, "agentId": {"type": ["string", "null"]}, "message": {"type": "object"}},
        ("sessionKey", "message"),
        closed=False,
    ),
    "connect.challenge": obj(
        {"nonce": NON_EMPTY, "ts": integer(0), "capabilities": array({"type": "string"})},
        ("nonce", "ts"),
    ),
    "tick": obj({"ts": integer(0)}, ("ts",)),
    "shutdown": obj({"reason": {"type": "string"}, "restartExpectedMs": integer(0)}, ("reason",)),
    "presence": obj({"presence": array(ref("PresenceEntry"))}, ("presence",)),
    "health": ref("HealthSnapshot"),
    "device.pair.requested": PENDING_DEVICE,
    "device.pair.resolved": obj(
        {
            "requestId": {"type": "string"},
            "deviceId": NON_EMPTY,
            "decision": enum("approved", "rejected", "removed"),
            "reason": {"type": "string"},
            "ts": integer(0),
        },
        ("requestId", "deviceId", "decision", "ts"),
    ),
    **OPERATION_EVENT_PAYLOADS,
    **NODE_EVENT_PAYLOADS,
    **APPROVAL_EVENT_PAYLOADS,
}
