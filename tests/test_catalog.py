"""Catalog.from_config: providers, models, agents and the order models are tried in."""
from __future__ import annotations

import copy

from twisted.trial.unittest import TestCase

from openclaw.agents.catalog import (
    API_COMPLETIONS,
    API_RESPONSES,
    DEFAULT_RUN_TIMEOUT_S,
    Catalog,
)
from openclaw.config.loader import ConfigError

BASE = {
    "models": {
        "providers": {
            "local": {
                "baseUrl": "http://127.0.0.1:8000/v1/",
                "apiKey": "sk-local",
                "models": [{"id": "small", "name": "Small", "contextWindow": 8192, "maxTokens": 512}, {"id": "big"}],
            },
            "cloud": {
                "baseUrl": "https://api.example.com/v1",
                "api": "openai-responses",
                "headers": {"X-Team": "a"},
                "models": [{"id": "gpt"}, {"id": "shared"}],
            },
            "other": {"baseUrl": "https://other.example/v1", "models": [{"id": "shared"}]},
        }
    },
    "agents": {"defaults": {"model": {"primary": "local/small", "fallbacks": ["cloud/gpt", "local/big"]}}},
}


def config(**changes):
    """A deep copy of BASE with dotted keys set (``None`` deletes)."""
    result = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = result
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return result


class ParseTests(TestCase):
    def test_providers_and_models(self):
        catalog = Catalog.from_config(BASE)
        local = catalog.providers["local"]
        self.assertEqual(local.base_url, "http://127.0.0.1:8000/v1")  # trailing slash trimmed
        self.assertEqual(local.api, API_COMPLETIONS)
        self.assertEqual(local.api_key, "sk-local")
        self.assertEqual(local.model("small").context_window, 8192)
        self.assertEqual(local.model("small").max_tokens, 512)
        self.assertIsNone(local.model("big").max_tokens)
        cloud = catalog.providers["cloud"]
        self.assertEqual(cloud.api, API_RESPONSES)
        self.assertIsNone(cloud.api_key)
        self.assertEqual(dict(cloud.headers), {"X-Team": "a"})
        self.assertEqual(catalog.default_model, "local/small")
        self.assertEqual(catalog.default_fallbacks, ("cloud/gpt", "local/big"))
        self.assertEqual(catalog.run_timeout_s, DEFAULT_RUN_TIMEOUT_S)

    def test_api_key_not_in_repr(self):
        self.assertNotIn("sk-local", repr(Catalog.from_config(BASE)))

    def test_empty_config(self):
        catalog = Catalog.from_config({})
        self.assertEqual(dict(catalog.providers), {})
        self.assertEqual(catalog.default_agent_id, "main")
        self.assertEqual(catalog.candidates(None), [])
        self.assertEqual(catalog.models(), [])

    def test_model_as_plain_string(self):
        catalog = Catalog.from_config(config(agents__defaults__model="cloud/gpt"))
        self.assertEqual(catalog.default_model, "cloud/gpt")
        self.assertEqual(catalog.default_fallbacks, ())

    def test_timeout_seconds(self):
        self.assertEqual(Catalog.from_config(config(agents__defaults__timeoutSeconds=42)).run_timeout_s, 42)
        # 0 is valid in the reference (no limit there); here it means the default limit.
        self.assertEqual(Catalog.from_config(config(agents__defaults__timeoutSeconds=0)).run_timeout_s, DEFAULT_RUN_TIMEOUT_S)
        self.assertRaises(ConfigError, Catalog.from_config, config(agents__defaults__timeoutSeconds="10"))

    def test_models_list_entries(self):
        entries = Catalog.from_config(BASE).models()
        self.assertEqual(
            entries[0], {"id": "small", "name": "Small", "provider": "local", "contextWindow": 8192, "maxTokens": 512}
        )
        self.assertEqual(entries[1], {"id": "big", "name": "big", "provider": "local"})
        self.assertEqual([(e["provider"], e["id"]) for e in entries], [("local", "small"), ("local", "big"), ("cloud", "gpt"), ("cloud", "shared"), ("other", "shared")])


class ConfigErrorTests(TestCase):
    def assertConfigError(self, cfg, *fragments):
        error = self.assertRaises(ConfigError, Catalog.from_config, cfg)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_providers_not_an_object(self):
        self.assertConfigError({"models": {"providers": ["x"]}}, "models.providers")

    def test_provider_not_an_object(self):
        self.assertConfigError(config(models__providers__local="http://x"), "models.providers.local")

    def test_bad_base_url(self):
        self.assertConfigError(config(models__providers__local__baseUrl="ftp://x"), "models.providers.local.baseUrl")
        self.assertConfigError(config(models__providers__local__baseUrl="127.0.0.1:8000"), "baseUrl")
        self.assertConfigError(config(models__providers__local__baseUrl=8000), "baseUrl")

    def test_models_not_a_list(self):
        # Also primary/fallbacks no longer resolve, but the models error must come first.
        for bad in ({"id": "small"}, "small", 5):
            self.assertConfigError(config(models__providers__local__models=bad), "models.providers.local.models must be a list")

    def test_model_without_id(self):
        self.assertConfigError(config(models__providers__local__models=[{"name": "x"}]), "models.providers.local.models[0]")
        self.assertConfigError(config(models__providers__local__models=[{"id": ""}]), "models[0]")
        self.assertConfigError(config(models__providers__local__models=["small"]), "models[0]")

    def test_bad_context_window_and_max_tokens(self):
        self.assertConfigError(config(models__providers__local__models=[{"id": "small", "contextWindow": -1}]), "contextWindow")
        self.assertConfigError(config(models__providers__local__models=[{"id": "small", "maxTokens": True}]), "maxTokens")

    def test_main_key_must_be_a_string(self):
        self.assertConfigError(config(session={"mainKey": 7}), "session.mainKey")


    def test_bad_model_selection_types(self):
        self.assertConfigError(config(agents__defaults__model=5), "agents.defaults.model")
        self.assertConfigError(config(agents__defaults__model={"primary": 5}), "primary")
        self.assertConfigError(config(agents__defaults__model={"primary": "local/small", "fallbacks": "cloud/gpt"}), "fallbacks")
        self.assertConfigError(config(agents__defaults__model={"primary": "local/small", "fallbacks": [1]}), "fallbacks")

    def test_agents_list(self):
        self.assertConfigError(config(agents__list={"id": "a"}), "agents.list")
        self.assertConfigError(config(agents__list=[{"name": "no id"}]), "agents.list[0]")
        self.assertConfigError(config(agents__list=[{"id": "   "}]), "agents.list[0]")
        self.assertConfigError(config(agents__list=[{"id": "a", "model": 3}]), "agents.list[0].model")


class ResolveTests(TestCase):
    def setUp(self):
        self.catalog = Catalog.from_config(BASE)

    def test_provider_slash_model(self):
        target = self.catalog.resolve("cloud/gpt")
        self.assertEqual(target.ref, "cloud/gpt")
        self.assertEqual(target.provider.id, "cloud")
        self.assertEqual(target.model.id, "gpt")

    def test_unknown(self):
        self.assertIsNone(self.catalog.resolve("cloud/nope"))
        self.assertIsNone(self.catalog.resolve("nowhere/gpt"))
        self.assertIsNone(self.catalog.resolve("nope"))

    def test_bare_model_id_unique(self):
        self.assertEqual(self.catalog.resolve("gpt").ref, "cloud/gpt")

    def test_bare_model_id_ambiguous(self):
        self.assertIsNone(self.catalog.resolve("shared"))
        self.assertEqual(self.catalog.resolve("other/shared").ref, "other/shared")

    def test_provider_without_model_list_accepts_any_model(self):
        catalog = Catalog.from_config({"models": {"providers": {"open": {"baseUrl": "http://h/v1"}}}, "agents": {"defaults": {"model": "open/anything"}}})
        target = catalog.resolve("open/anything")
        self.assertEqual(target.ref, "open/anything")
        self.assertIsNone(target.model.context_window)
        self.assertIsNone(catalog.resolve("anything"))  # bare ids only match declared models


class CandidateTests(TestCase):
    def setUp(self):
        cfg = config(
            agents__list=[
                {"id": "main"},
                {"id": "Coder", "model": {"primary": "cloud/gpt", "fallbacks": ["local/small"]}},
                {"id": "solo", "model": {"primary": "local/big", "fallbacks": []}},
                {"id": "plain", "model": "cloud/shared"},
            ]
        )
        self.catalog = Catalog.from_config(cfg)

    def test_default_agent_uses_defaults(self):
        self.assertEqual(self.catalog.default_agent_id, "main")
        self.assertEqual(self.catalog.candidates(None), ["local/small", "cloud/gpt", "local/big"])
        self.assertEqual(self.catalog.candidates("main"), ["local/small", "cloud/gpt", "local/big"])

    def test_agent_model_and_fallbacks(self):
        self.assertEqual(self.catalog.agent("coder").id, "coder")  # ids are normalized
        self.assertEqual(self.catalog.candidates("coder"), ["cloud/gpt", "local/small"])

    def test_agent_empty_fallbacks_means_none(self):
        self.assertEqual(self.catalog.candidates("solo"), ["local/big"])

    def test_agent_without_fallbacks_inherits_defaults(self):
        self.assertEqual(self.catalog.candidates("plain"), ["cloud/shared", "cloud/gpt", "local/big"])

    def test_override_first_and_not_repeated(self):
        self.assertEqual(self.catalog.candidates("main", "cloud/gpt"), ["cloud/gpt", "local/big"])
        self.assertEqual(self.catalog.candidates("coder", "other/shared"), ["other/shared", "local/small"])

    def test_first_declared_model_when_no_primary(self):
        catalog = Catalog.from_config(config(agents__defaults=None))
        self.assertEqual(catalog.candidates(None), ["local/small"])

    def test_first_agent_is_default_unless_marked(self):
        self.assertEqual(Catalog.from_config(config(agents__list=[{"id": "a"}, {"id": "b"}])).default_agent_id, "a")
        self.assertEqual(Catalog.from_config(config(agents__list=[{"id": "a"}, {"id": "b", "default": True}])).default_agent_id, "b")

    def test_unknown_agent(self):
        self.assertIsNone(self.catalog.agent("ghost"))


class UnusableModelTests(TestCase):
    """What cannot work is a warning at start-up (a reference config must start), and the run
    that needs it fails saying why: ``why_unavailable``."""

    def warned(self, cfg, *fragments, env=None):
        catalog = Catalog.from_config(cfg, env or {})
        text = "\n".join(catalog.warnings)
        for fragment in fragments:
            self.assertIn(fragment, text)
        return catalog

    def test_unknown_models(self):
        self.warned(config(agents__defaults__model={"primary": "local/huge"}), "local/huge", "does not list 'huge'")
        self.warned(config(agents__defaults__model={"primary": "nowhere/small"}), "'nowhere' is not built in")
        self.warned(config(agents__defaults__model={"primary": "local/small", "fallbacks": ["cloud/nope"]}), "cloud/nope")
        self.warned(config(agents__list=[{"id": "ops", "model": "cloud/nope"}]), "agents ops model", "cloud/nope")
        catalog = self.warned(config(agents__defaults__model={"primary": "shared"}), "unknown model 'shared'")
        self.assertIsNone(catalog.resolve("shared"))  # ambiguous: in two providers

    def test_an_api_not_spoken_here(self):
        catalog = self.warned(config(models__providers__local__api="google-generative-ai"), "'google-generative-ai' is not spoken here")
        self.assertIsNone(catalog.resolve("local/small"))
        self.assertIn("cannot be used", catalog.why_unavailable("local/small"))

    def test_provider_without_base_url_that_is_not_built_in(self):
        catalog = self.warned(config(models__providers__local__baseUrl=None), "has no baseUrl")
        self.assertIsNone(catalog.resolve("local/small"))

    def test_api_key_sources(self):
        ref = {"source": "env", "provider": "default", "id": "LOCAL_KEY"}
        catalog = Catalog.from_config(config(models__providers__local__apiKey=ref), {"LOCAL_KEY": "sk-env"})
        self.assertEqual(catalog.resolve("local/small").provider.api_key, "sk-env")
        self.warned(config(models__providers__local__apiKey=ref), "LOCAL_KEY, which is not set")
        self.warned(config(models__providers__local__apiKey={"source": "file", "provider": "f", "id": "/k"}), "source 'file'")

    def test_headers_that_are_not_strings_are_left_out(self):
        catalog = Catalog.from_config(config(models__providers__cloud__headers={"X-N": 1, "X-S": "s"}))
        self.assertEqual(catalog.resolve("cloud/gpt").provider.headers, {"X-S": "s"})


class BuiltinProviderTests(TestCase):
    """``openai/…``, ``anthropic/…``, ``openrouter/…``, ``ollama/…``, ``lmstudio/…`` without declaring them."""

    def test_openai_with_the_key_in_the_environment(self):
        cfg = {"agents": {"defaults": {"model": "openai/gpt-4.1-mini"}}}
        catalog = Catalog.from_config(cfg, {"OPENAI_API_KEY": "sk-openai"})
        self.assertEqual(catalog.warnings, ())
        target = catalog.resolve("openai/gpt-4.1-mini")
        self.assertEqual((target.provider.base_url, target.provider.api), ("https://api.openai.com/v1", API_RESPONSES))
        self.assertEqual(target.provider.api_key, "sk-openai")
        self.assertNotIn("sk-openai", repr(catalog))

    def test_each_built_in_provider(self):
        env = {"OPENAI_API_KEY": "a", "ANTHROPIC_API_KEY": "b", "OPENROUTER_API_KEY": "c"}
        catalog = Catalog.from_config({}, env)
        expected = {
            "openai/m": ("https://api.openai.com/v1", "openai-responses", "a"),
            "anthropic/m": ("https://api.anthropic.com", "anthropic-messages", "b"),
            "openrouter/vendor/m": ("https://openrouter.ai/api/v1", API_COMPLETIONS, "c"),
            "ollama/llama3.2": ("http://127.0.0.1:11434", "ollama", None),
            "lmstudio/qwen/qwen3.5-9b": ("http://localhost:1234/v1", API_COMPLETIONS, None),
        }
        for ref, (base_url, api, key) in expected.items():
            target = catalog.resolve(ref)
            self.assertEqual((target.provider.base_url, target.provider.api, target.provider.api_key), (base_url, api, key), ref)
        self.assertEqual(catalog.resolve("openrouter/vendor/m").model.id, "vendor/m")

    def test_a_missing_key_is_a_warning_and_the_reason(self):
        cfg = {"agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5"}}}
        catalog = Catalog.from_config(cfg, {})
        self.assertIsNone(catalog.resolve("anthropic/claude-sonnet-4-5"))
        self.assertIn("set ANTHROPIC_API_KEY", catalog.why_unavailable("anthropic/claude-sonnet-4-5"))
        self.assertEqual(len(catalog.warnings), 1)

    def test_key_from_the_config_env_vars(self):
        cfg = {"env": {"vars": {"OPENROUTER_API_KEY": "sk-or"}}}
        self.assertEqual(Catalog.from_config(cfg, {}).resolve("openrouter/x/y").provider.api_key, "sk-or")
        # The process environment wins over the file.
        self.assertEqual(Catalog.from_config(cfg, {"OPENROUTER_API_KEY": "sk-env"}).resolve("openrouter/x/y").provider.api_key, "sk-env")

    def test_a_declared_provider_overrides_only_what_it_sets(self):
        cfg = {"models": {"providers": {"openai": {"baseUrl": "http://127.0.0.1:9/v1"}}}}
        target = Catalog.from_config(cfg, {"OPENAI_API_KEY": "sk-openai"}).resolve("openai/gpt-4.1")
        self.assertEqual((target.provider.base_url, target.provider.api, target.provider.api_key), ("http://127.0.0.1:9/v1", API_RESPONSES, "sk-openai"))
        cfg = {"models": {"providers": {"openai": {"apiKey": "sk-file", "api": "openai-completions", "models": [{"id": "only", "name": "Only"}]}}}}
        catalog = Catalog.from_config(cfg, {"OPENAI_API_KEY": "sk-openai"})
        target = catalog.resolve("openai/only")
        self.assertEqual((target.provider.api, target.provider.api_key), (API_COMPLETIONS, "sk-file"))
        # A built-in provider still serves any model (the reference merges declared models in).
        self.assertEqual(catalog.resolve("openai/other").model.id, "other")
        self.assertIsNone(Catalog.from_config(config(), {}).resolve("local/other"))  # not so a provider of one's own

    def test_agents_entries(self):
        """``agents.entries`` (what the reference's onboarding writes) are agents too."""
        cfg = {"agents": {"entries": {"main": {"name": "Main"}, "ops": {"model": "ollama/llama3", "default": True}}}}
        catalog = Catalog.from_config(cfg, {})
        self.assertEqual([agent.id for agent in catalog.agents], ["main", "ops"])
        self.assertEqual(catalog.default_agent_id, "ops")
        self.assertEqual(catalog.candidates("ops"), ["ollama/llama3"])


class ModelListTests(TestCase):
    def test_configured_built_in_models_are_listed(self):
        cfg = {"agents": {"defaults": {"model": {"primary": "openai/gpt-4.1-mini", "fallbacks": ["anthropic/claude-x"]}}}}
        catalog = Catalog.from_config(cfg, {"OPENAI_API_KEY": "k"})
        # anthropic has no key here: not listed (it cannot be used)
        self.assertEqual(catalog.models(), [{"id": "gpt-4.1-mini", "name": "gpt-4.1-mini", "provider": "openai"}])

    def test_unusable_declared_providers_are_not_listed(self):
        catalog = Catalog.from_config(config(models__providers__local__api="google-generative-ai"))
        self.assertNotIn("local", {entry["provider"] for entry in catalog.models()})
