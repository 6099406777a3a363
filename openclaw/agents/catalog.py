"""Agents and model providers as the config file declares them, over the built-in ones.

``models.providers.<id>`` describes model servers (and overrides a built-in provider of the same
id, see :mod:`.builtin_providers`); ``agents.defaults.model``, ``agents.entries.<id>.model`` and
``agents.list[].model`` pick ``<provider>/<model>`` refs with fallbacks. The catalog is an
immutable value built from the config mapping (and the provider keys in the environment), so hot
reload can swap in a new one between runs without touching runs already streaming.

A reference config file must start this gateway, so what cannot work here (a model of a
provider this gateway does not know, an API it does not speak, a key that is not set) is not a
start-up error: it is a warning logged at start-up, and a run that needs it fails saying why.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import attrs

from ..config.loader import ConfigError, lookup
from ..sessions.keys import DEFAULT_AGENT_ID, DEFAULT_MAIN_KEY, normalize_agent_id
from .builtin_providers import (  # noqa: F401  (API names are imported from here elsewhere)
    API_ANTHROPIC,
    API_COMPLETIONS,
    API_OLLAMA,
    API_RESPONSES,
    BUILTIN_PROVIDERS,
    SUPPORTED_APIS,
    key_env_names,
)

DEFAULT_RUN_TIMEOUT_S = 600


@attrs.frozen
class ModelConfig:
    id: str
    name: str | None = None
    context_window: int | None = None
    max_tokens: int | None = None


@attrs.frozen
class ProviderConfig:
    id: str
    base_url: str
    api: str = API_COMPLETIONS
    api_key: str | None = attrs.field(default=None, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    models: tuple[ModelConfig, ...] = ()
    builtin: bool = False
    # Why no request can be sent (no key, an API this gateway does not speak), or None.
    unavailable: str | None = None

    def model(self, model_id: str) -> ModelConfig | None:
        for model in self.models:
            if model.id == model_id:
                return model
        return None


@attrs.frozen
class ModelRef:
    """A resolved ``<provider>/<model>``: where to send the request and what the model allows."""

    provider: ProviderConfig
    model: ModelConfig

    @property
    def ref(self) -> str:
        return f"{self.provider.id}/{self.model.id}"


@attrs.frozen
class AgentConfig:
    id: str
    name: str | None = None
    model: str | None = None
    fallbacks: tuple[str, ...] | None = None
    identity: Mapping[str, Any] | None = None
    default: bool = False


def _model_selection(value: Any, where: str) -> tuple[str | None, tuple[str, ...] | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value.strip() or None, None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a string or an object with primary/fallbacks")
    primary = value.get("primary")
    fallbacks = value.get("fallbacks")
    if primary is not None and not isinstance(primary, str):
        raise ConfigError(f"{where}.primary must be a string")
    if fallbacks is not None and (not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks)):
        raise ConfigError(f"{where}.fallbacks must be a list of strings")
    return (primary or None), (tuple(fallbacks) if fallbacks is not None else None)


def _api_key(raw: Any, where: str, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(key, why it cannot be had): a string, or a SecretRef ``{source: "env", id}``."""
    if raw is None or isinstance(raw, str):
        return raw or None, None
    if isinstance(raw, Mapping) and raw.get("source") == "env" and isinstance(raw.get("id"), str):
        value = env.get(raw["id"])
        return (value, None) if value else (None, f"{where}.apiKey names environment variable {raw['id']}, which is not set")
    source = raw.get("source") if isinstance(raw, Mapping) else None
    return None, f"{where}.apiKey from source {source!r} is not supported here (use a string, ${{VAR}} or source env)"


def _provider(provider_id: str, raw: Any, env: Mapping[str, str]) -> ProviderConfig:
    """A declared provider, over the built-in one of the same id if there is one."""
    where = f"models.providers.{provider_id}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    builtin = BUILTIN_PROVIDERS.get(provider_id)
    problems = []
    base_url = raw.get("baseUrl") or (builtin.base_url if builtin else None)
    if base_url is None:
        problems.append(f"{where} has no baseUrl and {provider_id} is not a built-in provider here")
    elif not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.baseUrl must be an http(s) URL")
    api = raw.get("api") or (builtin.api if builtin else API_COMPLETIONS)
    if api not in SUPPORTED_APIS:
        problems.append(f"{where}.api {api!r} is not spoken here (this gateway speaks {', '.join(SUPPORTED_APIS)})")
    api_key, key_problem = _api_key(raw.get("apiKey"), where, env)
    if api_key is None and builtin is not None:
        api_key = _env_key(builtin.key_env, env)
    if key_problem and api_key is None:
        problems.append(key_problem)
    elif api_key is None and builtin is not None and builtin.needs_key:
        problems.append(_missing_key(builtin.id, builtin.key_env))
    raw_headers = raw.get("headers") or {}
    headers = {k: v for k, v in raw_headers.items() if isinstance(v, str)} if isinstance(raw_headers, Mapping) else {}
    raw_models = raw.get("models") or []
    if not isinstance(raw_models, list):
        raise ConfigError(f"{where}.models must be a list")
    models = []
    for index, model in enumerate(raw_models):
        if not isinstance(model, Mapping) or not isinstance(model.get("id"), str) or not model["id"]:
            raise ConfigError(f"{where}.models[{index}] needs a string id")
        models.append(
            ModelConfig(
                id=model["id"],
                name=model.get("name"),
                context_window=_optional_int(model.get("contextWindow"), f"{where}.models[{index}].contextWindow"),
                max_tokens=_optional_int(model.get("maxTokens"), f"{where}.models[{index}].maxTokens"),
            )
        )
    return ProviderConfig(
        id=provider_id,
        base_url=(base_url or "").rstrip("/"),
        api=api,
        api_key=api_key or None,
        headers=dict(headers),
        models=tuple(models),
        builtin=builtin is not None,
        unavailable="; ".join(problems) or None,
    )


def _env_key(names: tuple[str, ...], env: Mapping[str, str]) -> str | None:
    return next((env[name] for name in names if env.get(name)), None)


def _missing_key(provider_id: str, names: tuple[str, ...]) -> str:
    return f"{provider_id} needs an API key: set {' or '.join(names)} (or models.providers.{provider_id}.apiKey)"


def _builtin(provider_id: str, env: Mapping[str, str]) -> ProviderConfig:
    spec = BUILTIN_PROVIDERS[provider_id]
    key = _env_key(spec.key_env, env)
    return ProviderConfig(
        id=spec.id,
        base_url=spec.base_url,
        api=spec.api,
        api_key=key,
        builtin=True,
        unavailable=_missing_key(spec.id, spec.key_env) if spec.needs_key and not key else None,
    )


def provider_keys(config: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that providers read keys from (built-in names, and the ids of
    ``{source: "env"}`` apiKey references): the settings keep these, not the whole environment."""
    names = set(key_env_names())
    for raw in (lookup(config, "models.providers", {}) or {}).values():
        key = raw.get("apiKey") if isinstance(raw, Mapping) else None
        if isinstance(key, Mapping) and key.get("source") == "env" and isinstance(key.get("id"), str):
            names.add(key["id"])
    return {name: env[name] for name in names if env.get(name)}


def provider_env(config: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The environment providers read keys from: the process's, then the config's ``env.vars``."""
    extra = lookup(config, "env.vars", {}) or {}
    merged = {k: v for k, v in extra.items() if isinstance(v, str)} if isinstance(extra, Mapping) else {}
    merged.update(env)
    return merged


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where} must be a positive number")
    return int(value)


def _agent(agent_id: str, raw: Mapping[str, Any], where: str) -> AgentConfig:
    model, fallbacks = _model_selection(raw.get("model"), f"{where}.model")
    return AgentConfig(
        id=normalize_agent_id(agent_id),
        name=raw.get("name"),
        model=model,
        fallbacks=fallbacks,
        identity=raw.get("identity") if isinstance(raw.get("identity"), Mapping) else None,
        default=raw.get("default") is True,
    )


def _agents(config: Mapping[str, Any]) -> list[AgentConfig]:
    """``agents.entries`` (keyed by id, what the reference writes) then ``agents.list``."""
    agents: list[AgentConfig] = []
    entries = lookup(config, "agents.entries", {}) or {}
    if not isinstance(entries, Mapping):
        raise ConfigError("agents.entries must be an object")
    for agent_id, raw in entries.items():
        if not isinstance(raw, Mapping):
            raise ConfigError(f"agents.entries.{agent_id} must be an object")
        agents.append(_agent(agent_id, raw, f"agents.entries.{agent_id}"))
    raw_agents = lookup(config, "agents.list", []) or []
    if not isinstance(raw_agents, list):
        raise ConfigError("agents.list must be a list")
    for index, raw in enumerate(raw_agents):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not raw["id"].strip():
            raise ConfigError(f"agents.list[{index}] needs a string id")
        if any(agent.id == normalize_agent_id(raw["id"]) for agent in agents):
            continue  # the same agent in both forms: entries wins, as after the reference's move
        agents.append(_agent(raw["id"], raw, f"agents.list[{index}]"))
    if not agents:
        agents.append(AgentConfig(DEFAULT_AGENT_ID, default=True))
    elif not any(agent.default for agent in agents):
        agents[0] = attrs.evolve(agents[0], default=True)
    return agents


def _main_key(value: Any) -> str:
    if value is None:
        return DEFAULT_MAIN_KEY
    if not isinstance(value, str):
        raise ConfigError("session.mainKey must be a string")
    return value.strip().lower() or DEFAULT_MAIN_KEY


@attrs.frozen
class Catalog:
    providers: Mapping[str, ProviderConfig] = attrs.field(factory=dict)
    agents: tuple[AgentConfig, ...] = (AgentConfig(DEFAULT_AGENT_ID, default=True),)
    default_model: str | None = None
    default_fallbacks: tuple[str, ...] = ()
    run_timeout_s: int = DEFAULT_RUN_TIMEOUT_S
    main_key: str = DEFAULT_MAIN_KEY
    scope: str = "per-sender"
    # Built-in providers (see .builtin_providers), with their keys from the environment.
    builtins: Mapping[str, ProviderConfig] = attrs.field(factory=dict, repr=False)
    # What cannot work as configured: logged at start-up (see the module text).
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Catalog:
        """Build the catalog, or raise ConfigError naming the offending key.

        ``env`` supplies provider keys (``OPENAI_API_KEY``, …; the config's ``env.vars`` fill
        in what it lacks). Without it no built-in provider has a key.
        """
        env = provider_env(config, env or {})
        raw_providers = lookup(config, "models.providers", {}) or {}
        if not isinstance(raw_providers, Mapping):
            raise ConfigError("models.providers must be an object")
        providers = {pid: _provider(pid, raw, env) for pid, raw in raw_providers.items()}
        primary, fallbacks = _model_selection(lookup(config, "agents.defaults.model"), "agents.defaults.model")
        agents = _agents(config)
        timeout = lookup(config, "agents.defaults.timeoutSeconds")
        catalog = cls(
            providers=providers,
            agents=tuple(agents),
            default_model=primary,
            default_fallbacks=fallbacks or (),
            run_timeout_s=_optional_int(timeout or None, "agents.defaults.timeoutSeconds") or DEFAULT_RUN_TIMEOUT_S,
            main_key=_main_key(lookup(config, "session.mainKey")),
            scope="global" if lookup(config, "session.scope") == "global" else "per-sender",
            builtins={pid: _builtin(pid, env) for pid in BUILTIN_PROVIDERS},
        )
        warnings = [f"{where}: {catalog.why_unavailable(ref)}" for where, ref in catalog._model_refs() if catalog.why_unavailable(ref)]
        return attrs.evolve(catalog, warnings=tuple(dict.fromkeys(warnings)))

    def _model_refs(self) -> list[tuple[str, str]]:
        refs = [("agents.defaults.model", ref) for ref in (self.default_model, *self.default_fallbacks) if ref]
        for agent in self.agents:
            refs.extend((f"agents {agent.id} model", ref) for ref in (agent.model, *(agent.fallbacks or ())) if ref)
        return refs

    def provider(self, provider_id: str) -> ProviderConfig | None:
        """A declared provider, else the built-in one of that id."""
        return self.providers.get(provider_id) or self.builtins.get(provider_id)

    def why_unavailable(self, ref: str) -> str | None:
        """Why ``ref`` cannot be used for a run, or None when it can."""
        if self.resolve(ref) is not None:
            return None
        provider_id, slash, model_id = ref.partition("/")
        if not slash:
            return f"unknown model {ref!r} (write provider/model, or declare it under models.providers)"
        provider = self.provider(provider_id)
        if provider is None:
            known = ", ".join(sorted(BUILTIN_PROVIDERS))
            return f"unknown model {ref!r}: provider {provider_id!r} is not built in here ({known}) and not declared under models.providers"
        if provider.unavailable:
            return f"model {ref!r} cannot be used: {provider.unavailable}"
        return f"unknown model {ref!r}: models.providers.{provider_id}.models does not list {model_id!r}"

    @property
    def default_agent_id(self) -> str:
        for agent in self.agents:
            if agent.default:
                return agent.id
        return DEFAULT_AGENT_ID

    def agent(self, agent_id: str | None) -> AgentConfig | None:
        wanted = normalize_agent_id(agent_id) if agent_id else self.default_agent_id
        for agent in self.agents:
            if agent.id == wanted:
                return agent
        return None

    def resolve(self, ref: str) -> ModelRef | None:
        """``provider/model`` (or a bare model id found in exactly one provider), when usable."""
        provider_id, slash, model_id = ref.partition("/")
        if slash:
            provider = self.provider(provider_id)
            if provider is None or provider.unavailable:
                return None
            # A built-in provider serves any model id (declared models add limits and names).
            model = provider.model(model_id) or (ModelConfig(model_id) if not provider.models or provider.builtin else None)
            return ModelRef(provider, model) if model else None
        matches = [ModelRef(p, m) for p in self.providers.values() if not p.unavailable for m in p.models if m.id == ref]
        return matches[0] if len(matches) == 1 else None

    def candidates(self, agent_id: str | None, override: str | None = None) -> list[str]:
        """Model refs to try for a run, in order: override or primary, then fallbacks."""
        agent = self.agent(agent_id)
        primary = override or (agent.model if agent and agent.model else None) or self.default_model
        fallbacks = agent.fallbacks if agent and agent.fallbacks is not None else self.default_fallbacks
        if primary is None:
            primary = next((f"{p.id}/{m.id}" for p in self.providers.values() for m in p.models), None)
        refs = [primary] if primary else []
        refs.extend(ref for ref in fallbacks if ref not in refs)
        return refs

    def models(self) -> list[dict[str, Any]]:
        """``models.list`` entries: declared models, then the configured models of built-in
        providers that can be used (``openai/gpt-4.1-mini`` with ``OPENAI_API_KEY`` set)."""
        entries = []
        for provider in self.providers.values():
            if provider.unavailable:
                continue
            for model in provider.models:
                entry: dict[str, Any] = {"id": model.id, "name": model.name or model.id, "provider": provider.id}
                if model.context_window:
                    entry["contextWindow"] = model.context_window
                if model.max_tokens:
                    entry["maxTokens"] = model.max_tokens
                entries.append(entry)
        listed = {(entry["provider"], entry["id"]) for entry in entries}
        for _, ref in self._model_refs():
            target = self.resolve(ref)
            if target is not None and (target.provider.id, target.model.id) not in listed:
                listed.add((target.provider.id, target.model.id))
                entries.append({"id": target.model.id, "name": target.model.id, "provider": target.provider.id})
        return entries
