"""Payloads of the events this gateway emits (protocol §6.5)."""
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

EVENT_PAYLOADS = {
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
            "ts": integer(0),
        },
        ("requestId", "deviceId", "decision", "ts"),
    ),
}
