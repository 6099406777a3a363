"""Params of the node.* methods (protocol §9.4)."""
from .common import BOOLEAN, NON_EMPTY, array, integer, obj, string

STRINGS = array({"type": "string"})
NODE_ID = obj({"nodeId": NON_EMPTY}, ("nodeId",))
REQUEST_ID = obj({"requestId": NON_EMPTY}, ("requestId",))

NODE_METHOD_PARAMS = {
    "node.list": obj({}),
    "node.describe": NODE_ID,
    "node.rename": obj({"nodeId": NON_EMPTY, "displayName": string(1, 128)}, ("nodeId", "displayName")),
    "node.invoke": obj(
        {
            "nodeId": NON_EMPTY,
            "command": NON_EMPTY,
            "params": {},
            "timeoutMs": integer(0, 3_600_000),
            "idempotencyKey": string(1, 256),
            "sessionKey": {"type": "string"},
            "turnSourceChannel": {"type": "string"},
            "turnSourceTo": {"type": "string"},
            "turnSourceAccountId": {"type": "string"},
            "turnSourceThreadId": {"type": "string"},
        },
        ("nodeId", "command", "idempotencyKey"),
    ),
    "node.invoke.result": obj(
        {
            "id": NON_EMPTY,
            "nodeId": NON_EMPTY,
            "ok": BOOLEAN,
            "payload": {},
            "payloadJSON": {"type": ["string", "null"]},
            "error": obj({"code": {"type": "string"}, "message": {"type": "string"}}, closed=False),
        },
        ("id", "nodeId", "ok"),
    ),
    "node.event": obj({"event": NON_EMPTY, "payload": {}, "payloadJSON": {"type": ["string", "null"]}}, ("event",)),
    "node.skills.update": obj({"skills": array({"type": "object"})}, ("skills",)),
    "node.pluginTools.update": obj({"tools": array({"type": "object"})}, ("tools",)),
    # A closed format checked by openclaw.nodes.runner_inventory, which words the refusal as the
    # reference does ("invalid node runner inventory").
    "node.runnerInventory.update": {"type": "object"},
    "node.pair.list": obj({}),
    "node.pair.approve": REQUEST_ID,
    "node.pair.reject": REQUEST_ID,
    "node.pair.remove": NODE_ID,
    "node.pair.request": obj(
        {
            "nodeId": NON_EMPTY,
            "displayName": {"type": "string"},
            "platform": {"type": "string"},
            "version": {"type": "string"},
            "coreVersion": {"type": "string"},
            "uiVersion": {"type": "string"},
            "deviceFamily": {"type": "string"},
            "modelIdentifier": {"type": "string"},
            "caps": STRINGS,
            "commands": STRINGS,
            "permissions": {"type": "object"},
            "remoteIp": {"type": "string"},
            "silent": BOOLEAN,
        },
        ("nodeId",),
    ),
    "node.pair.verify": obj({"nodeId": NON_EMPTY, "token": {"type": "string"}}, ("nodeId", "token")),
}

NODE_EVENT_PAYLOADS = {
    "node.hostStats": obj({"nodeId": NON_EMPTY, "hostStats": {"type": "object"}}, ("nodeId", "hostStats")),
    "node.pair.requested": obj({"requestId": NON_EMPTY, "nodeId": NON_EMPTY, "ts": integer(0)}, ("requestId", "nodeId", "ts"), closed=False),
    "node.pair.resolved": obj(
        {"requestId": {"type": "string"}, "nodeId": NON_EMPTY, "decision": {"enum": ["approved", "rejected", "removed"]}, "ts": integer(0)},
        ("requestId", "nodeId", "decision", "ts"),
        closed=False,
    ),
}
