"""``connect`` params and the ``hello-ok`` payload (protocol §2)."""
from ..constants import CLIENT_IDS, CLIENT_MODES
from .common import ANY, BOOLEAN, NON_EMPTY, array, enum, integer, obj, ref, string

CLIENT_INFO = obj(
    {
        "id": enum(*CLIENT_IDS),
        "displayName": {"type": "string"},
        "version": NON_EMPTY,
        "buildId": string(1, 96),
        "platform": NON_EMPTY,
        "deviceFamily": {"type": "string"},
        "modelIdentifier": {"type": "string"},
        "timeZone": string(1, 64),
        "mode": enum(*CLIENT_MODES),
        "instanceId": {"type": "string"},
    },
    ("id", "version", "platform", "mode"),
)

DEVICE_PROOF = obj(
    {
        "id": NON_EMPTY,
        "publicKey": string(1, 4096),
        "signature": NON_EMPTY,
        "signedAt": integer(0),
        "nonce": {"type": "string"},
    },
    ("id", "publicKey", "signature", "signedAt", "nonce"),
)

CONNECT_AUTH = obj(
    {
        "token": {"type": "string"},
        "password": {"type": "string"},
        "deviceToken": {"type": "string"},
        "bootstrapToken": {"type": "string"},
        "approvalRuntimeToken": {"type": "string"},
        "agentRuntimeIdentityToken": {"type": "string"},
    }
)

CONNECT_PARAMS = obj(
    {
        "minProtocol": integer(1),
        "maxProtocol": integer(1),
        "client": ref("ClientInfo"),
        "caps": array({"type": "string"}),
        "commands": array({"type": "string"}),
        "permissions": {"type": "object", "additionalProperties": BOOLEAN},
        "pathEnv": {"type": "string"},
        "role": {"type": "string"},
        "scopes": array({"type": "string"}),
        "device": ref("DeviceProof"),
        "auth": ref("ConnectAuth"),
        "locale": {"type": "string"},
        "userAgent": {"type": "string"},
        # 2026.x additions the reference accepts and this gateway ignores.
        "computerUse": ANY,
        "workerRuns": ANY,
        "modelCatalog": ANY,
        # v3-era clients may still announce their transports.
        "transports": array(enum("json-ws", "protobuf-ws")),
    },
    ("minProtocol", "maxProtocol", "client"),
)

PRESENCE_ENTRY = obj(
    {
        "host": {"type": "string"},
        "clientId": {"type": "string"},
        "ip": {"type": "string"},
        "version": {"type": "string"},
        "platform": {"type": "string"},
        "deviceFamily": {"type": "string"},
        "modelIdentifier": {"type": "string"},
        "timeZone": {"type": "string"},
        "mode": {"type": "string"},
        "lastInputSeconds": integer(0),
        "reason": {"type": "string"},
        "tags": array({"type": "string"}),
        "text": {"type": "string"},
        "ts": integer(0),
        "onlineSince": integer(0),
        "lastActivityAt": integer(0),
        "deviceId": {"type": "string"},
        "roles": array({"type": "string"}),
        "scopes": array({"type": "string"}),
        "instanceId": {"type": "string"},
        "connId": {"type": "string"},
    },
    ("ts",),
)

HEALTH_SNAPSHOT = {"type": "object"}

SESSION_DEFAULTS = obj(
    {
        "defaultAgentId": NON_EMPTY,
        "mainKey": NON_EMPTY,
        "mainSessionKey": NON_EMPTY,
        "scope": {"type": "string"},
        "modelConfigured": BOOLEAN,
        "selectionRequired": BOOLEAN,
        "ownership": {"type": "string"},
    },
    ("defaultAgentId", "mainKey", "mainSessionKey"),
)

SNAPSHOT = obj(
    {
        "presence": array(ref("PresenceEntry")),
        "health": ref("HealthSnapshot"),
        "stateVersion": ref("StateVersion"),
        "uptimeMs": integer(0),
        "appliedConfigHash": {"type": ["string", "null"]},
        "configPath": {"type": "string"},
        "stateDir": {"type": "string"},
        "sessionDefaults": ref("SessionDefaults"),
        "authMode": enum("none", "token", "password", "trusted-proxy"),
        "suspension": obj({"phase": {"type": "string"}}, ("phase",)),
    },
    ("presence", "health", "stateVersion", "uptimeMs"),
)

HELLO_OK = obj(
    {
        "type": {"const": "hello-ok"},
        "protocol": integer(1),
        "server": obj(
            {
                "version": NON_EMPTY,
                "buildId": {"type": "string"},
                "bootId": {"type": "string"},
                "connId": NON_EMPTY,
            },
            ("version", "connId"),
        ),
        "features": obj(
            {
                "methods": array({"type": "string"}),
                "events": array({"type": "string"}),
                "capabilities": array({"type": "string"}),
            },
            ("methods", "events"),
        ),
        "snapshot": ref("Snapshot"),
        "auth": obj(
            {
                "method": enum("none", "token", "password", "device-token", "bootstrap-token", "trusted-proxy", "tailscale"),
                "role": NON_EMPTY,
                "scopes": array({"type": "string"}),
                "deviceToken": {"type": "string"},
                "issuedAtMs": integer(0),
            },
            ("role", "scopes"),
        ),
        "policy": obj(
            {
                "maxPayload": integer(1),
                "maxBufferedBytes": integer(1),
                "tickIntervalMs": integer(1),
                "attachments": obj({"maxBytes": integer(0), "maxImageBytes": integer(0)}),
            },
            ("maxPayload", "maxBufferedBytes", "tickIntervalMs"),
        ),
    },
    ("type", "protocol", "server", "features", "snapshot", "auth", "policy"),
)

DEFINITIONS = {
    "ClientInfo": CLIENT_INFO,
    "DeviceProof": DEVICE_PROOF,
    "ConnectAuth": CONNECT_AUTH,
    "ConnectParams": CONNECT_PARAMS,
    "PresenceEntry": PRESENCE_ENTRY,
    "HealthSnapshot": HEALTH_SNAPSHOT,
    "SessionDefaults": SESSION_DEFAULTS,
    "Snapshot": SNAPSHOT,
    "HelloOk": HELLO_OK,
}
