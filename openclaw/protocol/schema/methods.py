"""Params of every implemented method (protocol §9). All objects are closed.

Later method families add their params here, next to the ones they extend, so that the
exported schema document stays complete.
"""
from .absent import ABSENT_METHOD_PARAMS
from .approvals import APPROVAL_METHOD_PARAMS
from .common import BOOLEAN, EMPTY_PARAMS, NON_EMPTY, array, integer, obj, string
from .config import CONFIG_METHOD_PARAMS
from .diagnostics import DIAGNOSTIC_METHOD_PARAMS
from .nodes import NODE_METHOD_PARAMS
from .operations import OPERATION_METHOD_PARAMS
from .sessions import SESSION_METHOD_PARAMS

SYSTEM_EVENT = obj(
    {
        "text": NON_EMPTY,
        "deviceId": {"type": "string"},
        "instanceId": {"type": "string"},
        "host": {"type": "string"},
        "ip": {"type": "string"},
        "mode": {"type": "string"},
        "version": {"type": "string"},
        "platform": {"type": "string"},
        "deviceFamily": {"type": "string"},
        "modelIdentifier": {"type": "string"},
        "lastInputSeconds": integer(0),
        "reason": {"type": "string"},
        "roles": array({"type": "string"}),
        "scopes": array({"type": "string"}),
        "tags": array({"type": "string"}),
    },
    ("text",),
)

REQUEST_ID = obj({"requestId": NON_EMPTY}, ("requestId",))
DEVICE_ID = obj({"deviceId": NON_EMPTY}, ("deviceId",))

METHOD_PARAMS = {
    "health": obj({"probe": BOOLEAN}),
    "status": obj({"includeChannelSummary": BOOLEAN, "includeCliProjection": BOOLEAN}),
    "system-presence": EMPTY_PARAMS,
    "system-event": SYSTEM_EVENT,
    "device.pair.list": EMPTY_PARAMS,
    "device.pair.approve": REQUEST_ID,
    "device.pair.reject": REQUEST_ID,
    "device.pair.remove": DEVICE_ID,
    "device.pair.rename": obj({"deviceId": NON_EMPTY, "label": string(1, 64)}, ("deviceId", "label")),
    "device.token.rotate": obj(
        {"deviceId": NON_EMPTY, "role": NON_EMPTY, "scopes": array({"type": "string"})},
        ("deviceId", "role"),
    ),
    "device.token.revoke": obj({"deviceId": NON_EMPTY, "role": NON_EMPTY}, ("deviceId", "role")),
    **SESSION_METHOD_PARAMS,
    **CONFIG_METHOD_PARAMS,
    **OPERATION_METHOD_PARAMS,
    **NODE_METHOD_PARAMS,
    **DIAGNOSTIC_METHOD_PARAMS,
    **APPROVAL_METHOD_PARAMS,
    **ABSENT_METHOD_PARAMS,
}
