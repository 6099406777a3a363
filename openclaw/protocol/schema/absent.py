"""Params of the methods of families this gateway does not have (``methods/absent.py``).

They are validated like every other method's, with the reference's param shapes, so a client
that sends something malformed hears so instead of a silent empty answer. The writes take any
object: whatever they are sent, the answer is that the feature is not available here.
"""
from .common import BOOLEAN, EMPTY_PARAMS, NON_EMPTY, Schema, array, enum, integer, obj, string

SESSION_REF = obj({"sessionKey": NON_EMPTY, "agentId": NON_EMPTY}, ("sessionKey",))
GITHUB_SCOPE = enum("system", "agent")
TASK_STATUS = enum("queued", "running", "completed", "failed", "timed_out", "cancelled", "lost")
ANY_OBJECT: Schema = {"type": "object"}

ABSENT_METHOD_PARAMS: dict[str, Schema] = {
    "cron.list": obj(
        {
            "sessionKey": NON_EMPTY,
            "sessionAgentId": NON_EMPTY,
            "includeDisabled": BOOLEAN,
            "limit": integer(1, 200),
            "offset": integer(0),
            "query": {"type": "string"},
            "enabled": {"type": "string"},
            "scheduleKind": {"type": "string"},
            "lastRunStatus": {"type": "string"},
            "trigger": {"type": "string"},
            "sortBy": {"type": "string"},
            "sortDir": enum("asc", "desc"),
            "agentId": NON_EMPTY,
            "compact": BOOLEAN,
            "includeDeliveryPreviews": BOOLEAN,
        }
    ),
    "cron.status": EMPTY_PARAMS,
    "cron.runs": obj(
        {
            "agentId": NON_EMPTY,
            "jobId": NON_EMPTY,
            "id": NON_EMPTY,
            "scope": {"type": "string"},
            "limit": integer(1, 500),
            "offset": integer(0),
            "status": {"type": "string"},
            "statuses": array({"type": "string"}),
            "deliveryStatus": {"type": "string"},
            "query": {"type": "string"},
            "sortDir": enum("asc", "desc"),
        }
    ),
    "plugins.list": obj({}),
    "channels.pairing.list": obj({"channel": NON_EMPTY, "accountId": NON_EMPTY}),
    "webSearch.status": obj({"agentId": NON_EMPTY}),
    "plugins.catalog.browse": obj(
        {
            "query": string(0, 200),
            "searchSource": {"const": "openclaw-control-ui"},
            "intent": {"type": "string"},
            "category": string(1, 64),
            "cursor": string(1, 4096),
            "pageSize": integer(1, 100),
        }
    ),
    "plugins.install": ANY_OBJECT,
    "plugins.uninstall": ANY_OBJECT,
    "plugins.setEnabled": ANY_OBJECT,
    "artifacts.list": obj(
        {"sessionKey": NON_EMPTY, "agentId": NON_EMPTY, "runId": NON_EMPTY, "type": {"type": "string"}, "limit": integer(1, 500), "cursor": {"type": "string"}}
    ),
    "cron.add": ANY_OBJECT,
    "cron.update": ANY_OBJECT,
    "cron.remove": ANY_OBJECT,
    "cron.run": ANY_OBJECT,
    "tasks.list": obj(
        {
            "status": {"anyOf": [TASK_STATUS, array(TASK_STATUS)]},
            "agentId": NON_EMPTY,
            "sessionKey": NON_EMPTY,
            "limit": integer(1, 500),
            "cursor": string(0, 512),
            "sortBy": {"type": "string"},
        }
    ),
    "tasks.cancel": ANY_OBJECT,
    "update.status": obj({"refreshCheckout": BOOLEAN}),
    "update.run": ANY_OBJECT,
    "plugin.approval.list": EMPTY_PARAMS,
    "openclaw.approval.list": EMPTY_PARAMS,
    "plugin.approval.resolve": ANY_OBJECT,
    "openclaw.approval.resolve": ANY_OBJECT,
    "question.list": EMPTY_PARAMS,
    "question.resolve": ANY_OBJECT,
    "talk.catalog": obj({"provider": NON_EMPTY, "model": NON_EMPTY}),
    "talk.mode": ANY_OBJECT,
    "progressCard.get": SESSION_REF,
    "progressCard.put": ANY_OBJECT,
    "progressCard.refresh": ANY_OBJECT,
    "sessions.branches.list": SESSION_REF,
    "sessions.branches.switch": ANY_OBJECT,
    "sessions.companion.state": SESSION_REF,
    "sessions.companion.ask": ANY_OBJECT,
    "sessions.companion.reset": ANY_OBJECT,
    # skills library and registry, GitHub identity, worktrees, transcripts, task suggestions, memory
    "skills.library.list": obj({"sessionKey": string(1, 512), "scope": enum("mine", "team", "all")}),
    "skills.search": obj({"query": NON_EMPTY, "limit": integer(1, 100)}),
    "skills.proposals.list": obj({"agentId": NON_EMPTY}),
    "skills.library.save": ANY_OBJECT,
    "skills.library.mutate": ANY_OBJECT,
    "skills.library.activate": ANY_OBJECT,
    "skills.library.import": ANY_OBJECT,
    "skills.install": ANY_OBJECT,
    "tools.github.status": obj({"agentId": NON_EMPTY, "selectedScope": GITHUB_SCOPE}, ("agentId", "selectedScope")),
    "tools.github.configure": ANY_OBJECT,
    "tools.github.authorize.start": ANY_OBJECT,
    "tools.github.authorize.poll": ANY_OBJECT,
    "tools.github.authorize.cancel": ANY_OBJECT,
    "worktrees.list": EMPTY_PARAMS,
    "worktrees.create": ANY_OBJECT,
    "transcripts.list": obj(
        {
            "limit": integer(1, 100),
            "cursor": NON_EMPTY,
            "providerId": NON_EMPTY,
            "accountId": string(1, 256),
            "agentId": string(1, 256),
            "startedAfter": string(None, 64),
            "startedBefore": string(None, 64),
        }
    ),
    "taskSuggestions.list": obj({"sessionKey": string(1, 512), "agentId": string(1, 128)}),
    "taskSuggestions.create": ANY_OBJECT,
    "taskSuggestions.accept": ANY_OBJECT,
    "taskSuggestions.dismiss": ANY_OBJECT,
    "doctor.memory.status": obj({"agentId": NON_EMPTY}),
    "migrations.memory.plan": obj({"agentId": NON_EMPTY, "overwrite": BOOLEAN}, ("agentId",)),
    # themes (methods/themes.py)
    "themes.list": EMPTY_PARAMS,
    "themes.get": obj({"id": string(1, 256)}),
    "themes.set": obj(
        {
            "id": {"anyOf": [string(1, 256), {"type": "null"}]},
            "mode": {"anyOf": [enum("system", "light", "dark"), {"type": "null"}]},
            "appearance": obj({name: {"type": ["string", "null"]} for name in ("accent", "fontUi", "fontChat")}),
        }
    ),
    "themes.import": ANY_OBJECT,
}
