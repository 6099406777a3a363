"""Agents and model providers as the config file declares them.

``models.providers.<id>`` describes OpenAI-compatible servers; ``agents.defaults.model`` and
``agents.list[].model`` pick ``<provider>/<model>`` refs with fallbacks. The catalog is an
immutable value built from the config mapping, so the config issue's hot reload can swap in a new
one between runs without touching runs already streaming.
"""
from __future__ import annotations

from typing import Any, Mapping

import attrs

from ..config.loader import ConfigError, lookup
from ..sessions.keys import DEFAULT_AGENT_ID, DEFAULT_MAIN_KEY, normalize_agent_id

API_COMPLETIONS = "openai-completions"
API_RESPONSES = "openai-responses"
SUPPORTED_APIS = (API_COMPLETIONS, API_RESPONSES)
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


def _provider(provider_id: str, raw: Any) -> ProviderConfig:
    where = f"models.providers.{provider_id}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    base_url = raw.get("baseUrl")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.baseUrl must be an http(s) URL")
    api = raw.get("api", API_COMPLETIONS)
    if api not in SUPPORTED_APIS:
        raise ConfigError(f"{where}.api must be one of {', '.join(SUPPORTED_APIS)}, not {api!r}")
    api_key = raw.get("apiKey")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigError(f"{where}.apiKey must be a string")
    headers = raw.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}.headers must map header names to strings")
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
        id=provider_id, base_url=base_url.rstrip("/"), api=api, api_key=api_key or None, headers=dict(headers), models=tuple(models)
    )


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where} must be a positive integer")
    return value


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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Catalog":
        """Build the catalog, or raise ConfigError naming the offending key."""
        raw_providers = lookup(config, "models.providers", {}) or {}
        if not isinstance(raw_providers, Mapping):
            raise ConfigError("models.providers must be an object")
        providers = {pid: _provider(pid, raw) for pid, raw in raw_providers.items()}
        primary, fallbacks = _model_selection(lookup(config, "agents.defaults.model"), "agents.defaults.model")
        agents = []
        raw_agents = lookup(config, "agents.list", []) or []
        if not isinstance(raw_agents, list):
            raise ConfigError("agents.list must be a list")
        for index, raw in enumerate(raw_agents):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not raw["id"].strip():
                raise ConfigError(f"agents.list[{index}] needs a string id")
            model, agent_fallbacks = _model_selection(raw.get("model"), f"agents.list[{index}].model")
            agents.append(
                AgentConfig(
                    id=normalize_agent_id(raw["id"]),
                    name=raw.get("name"),
                    model=model,
                    fallbacks=agent_fallbacks,
                    identity=raw.get("identity") if isinstance(raw.get("identity"), Mapping) else None,
                    default=raw.get("default") is True,
                )
            )
        if not agents:
            agents.append(AgentConfig(DEFAULT_AGENT_ID, default=True))
        elif not any(agent.default for agent in agents):
            agents[0] = attrs.evolve(agents[0], default=True)
        timeout = lookup(config, "agents.defaults.timeoutSeconds")
        catalog = cls(
            providers=providers,
            agents=tuple(agents),
            default_model=primary,
            default_fallbacks=fallbacks or (),
            run_timeout_s=_optional_int(timeout, "agents.defaults.timeoutSeconds") or DEFAULT_RUN_TIMEOUT_S,
            main_key=_main_key(lookup(config, "session.mainKey")),
            scope="global" if lookup(config, "session.scope") == "global" else "per-sender",
        )
        for ref in (primary, *(fallbacks or ())):
            if ref and catalog.resolve(ref) is None:
                raise ConfigError(f"agents.defaults.model: unknown model {ref!r} (declare it under models.providers)")
        for index, agent in enumerate(catalog.agents):
            for ref in (agent.model, *(agent.fallbacks or ())):
                if ref and catalog.resolve(ref) is None:
                    raise ConfigError(f"agents.list[{index}].model: unknown model {ref!r} (declare it under models.providers)")
        return catalog

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
        """``provider/model`` (or a bare model id found in exactly one provider)."""
        provider_id, slash, model_id = ref.partition("/")
        if slash:
            provider = self.providers.get(provider_id)
            if provider is None:
                return None
            model = provider.model(model_id) or (ModelConfig(model_id) if not provider.models else None)
            return ModelRef(provider, model) if model else None
        matches = [ModelRef(p, m) for p in self.providers.values() for m in p.models if m.id == ref]
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
        """``models.list`` entries."""
        entries = []
        for provider in self.providers.values():
            for model in provider.models:
                entry: dict[str, Any] = {"id": model.id, "name": model.name or model.id, "provider": provider.id}
                if model.context_window:
                    entry["contextWindow"] = model.context_window
                if model.max_tokens:
                    entry["maxTokens"] = model.max_tokens
                entries.append(entry)
        return entries
