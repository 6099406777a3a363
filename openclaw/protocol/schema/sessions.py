"""Params of the sessions, chat, agent and catalog methods (protocol §9.1-§9.3, §9.7).

Objects are closed like every other params object: an unknown key is an INVALID_REQUEST naming
it. Mutations accept ``null`` to clear a field.
"""
from typing import Any

from .common import BOOLEAN, NON_EMPTY, array, enum, integer, obj, string

SESSION_KEY = string(1, 512)
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_BOOLEAN = {"type": ["boolean", "null"]}


def nullable_enum(*values: str) -> dict[str, Any]:
    return {"enum": [*values, None]}


SESSIONS_LIST = obj(
    {
        "limit": integer(1),
        "offset": integer(0),
        "activeMinutes": integer(1),
        "activeOnly": BOOLEAN,
        "sortBy": enum("updatedAt", "lastInteractionAt", "activity"),
        "includeGlobal": BOOLEAN,
        "includeUnknown": BOOLEAN,
        "includeDerivedTitles": BOOLEAN,
        "includeLastMessage": BOOLEAN,
        "label": string(1, 512),
        "spawnedBy": string(1, 512),
        "agentId": NON_EMPTY,
        "search": string(0, 512),
        "archived": {"anyOf": [BOOLEAN, enum("all")]},
        # Accepted as the reference does; see methods/sessions.py for how each one filters here.
        "requireLastInteraction": BOOLEAN,
        "excludeSubagents": BOOLEAN,
        "excludeCron": BOOLEAN,
        "excludeSystem": BOOLEAN,
        "configuredAgentsOnly": BOOLEAN,
        "includeActivitySummary": BOOLEAN,
        "projectId": NON_EMPTY,
        "workspaceDir": NON_EMPTY,
        "group": {"type": "string"},
        "pinned": BOOLEAN,
        "boardFace": enum("chat", "dashboard"),
        "hasBoard": BOOLEAN,
        "creatorId": NON_EMPTY,
        "ownerId": NON_EMPTY,
        "ownerFirst": BOOLEAN,
        "involvingMe": BOOLEAN,
        "profileRelation": obj(
            {"profileId": NON_EMPTY, "relationship": enum("owned", "created", "involving")}, ("profileId", "relationship")
        ),
        "involvingProfileId": NON_EMPTY,
        "includePeople": BOOLEAN,
    }
)

SESSIONS_PREVIEW = obj(
    {"keys": array(string(0, 512), 1, 256), "limit": integer(1, 200), "maxChars": integer(20, 100_000)}, ("keys",)
)

SESSIONS_RESOLVE = obj(
    {
        "key": SESSION_KEY,
        "sessionId": NON_EMPTY,
        "label": string(1, 512),
        "agentId": NON_EMPTY,
        "spawnedBy": string(1, 512),
        "includeGlobal": BOOLEAN,
        "includeUnknown": BOOLEAN,
        "allowMissing": BOOLEAN,
    }
)

SESSIONS_PATCH = obj(
    {
        "key": SESSION_KEY,
        "agentId": NON_EMPTY,
        "expectedSessionId": NON_EMPTY,
        "expectedLifecycleRevision": NON_EMPTY,
        "expectedPermissionMode": NULLABLE_STRING,
        "expectedMarkedUnreadAt": {"type": ["integer", "null"]},
        "label": {"anyOf": [string(0, 200), {"type": "null"}]},
        "autoLabel": NULLABLE_STRING,
        "displayName": NULLABLE_STRING,
        "icon": NULLABLE_STRING,
        "color": NULLABLE_STRING,
        "category": NULLABLE_STRING,
        "pinned": NULLABLE_BOOLEAN,
        "archived": NULLABLE_BOOLEAN,
        "unread": NULLABLE_BOOLEAN,
        "model": NULLABLE_STRING,
        "agentRuntime": NULLABLE_STRING,
        "thinkingLevel": NULLABLE_STRING,
        "fastMode": {"anyOf": [BOOLEAN, enum("auto"), {"type": "null"}]},
        "permissionMode": NULLABLE_STRING,
        "sandboxMode": NULLABLE_STRING,
        "verboseLevel": nullable_enum("on", "off", "full"),
        "reasoningLevel": nullable_enum("on", "off", "stream"),
        "elevatedLevel": nullable_enum("on", "off", "ask", "full"),
        "responseUsage": nullable_enum("off", "tokens", "full", "on"),
        "sendPolicy": nullable_enum("allow", "deny"),
        "groupActivation": nullable_enum("mention", "always"),
        "spawnedBy": NULLABLE_STRING,
        "execHost": NULLABLE_STRING,
        "execSecurity": NULLABLE_STRING,
        "execAsk": NULLABLE_STRING,
        "execNode": NULLABLE_STRING,
    },
    ("key",),
)

SESSIONS_RESET = obj(
    {"key": SESSION_KEY, "agentId": NON_EMPTY, "reason": enum("new", "reset"), "expectedSessionId": NON_EMPTY},
    ("key",),
)

SESSIONS_DELETE = obj(
    {
        "key": SESSION_KEY,
        "agentId": NON_EMPTY,
        "deleteTranscript": BOOLEAN,
        "expectedSessionId": NON_EMPTY,
        "expectedLifecycleRevision": NON_EMPTY,
        "expectedSessionUpdatedAt": {"type": "number", "minimum": 0},
        # No lifecycle hooks run here; accepted as the reference's UI sends it.
        "emitLifecycleHooks": BOOLEAN,
        "archivedOnly": BOOLEAN,
    },
    ("key",),
)

SESSIONS_COMPACT = obj({"key": SESSION_KEY, "agentId": NON_EMPTY, "maxLines": integer(1)}, ("key",))

ATTACHMENT = obj(
    {"type": {"type": "string"}, "mimeType": {"type": "string"}, "fileName": {"type": "string"}, "content": {"type": "string"}},
    closed=False,
)

CHAT_SEND = obj(
    {
        "sessionKey": SESSION_KEY,
        "message": {"type": "string"},
        "idempotencyKey": string(1, 256),
        "agentId": NON_EMPTY,
        "sessionId": NON_EMPTY,
        "thinking": {"type": "string"},
        "fastMode": {"anyOf": [BOOLEAN, enum("auto")]},
        "deliver": BOOLEAN,
        "attachments": array(ATTACHMENT, max_items=32),
        "timeoutMs": integer(1, 86_400_000),
        "queueMode": {"type": "string"},
        "replyToId": {"type": "string"},
    },
    ("sessionKey", "message", "idempotencyKey"),
)

CHAT_HISTORY = obj(
    {
        "sessionKey": SESSION_KEY,
        "agentId": NON_EMPTY,
        "sessionId": NON_EMPTY,
        "limit": integer(1, 1000),
        "cursor": string(1, 512),
        "maxChars": integer(1),
        "maxBytes": integer(1024),
        # The UI sends these to pick out its own in-flight inputs; no input ever waits outside
        # the transcript here (pendingInputs is always empty), so they change nothing.
        "offset": integer(0),
        "pendingBefore": integer(1),
        "inputRunIds": {**array(string(1, 256), 1, 50), "uniqueItems": True},
        "messageId": NON_EMPTY,
    },
    ("sessionKey",),
)

# chat.startup takes chat.history's params (the reference's schema is the same object).
CHAT_STARTUP = CHAT_HISTORY

_SESSION_KEY_OR_PROFILE: dict[str, Any] = {"not": {"required": ["sessionKey", "authProfileId"]}}
CHAT_METADATA = obj(
    {"agentId": NON_EMPTY, "authProfileId": string(1, 256), "sessionKey": SESSION_KEY},
    **_SESSION_KEY_OR_PROFILE,
)

SESSION_BY_KEY = obj({"key": SESSION_KEY, "agentId": NON_EMPTY}, ("key",))

CHAT_ABORT = obj({"sessionKey": SESSION_KEY, "agentId": NON_EMPTY, "runId": NON_EMPTY}, ("sessionKey",))

CHAT_INJECT = obj(
    {"sessionKey": SESSION_KEY, "agentId": NON_EMPTY, "message": NON_EMPTY, "label": string(0, 100)},
    ("sessionKey", "message"),
)

AGENT = obj(
    {
        "message": NON_EMPTY,
        "idempotencyKey": string(1, 256),
        "agentId": NON_EMPTY,
        "sessionKey": SESSION_KEY,
        "sessionId": NON_EMPTY,
        "provider": NON_EMPTY,
        "model": NON_EMPTY,
        "thinking": {"type": "string"},
        "deliver": BOOLEAN,
        "bestEffortDeliver": BOOLEAN,
        "to": {"type": "string"},
        "channel": {"type": "string"},
        "replyTo": {"type": "string"},
        "replyChannel": {"type": "string"},
        "accountId": {"type": "string"},
        "threadId": {"type": "string"},
        "lane": {"type": "string"},
        "label": {"type": "string"},
        "timeout": integer(1, 86_400),
        "extraSystemPrompt": {"type": "string"},
        "attachments": array(ATTACHMENT, max_items=32),
    },
    ("message", "idempotencyKey"),
)

AGENT_WAIT = obj({"runId": NON_EMPTY, "timeoutMs": integer(0, 86_400_000)}, ("runId",))

MODELS_LIST = obj({"agentId": NON_EMPTY, "sessionKey": SESSION_KEY, "view": {"type": "string"}}, closed=False)

SESSIONS_CREATE = obj(
    {
        "key": SESSION_KEY,
        "idempotencyKey": NON_EMPTY,
        "agentId": NON_EMPTY,
        "label": string(1, 512),
        "displayName": string(1, 500),
        "titleSource": string(0, 1000),
        "category": string(1, 512),
        "model": NON_EMPTY,
        "message": {"type": "string"},
        "timeoutMs": integer(0),
    },
    # The reference takes many more (worktrees, projects, forks, a first message); they are
    # features this gateway lacks, and an unknown key names itself in the error.
)

SESSION_METHOD_PARAMS = {
    "sessions.subscribe": obj({}),
    "sessions.unsubscribe": obj({}),
    "sessions.list": SESSIONS_LIST,
    "sessions.preview": SESSIONS_PREVIEW,
    "sessions.resolve": SESSIONS_RESOLVE,
    "sessions.patch": SESSIONS_PATCH,
    "sessions.reset": SESSIONS_RESET,
    "sessions.delete": SESSIONS_DELETE,
    "sessions.compact": SESSIONS_COMPACT,
    "chat.send": CHAT_SEND,
    "chat.history": CHAT_HISTORY,
    "chat.abort": CHAT_ABORT,
    "chat.inject": CHAT_INJECT,
    "agent": AGENT,
    "agent.wait": AGENT_WAIT,
    "models.list": MODELS_LIST,
    "agents.list": obj({}),
    "agent.identity.get": obj({"agentId": NON_EMPTY, "sessionKey": {"type": "string"}}),
    "models.authStatus": obj({"refresh": BOOLEAN, "agentId": {"type": "string"}}),
    "chat.startup": CHAT_STARTUP,
    "chat.metadata": CHAT_METADATA,
    "sessions.describe": obj(
        {"key": SESSION_KEY, "agentId": NON_EMPTY, "includeDerivedTitles": BOOLEAN, "includeLastMessage": BOOLEAN}, ("key",)
    ),
    "sessions.create": SESSIONS_CREATE,
    "sessions.messages.subscribe": obj({"key": SESSION_KEY, "agentId": NON_EMPTY, "includeApprovals": {"const": True}}, ("key",)),
    "sessions.messages.unsubscribe": SESSION_BY_KEY,
    "sessions.observer.visibility": obj({"visible": BOOLEAN}, ("visible",)),
    "system.info": obj({}),
    "environments.list": obj({"runtimeId": string(1, 128), "projection": {"const": "profiles"}, "includeDesktopSetup": BOOLEAN}),
    "usage.status": obj({}),
    "diagnostics.lanes": obj({}),
    # The reference's params (its UI sends agentScope, groupBy and includeContextWeight).
    "sessions.usage": obj(
        {
            "key": SESSION_KEY,
            "agentId": NON_EMPTY,
            "agentScope": {"const": "all"},
            "creatorKey": NON_EMPTY,
            "startDate": string(10, 10, pattern=r"^\d{4}-\d{2}-\d{2}$"),
            "endDate": string(10, 10, pattern=r"^\d{4}-\d{2}-\d{2}$"),
            "mode": enum("utc", "gateway", "specific"),
            "range": enum("7d", "30d", "90d", "1y", "all"),
            "groupBy": enum("instance", "family"),
            "includeHistorical": BOOLEAN,
            "utcOffset": string(pattern=r"^UTC[+-]\d{1,2}(?::[0-5]\d)?$"),
            "timeZone": NON_EMPTY,
            "limit": integer(1),
            "includeContextWeight": BOOLEAN,
        }
    ),
}
