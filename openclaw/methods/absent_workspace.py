"""More families this gateway does not have: the skills library and registry, GitHub identity,
worktrees, meeting transcripts, task suggestions and agent memory.

The reference's Control UI reads these on its Skills, Settings > Profile, Worktrees, Meetings,
Skill workshop, Memory and Memory-import pages, whether or not ``hello-ok`` advertises them, so
an ``unknown method`` shows up as an error on those pages. As in :mod:`.absent`, the reads answer
the truthful empty state in the reference's shape (captured from a reference gateway with nothing
configured: no library profile, no registry, no GitHub credential), and the writes say the
feature is not available here.
"""
from __future__ import annotations

from typing import Any

from ..security.scopes import ADMIN, READ, WRITE
from .absent import empty_read, feature_not_available, not_available
from .registry import MethodSpec, RequestContext

# What the reference answers when no library profile can be resolved: nothing to list, and
# nowhere to save to ("unavailable").
SKILLS_LIBRARY_EMPTY = {
    "entries": [],
    "profileId": None,
    "multipleProfiles": False,
    "defaultTarget": "unavailable",
    "canManageWorkspace": False,
    "defaultSelectionLimit": 64,
}
SKILL_PROPOSALS_EMPTY = {
    "schema": "openclaw.skill-workshop.proposals-manifest.v1",
    "updatedAt": "1970-01-01T00:00:00.000Z",
    "proposals": [],
    "installedSkills": [],
}
# The facts the reference reports for a host with no GitHub credential at all.
GITHUB_NO_IDENTITY = {
    "source": "system-detected",
    "credentialKind": "native",
    "credentialState": "unavailable",
    "account": None,
    "gitAuthor": {"name": None, "email": None},
    "evidence": "none",
    "accessExpiresAtMs": None,
    "refreshState": "not_applicable",
    "oauthScopes": [],
    "repositoryGrants": "unknown",
}


def _skills_library_list(ctx: RequestContext) -> dict[str, Any]:
    """No skills library here; a session asked about has nothing selected and nothing to attach."""
    result: dict[str, Any] = dict(SKILLS_LIBRARY_EMPTY, entries=[])
    session_key = (ctx.params or {}).get("sessionKey")
    if session_key:
        result["session"] = {"sessionKey": session_key, "selections": [], "attachable": []}
    return result


def _github_status(ctx: RequestContext) -> dict[str, Any]:
    """No GitHub integration: neither the selected scope nor the effective identity has one."""
    params = ctx.params or {}
    scope = params["selectedScope"]
    return {
        "agentId": params["agentId"],
        "selectedScope": scope,
        "selected": {"scope": scope, "configured": False, "identity": dict(GITHUB_NO_IDENTITY, gitAuthor={"name": None, "email": None})},
        "effective": dict(GITHUB_NO_IDENTITY, gitAuthor={"name": None, "email": None}),
    }


def _memory_unavailable(name: str) -> MethodSpec:
    """Agent memory reads: there is no memory store to report on or import into here."""

    def handler(ctx: RequestContext) -> Any:
        raise feature_not_available("agent memory", name)

    handler.__name__ = f"unavailable_{name.replace('.', '_')}"
    return MethodSpec(name, handler, scope=ADMIN if name.startswith("migrations.") else READ, advertised=False)


def methods() -> list[MethodSpec]:
    return [
        # the skills library (shared, versioned skills) and the public skill registry
        MethodSpec("skills.library.list", _skills_library_list, scope=READ),
        empty_read("skills.search", {"results": []}),
        empty_read("skills.proposals.list", SKILL_PROPOSALS_EMPTY),
        *(
            not_available(name, "the skills library", scope=WRITE)
            for name in ("skills.library.save", "skills.library.mutate", "skills.library.activate", "skills.library.import")
        ),
        not_available("skills.install", "installing skills", scope=ADMIN),
        # GitHub identity for agents
        MethodSpec("tools.github.status", _github_status, scope=READ),
        *(
            not_available(name, "GitHub integration", scope=ADMIN)
            for name in ("tools.github.configure", "tools.github.authorize.start", "tools.github.authorize.poll", "tools.github.authorize.cancel")
        ),
        # git worktrees, meeting transcripts, task suggestions
        empty_read("worktrees.list", {"worktrees": []}),
        not_available("worktrees.create", "worktrees", scope=ADMIN),
        empty_read("transcripts.list", {"sessions": [], "nextCursor": None}),
        empty_read("taskSuggestions.list", {"suggestions": []}),
        *(not_available(name, "task suggestions", scope=WRITE) for name in ("taskSuggestions.create", "taskSuggestions.accept", "taskSuggestions.dismiss")),
        # agent memory (status page, imports from other agents' memory)
        _memory_unavailable("doctor.memory.status"),
        _memory_unavailable("migrations.memory.plan"),
    ]
