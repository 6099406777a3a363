"""Params of the config.* methods (protocol §9.5)."""
from .common import NON_EMPTY, array, integer, obj, string

RAW = {"type": "string", "minLength": 1}
WRITE_COMMON = {
    "raw": RAW,
    "baseHash": NON_EMPTY,
    "sessionKey": {"type": "string"},
    "note": {"type": "string"},
    "restartDelayMs": integer(0, 3_600_000),
    "deliveryContext": obj(
        {"channel": {"type": "string"}, "to": {"type": "string"}, "accountId": {"type": "string"}, "threadId": {"type": "string"}}
    ),
}

CONFIG_METHOD_PARAMS = {
    "config.get": obj({}),
    "config.schema": obj({}),
    "config.schema.lookup": obj({"path": string(1, 1024, pattern=r"^[A-Za-z0-9_./\[\]\-*\$]+$")}, ("path",)),
    "config.set": obj({"raw": RAW, "baseHash": NON_EMPTY}, ("raw",)),
    "config.patch": obj({**WRITE_COMMON, "replacePaths": array({"type": "string"}, max_items=256)}, ("raw",)),
    "config.apply": obj(WRITE_COMMON, ("raw",)),
}
