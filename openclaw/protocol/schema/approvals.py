"""Params of ``exec.approval.*`` and ``exec.approvals.*``, in the reference's shapes."""
from .common import BOOLEAN, NON_EMPTY, array, enum, integer, obj, string

NULLABLE_STRING = {"type": ["string", "null"]}
SECURITY = enum("deny", "allowlist", "full")
POLICY_FIELDS = {"security": {"type": "string"}, "ask": {"type": "string"}, "askFallback": {"type": "string"}, "autoAllowSkills": BOOLEAN}
ALLOWLIST_ENTRY = obj(
    {
        "id": NON_EMPTY,
        "pattern": {"type": "string"},
        "source": enum("allow-always"),
        "commandText": {"type": "string"},
        "argPattern": {"type": "string"},
        "lastUsedAt": {"type": "number", "minimum": 0},
        "lastUsedCommand": {"type": "string"},
        "lastResolvedPath": {"type": "string"},
    },
    ("pattern",),
)
MCP_TOOL = obj(
    {"server": string(1), "tool": string(1), "source": enum("allow-always"), "addedAt": {"type": "number", "minimum": 0}, "lastUsedAt": {"type": "number", "minimum": 0}},
    ("server", "tool", "source", "addedAt"),
)
AGENT_POLICY = obj({**POLICY_FIELDS, "allowlist": array(ALLOWLIST_ENTRY), "mcpTools": array(MCP_TOOL)})
APPROVALS_FILE = obj(
    {
        "version": {"const": 1},
        "socket": obj({"path": {"type": "string"}, "token": {"type": "string"}}),
        "defaults": obj(POLICY_FIELDS),
        "agents": {"type": "object", "additionalProperties": AGENT_POLICY},
    },
    ("version",),
)
NATIVE_RULE = obj(
    {"pattern": NON_EMPTY, "action": enum("allow", "deny", "prompt"), "shells": array(NON_EMPTY), "description": {"type": "string"}, "enabled": BOOLEAN},
    ("pattern", "action"),
)
POLICY_SNAPSHOT = obj(
    {
        "security": SECURITY,
        "ask": enum("off", "on-miss", "always"),
        "askFallback": SECURITY,
        "autoAllowSkills": BOOLEAN,
        "allowlistRules": array(obj({"pattern": {"type": "string"}, "argPattern": {"type": "string"}, "source": enum("allow-always")}, ("pattern",))),
    },
    ("security", "ask", "askFallback", "autoAllowSkills", "allowlistRules"),
)
SYSTEM_RUN_PLAN = obj(
    {
        "argv": array({"type": "string"}, 1),
        "cwd": NULLABLE_STRING,
        "commandText": {"type": "string"},
        "commandPreview": NULLABLE_STRING,
        "agentId": NULLABLE_STRING,
        "sessionKey": NULLABLE_STRING,
        "policySnapshot": POLICY_SNAPSHOT,
        "mutableFileOperand": {
            "oneOf": [
                {"type": "null"},
                obj({"argvIndex": integer(0), "path": {"type": "string"}, "sha256": {"type": "string"}}, ("argvIndex", "path", "sha256")),
            ]
        },
    },
    ("argv", "cwd", "commandText", "agentId", "sessionKey"),
)
NULLABLE_FIELDS = (
    "cwd",
    "host",
    "security",
    "ask",
    "warningText",
    "agentId",
    "resolvedPath",
    "sessionKey",
    "sessionId",
    "runId",
    "toolCallId",
    "turnSourceChannel",
    "turnSourceTo",
    "turnSourceAccountId",
)
APPROVAL_REQUEST = obj(
    {
        "id": NON_EMPTY,
        "command": NON_EMPTY,
        "commandArgv": array({"type": "string"}),
        "systemRunPlan": SYSTEM_RUN_PLAN,
        "env": {"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"minLength": 1}},
        "nodeId": {"oneOf": [NON_EMPTY, {"type": "null"}]},
        **{field: NULLABLE_STRING for field in NULLABLE_FIELDS},
        "scope": {},
        "unavailableDecisions": array(enum("allow-always"), 1, 1),
        "commandSpans": array(obj({"startIndex": integer(0), "endIndex": integer(1)}, ("startIndex", "endIndex"))),
        "turnSourceThreadId": {"type": ["string", "number", "null"]},
        "approvalReviewerDeviceIds": array(NON_EMPTY),
        "requireDeliveryRoute": BOOLEAN,
        "suppressDelivery": BOOLEAN,
        "deliverToApprovalClientsOnly": BOOLEAN,
        "timeoutMs": integer(1),
        "twoPhase": BOOLEAN,
    }
)
APPROVAL_ID = obj({"id": NON_EMPTY}, ("id",))

APPROVAL_METHOD_PARAMS = {
    "exec.approval.request": APPROVAL_REQUEST,
    "exec.approval.list": obj({}),
    "exec.approval.get": APPROVAL_ID,
    "exec.approval.resolve": obj(
        {"id": NON_EMPTY, "decision": NON_EMPTY, "reviewer": {"type": "object"}, "grantExpiresInDays": integer(1, 3650)}, ("id", "decision")
    ),
    "exec.approval.waitDecision": obj({"id": {"type": "string"}}),
    "exec.approval.grants.list": obj({"limit": integer(1, 500)}),
    "exec.approval.grants.revoke": obj({"grantId": NON_EMPTY}, ("grantId",)),
    "approval.get": APPROVAL_ID,
    "approval.resolve": obj(
        {
            "id": NON_EMPTY,
            "kind": enum("exec", "plugin", "system-agent"),
            "decision": enum("allow-once", "allow-always", "deny"),
            "reviewer": {"type": "object"},
            "grantExpiresInDays": integer(1, 3650),
        },
        ("id", "kind", "decision"),
    ),
    "approval.history": obj({"cursor": string(1, 512), "limit": integer(1, 100), "kind": enum("exec", "plugin", "system-agent")}),
    "exec.approvals.get": obj({}),
    "exec.approvals.set": obj({"file": APPROVALS_FILE, "baseHash": NON_EMPTY}, ("file",)),
    "exec.approvals.node.get": obj({"nodeId": NON_EMPTY}, ("nodeId",)),
    "exec.approvals.node.set": obj(
        {
            "nodeId": NON_EMPTY,
            "file": APPROVALS_FILE,
            "native": obj({"defaultAction": enum("allow", "deny", "prompt"), "rules": array(NATIVE_RULE)}, ("rules",)),
            "baseHash": NON_EMPTY,
        },
        ("nodeId",),
    ),
}

APPROVAL_EVENT_PAYLOADS = {
    "exec.approval.requested": obj(
        {"approvalKind": enum("exec"), "id": NON_EMPTY, "request": {"type": "object"}, "createdAtMs": integer(0), "expiresAtMs": integer(0)},
        ("id", "request", "createdAtMs", "expiresAtMs"),
    ),
    "exec.approval.resolved": obj(
        {"id": NON_EMPTY, "decision": enum("allow-once", "allow-always", "deny"), "resolvedBy": NULLABLE_STRING, "ts": integer(0), "request": {"type": "object"}},
        ("id", "decision", "ts"),
    ),
}
