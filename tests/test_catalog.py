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
        self.assertRaises(ConfigError, Catalog.from_config, config(agents__defaults__timeoutSeconds=0))
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
        self.assertConfigError(config(models__providers__local__baseUrl=None), "baseUrl")
        self.assertConfigError(config(models__providers__local__baseUrl=8000), "baseUrl")

    def test_unknown_api(self):
        self.assertConfigError(config(models__providers__local__api="anthropic-messages"), "models.providers.local.api", "anthropic-messages")

    def test_api_key_must_be_string(self):
        self.assertConfigError(config(models__providers__local__apiKey=123), "apiKey")

    def test_headers_must_be_strings(self):
        self.assertConfigError(config(models__providers__cloud__headers={"X-N": 1}), "headers")
        self.assertConfigError(config(models__providers__cloud__headers=["X-N"]), "headers")

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
        self.assertConfigError(config(models__providers__local__models=[{"id": "small", "maxTokens": 1.5}]), "maxTokens")

    def test_unknown_primary_model(self):
        self.assertConfigError(config(agents__defaults__model={"primary": "local/huge"}), "local/huge", "models.providers")
        self.assertConfigError(config(agents__defaults__model={"primary": "nowhere/small"}), "nowhere/small")

    def test_unknown_fallback_model(self):
        self.assertConfigError(config(agents__defaults__model={"primary": "local/small", "fallbacks": ["cloud/nope"]}), "cloud/nope")

    def test_unknown_agent_model(self):
        """An agent pointing at an undeclared model would fail every run with a misleading error."""
        self.assertConfigError(config(agents__list=[{"id": "ops", "model": "cloud/nope"}]), "agents.list[0].model", "cloud/nope")
        self.assertConfigError(
            config(agents__list=[{"id": "ops", "model": {"primary": "cloud/gpt", "fallbacks": ["x/y"]}}]), "x/y"
        )

    def test_main_key_must_be_a_string(self):
        self.assertConfigError(config(session={"mainKey": 7}), "session.mainKey")

    def test_ambiguous_bare_model_is_unknown(self):
        self.assertConfigError(config(agents__defaults__model={"primary": "shared"}), "shared")

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
