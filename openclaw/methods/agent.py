"""``agent`` (two responses on one request id), ``agent.wait``, and the catalog reads
``models.list`` / ``agents.list`` / ``agent.identity.get`` / ``models.authStatus`` (protocol §9.3, §9.7).

``agent`` first answers ``status: accepted`` so ordinary clients can move on, then answers again
when the run ends; clients that pass ``expectFinal`` wait for the second frame.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import inlineCallbacks

from ..agents.dedupe import fingerprint as input_digest
from ..agents.dedupe import outcome_of
from ..agents.runs import STATUS_ABORTED, STATUS_OK, STATUS_TIMEOUT, Run
from ..protocol.errors import UNAVAILABLE, GatewayError, invalid_request
from ..security.scopes import ADMIN, READ, WRITE
from ..agents.identity import agent_identity
from ..sessions.keys import agent_id_of, main_session_key
from .chat import CONFLICT_MESSAGE, SubmittedRun, claim_or_conflict, replay_or_conflict, resolve_agent, start_run
from .registry import MethodSpec, RequestContext
from .session_views import THINKING_OFF

AGENT_WAIT_DEFAULT_MS = 30_000
REPLAY_GRACE_S = 30.0  # beyond the run's own timeout, for its outcome to reach this instance
_RESET_COMMAND = re.compile(r"^/(new|reset)(\s.*)?$", re.IGNORECASE | re.DOTALL)


def agent_scope(params: Any) -> str:
    """``/new`` and ``/reset`` wipe a session, so they need admin; any other message needs write."""
    message = params.get("message") if isinstance(params, dict) else None
    if isinstance(message, str) and _RESET_COMMAND.match(message.strip()):
        return ADMIN
    return WRITE


def acceptance(run: Run) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "sessionKey": run.session_key,
        "agentId": run.agent_id,
        "status": "accepted",
        "acceptedAt": run.accepted_at,
    }


def final_payload(run: Run) -> dict[str, Any]:
    """The second ``agent`` response; failures raise a GatewayError that carries the payload."""
    duration = (run.ended_at or 0) - (run.started_at or run.accepted_at)
    if run.status == STATUS_OK:
        usage = run.usage or {}
        agent_meta: dict[str, Any] = {"sessionId": run.session_id}
        if run.target is not None:
            agent_meta.update({"provider": run.target.provider.id, "model": run.target.model.id})
            if run.target.model.context_window:
                agent_meta["contextTokens"] = run.target.model.context_window
        if usage:
            agent_meta["usage"] = {"input": usage.get("input", 0), "output": usage.get("output", 0), "total": usage.get("totalTokens", 0)}
        return {
            "runId": run.run_id,
            "status": "ok",
            "summary": "completed",
            "result": {"payloads": [{"text": run.text, "mediaUrl": None}], "meta": {"durationMs": duration, "agentMeta": agent_meta}},
        }
    if run.status == STATUS_TIMEOUT:
        return {"runId": run.run_id, "status": "timeout", "summary": "aborted", "stopReason": "timeout", "timeoutPhase": "provider"}
    if run.status == STATUS_ABORTED:
        return {"runId": run.run_id, "status": "aborted", "summary": "aborted", "stopReason": "rpc"}
    message = run.error or "agent run failed"
    raise GatewayError(UNAVAILABLE, message, payload={"runId": run.run_id, "status": "error", "summary": message})


@inlineCallbacks
def agent(ctx: RequestContext) -> Any:
    params = ctx.params
    gateway = ctx.gateway
    message = params["message"]
    if params.get("sessionKey"):
        session_key = gateway.session_key(params["sessionKey"], params.get("agentId"))
    elif params.get("sessionId"):
        found = yield gateway.sessions.find(session_id=params["sessionId"], limit=1)
        if not found:
            raise invalid_request(f"no session with sessionId {params['sessionId']}")
        session_key = found[0][0]
    else:
        session_key = main_session_key(params.get("agentId") or gateway.catalog.default_agent_id, gateway.catalog.main_key)
    agent_id = resolve_agent(ctx, session_key, params.get("agentId"))
    override = None
    if params.get("model"):
        override = params["model"] if "/" in params["model"] or not params.get("provider") else f"{params['provider']}/{params['model']}"
        if gateway.catalog.resolve(override) is None:
            raise invalid_request(f"unknown model {override!r}")
    cache_key = f"agent:{params['idempotencyKey']}"
    fingerprint = (session_key, message)
    run = replay_or_conflict(gateway.dedupe, cache_key, fingerprint)
    if run is None:
        if gateway.runs.get(params["idempotencyKey"]) is not None:
            raise invalid_request("idempotencyKey is already the id of another run")
        elsewhere = yield claim_or_conflict(gateway.dedupe, cache_key, fingerprint)
        # Taken meanwhile by a request on this instance, or first sent to another instance.
        run = replay_or_conflict(gateway.dedupe, cache_key, fingerprint)
        if run is None and elsewhere is not None:
            replayed = yield replay_elsewhere(ctx, session_key, agent_id, elsewhere)
            return replayed
    if run is None:
        try:
            run = yield _start(ctx, session_key, agent_id, message, override, cache_key, fingerprint)
        except Exception:
            gateway.dedupe.abandon(cache_key)
            raise
        if not isinstance(run, Run):
            return run  # "/new" alone: the session was reset, no run
    elif run.finished:
        return final_payload(run)
    ctx.send_interim(acceptance(run))
    finished = yield run.when_finished()
    return final_payload(finished)


@inlineCallbacks
def _start(
    ctx: RequestContext, session_key: str, agent_id: str, message: str, override: str | None, cache_key: str, fingerprint: tuple[Any, ...]
) -> Any:
    """Start the run (after a ``/new``'s reset), and share its outcome once it ends."""
    gateway, params = ctx.gateway, ctx.params
    digest = input_digest(fingerprint)
    reset = _RESET_COMMAND.match(message.strip())
    if reset:
        # A retried "/new" (same idempotencyKey) must not reset the session a second time
        # and lose the turns sent since; the reset itself is remembered like a run is.
        reset_key = f"agent-reset:{params['idempotencyKey']}"
        done = gateway.dedupe.get(reset_key)
        if done is not None and done.fingerprint != fingerprint:
            raise invalid_request(CONFLICT_MESSAGE, {"reason": "chat-request-conflict"})
        if done is None:
            yield gateway.reset_session(session_key, reason=reset.group(1).lower())
            gateway.dedupe.put(reset_key, SubmittedRun(None, fingerprint))
        remainder = reset.group(2)
        if not remainder or not remainder.strip():
            result = {"runId": params["idempotencyKey"], "status": "ok", "summary": "session reset", "sessionKey": session_key}
            gateway.dedupe.complete(cache_key, digest, result)
            return result
        message = remainder.strip()
    timeout = params.get("timeout")
    run = start_run(
        ctx,
        kind="agent",
        session_key=session_key,
        agent_id=agent_id,
        message=message,
        timeout_s=float(timeout) if timeout else None,
        cache_key=cache_key,
        fingerprint=fingerprint,
        model_override=override,
        extra_system_prompt=params.get("extraSystemPrompt"),
    )
    run.when_finished().addCallback(_share_final, gateway.dedupe, cache_key, digest)
    return run


def _share_final(run: Run, dedupe: Any, cache_key: str, digest: str) -> None:
    """The final payload (or error) of a run, for a replay that reaches another instance."""
    try:
        dedupe.complete(cache_key, digest, final_payload(run))
    except GatewayError as error:
        dedupe.complete(cache_key, digest, error=error)


@inlineCallbacks
def replay_elsewhere(ctx: RequestContext, session_key: str, agent_id: str, record: dict[str, Any]) -> Any:
    """A replay of an ``agent`` request another instance took: the same two answers, the second
    once that instance's run has ended."""
    gateway = ctx.gateway
    if not record.get("done"):
        run_id = ctx.params["idempotencyKey"]
        ctx.send_interim({"runId": run_id, "sessionKey": session_key, "agentId": agent_id, "status": "accepted", "acceptedAt": gateway.now_ms()})
    timeout = ctx.params.get("timeout")
    wait_s = (float(timeout) if timeout else float(gateway.catalog.run_timeout_s)) + REPLAY_GRACE_S
    finished = yield gateway.dedupe.wait(f"agent:{ctx.params['idempotencyKey']}", record, wait_s)
    return outcome_of(finished)


def agent_wait(ctx: RequestContext) -> Any:
    params = ctx.params
    timeout_ms = params.get("timeoutMs")
    return ctx.gateway.runs.wait(params["runId"], AGENT_WAIT_DEFAULT_MS if timeout_ms is None else timeout_ms)


def models_list(ctx: RequestContext) -> dict[str, Any]:
    """The published catalog: every model this gateway can route to (``provider`` filters).

    Entries carry what the reference CLI's table shows: ``input`` kinds, whether the server is
    ``local`` (loopback), and ``available`` (a key is set, or a local server needs none).
    """
    params = ctx.params if isinstance(ctx.params, dict) else {}
    wanted = params.get("provider")
    catalog = ctx.gateway.catalog
    models = []
    for entry in catalog.models():
        if wanted and entry.get("provider") != wanted:
            continue
        provider = catalog.providers.get(entry.get("provider", ""))
        local = _is_local(provider.base_url if provider is not None else "")
        entry.setdefault("input", ["text"])
        entry.setdefault("local", local)
        usable = provider is not None and not provider.unavailable and (local or bool(provider.api_key))
        entry.setdefault("available", usable)
        models.append(entry)
    return {"models": models}


def _is_local(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def agents_list(ctx: RequestContext) -> dict[str, Any]:
    """Agents as the reference lists them: ``model`` is ``{primary, fallbacks}`` (the UI's agent
    picker reads ``model.primary``), thinking is ``off`` only, every agent is a plain ``agent``."""
    catalog = ctx.gateway.catalog
    agents = []
    for entry in catalog.agents:
        summary: dict[str, Any] = {"id": entry.id, "kind": "agent"}
        if entry.name:
            summary["name"] = entry.name
        if entry.identity:
            summary["identity"] = dict(entry.identity)
        summary.update(THINKING_OFF)
        primary = entry.model or catalog.default_model
        if primary:
            fallbacks = entry.fallbacks if entry.fallbacks is not None else catalog.default_fallbacks
            summary["model"] = {"primary": primary, "fallbacks": list(fallbacks)}
        agents.append(summary)
    return {
        "defaultId": catalog.default_agent_id,
        "ownership": "sole",
        "selectionRequired": False,
        "mainKey": catalog.main_key,
        "scope": catalog.scope,
        "agents": agents,
    }


def agent_identity_get(ctx: RequestContext) -> dict[str, Any]:
    params = ctx.params
    gateway = ctx.gateway
    agent_id = params.get("agentId")
    if not agent_id and params.get("sessionKey"):
        agent_id = agent_id_of(gateway.session_key(params["sessionKey"]))
    if agent_id and gateway.catalog.agent(agent_id) is None:
        raise invalid_request(f'unknown agent id "{agent_id}"')
    return agent_identity(gateway.catalog, agent_id)


def models_auth_status(ctx: RequestContext) -> dict[str, Any]:
    """How each configured provider authenticates: a key from the config, or none (local
    servers). There are no login flows or credential profiles here, so no capabilities."""
    providers = []
    for provider in ctx.gateway.catalog.providers.values():
        status: dict[str, Any] = {
            "provider": provider.id,
            "authProvider": provider.id,
            "displayName": provider.id,
            "status": "static",
            "profiles": [],
        }
        if provider.api_key:
            status["apiKey"] = {"source": "config"}
        providers.append(status)
    return {"ts": ctx.gateway.now_ms(), "providers": providers, "providerCapabilities": []}


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("agent", agent, scope=agent_scope),
        MethodSpec("agent.wait", agent_wait, scope=WRITE),
        MethodSpec("models.list", models_list, scope=READ),
        MethodSpec("agents.list", agents_list, scope=READ),
        MethodSpec("agent.identity.get", agent_identity_get, scope=READ),
        MethodSpec("models.authStatus", models_auth_status, scope=READ),
    ]
