"""Built-in providers (``openai/…``, ``anthropic/…``, ``openrouter/…``, ``ollama/…``, ``lmstudio/…``)
stream through ``chat.send``, ``agent`` and ``/v1/chat/completions`` against a local fake of each
API flavour, with keys only from the environment, and never shown.

Each test declares nothing but the provider's ``baseUrl`` (pointing at the fake), as a user
behind a proxy would: the API, the key's environment variable and the headers are the built-in
provider's.
"""
from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from openclaw.security.scopes import ADMIN, READ, WRITE

from .support.gateway import TOKEN, start_gateway
from .support.upstream import FakeUpstream
from .support.wsclient import connect

KEYS = {"OPENAI_API_KEY": "sk-openai-secret-1", "ANTHROPIC_API_KEY": "sk-ant-secret-2", "OPENROUTER_API_KEY": "sk-or-secret-3"}
ENDPOINTS = {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": True}}}}}


def chat_final(frame: Any) -> bool:
    return frame.get("type") == "event" and frame.get("event") == "chat" and (frame.get("payload") or {}).get("state") in ("final", "error")


class _FlavourBase:
    """The tests every flavour runs (mixed into a TestCase per flavour below)."""

    timeout = 20
    provider = ""
    model = ""
    use_root_url = False  # Anthropic and Ollama take the server root, OpenAI-style ones ``…/v1``

    @inlineCallbacks
    def setUp(self):
        self.logged: list[str] = []
        globalLogPublisher.addObserver(self._observe)
        self.addCleanup(globalLogPublisher.removeObserver, self._observe)
        self.upstream = FakeUpstream().start(self)
        base_url = self.upstream.root_url if self.use_root_url else self.upstream.base_url
        config = {
            "models": {"providers": {self.provider: {"baseUrl": base_url}}},
            "agents": {"defaults": {"model": f"{self.provider}/{self.model}"}},
            **ENDPOINTS,
        }
        self.running = yield start_gateway(self, config=config, provider_env=dict(KEYS))
        self.client, hello = yield connect(self, self.running.url, scopes=[ADMIN, READ, WRITE])
        self.assertTrue(hello["ok"], hello)

    def _observe(self, event: dict) -> None:
        self.logged.append(formatEvent(event) + repr(event.get("log_failure", "")))

    def assert_request(self, sent: dict[str, Any]) -> None:
        raise NotImplementedError

    def assert_no_keys(self, *texts: Any) -> None:
        for text in texts:
            for key in KEYS.values():
                self.assertNotIn(key, json.dumps(text, default=str))

    @inlineCallbacks
    def test_chat_send_streams(self):
        response = yield self.client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": "c1"})
        self.assertTrue(response["ok"], response)
        final = yield self.client.next_matching(chat_final, limit=200)
        self.assertEqual(final["payload"]["state"], "final", final)
        self.assertEqual(final["payload"]["message"]["content"], [{"type": "text", "text": "Hello there!"}])
        self.assert_request(self.upstream.requests[0])
        config = yield self.client.request("config.get", {})
        self.assert_no_keys(config, final, self.logged)

    @inlineCallbacks
    def test_agent_streams(self):
        response = yield self.client.request("agent", {"message": "hi", "idempotencyKey": "a1"}, request_id="agent-1")
        self.assertTrue(response["ok"], response)
        done = yield self.client.next_matching(
            lambda f: f.get("type") == "res" and f.get("id") == "agent-1" and (f.get("payload") or {}).get("status") != "accepted",
            limit=200,
        )
        self.assertEqual(done["payload"]["status"], "ok", done)
        self.assertEqual(done["payload"]["result"]["payloads"][0]["text"], "Hello there!")
        self.assert_request(self.upstream.requests[0])

    @inlineCallbacks
    def test_chat_completions_streams(self):
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield treq.post(
            self.running.http_url + "/v1/chat/completions",
            json.dumps({"model": "openclaw", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={"Authorization": [f"Bearer {TOKEN}"], "Content-Type": ["application/json"]},
            pool=pool,
        )
        self.assertEqual(response.code, 200)
        body = (yield treq.content(response)).decode()
        chunks = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
        text = "".join((chunk["choices"][0]["delta"].get("content") or "") for chunk in chunks if chunk.get("choices"))
        self.assertEqual(text, "Hello there!")
        self.assert_request(self.upstream.requests[0])
        self.assert_no_keys(body)

    @inlineCallbacks
    def test_upstream_error_names_no_key(self):
        self.upstream.behaviour.mode = "error"
        self.upstream.behaviour.status = 401
        # Upstreams quote keys in errors (OpenAI masks the middle): neither whole nor masked here.
        keys = " ".join(KEYS.values())
        self.upstream.behaviour.message = f"Incorrect API key provided: {keys} sk-ope*********et-1."
        yield self.client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": "e1"})
        final = yield self.client.next_matching(chat_final, limit=200)
        self.assertEqual(final["payload"]["state"], "error")
        self.assertIn("HTTP 401", final["payload"]["errorMessage"])
        self.assertIn("Incorrect API key provided: [key hidden]", final["payload"]["errorMessage"])
        self.assertNotIn("sk-ope", final["payload"]["errorMessage"])
        self.assert_no_keys(final, self.logged)
        history = yield self.client.request("chat.history", {"sessionKey": "main"})
        self.assert_no_keys(history)


class OpenAIResponsesTests(_FlavourBase, TestCase):
    """``openai/…``: the Responses API, ``Authorization: Bearer $OPENAI_API_KEY``."""

    provider, model = "openai", "gpt-4.1-mini"

    def assert_request(self, sent):
        self.assertEqual(sent["path"], "/v1/responses")
        self.assertEqual(sent["authorization"], "Bearer sk-openai-secret-1")
        self.assertEqual(sent["body"]["model"], "gpt-4.1-mini")
        self.assertIs(sent["body"]["stream"], True)
        self.assertEqual(sent["body"]["input"][-1], {"role": "user", "content": "hi"})


class AnthropicMessagesTests(_FlavourBase, TestCase):
    """``anthropic/…``: the Messages API, ``x-api-key`` and ``anthropic-version``, no Bearer."""

    provider, model, use_root_url = "anthropic", "claude-sonnet-4-5", True

    def assert_request(self, sent):
        self.assertEqual(sent["path"], "/v1/messages")
        self.assertEqual(sent["x-api-key"], "sk-ant-secret-2")
        self.assertEqual(sent["anthropic-version"], "2023-06-01")
        self.assertEqual(sent["authorization"], "")
        body = sent["body"]
        self.assertEqual(body["model"], "claude-sonnet-4-5")
        self.assertIs(body["stream"], True)
        self.assertGreater(body["max_tokens"], 0)
        self.assertEqual(body["messages"][-1], {"role": "user", "content": "hi"})
        self.assertTrue(all(m["role"] in ("user", "assistant") for m in body["messages"]))


class OpenRouterTests(_FlavourBase, TestCase):
    """``openrouter/vendor/model``: Chat Completions with ``$OPENROUTER_API_KEY``."""

    provider, model = "openrouter", "meta-llama/llama-3.3-70b"

    def assert_request(self, sent):
        self.assertEqual(sent["path"], "/v1/chat/completions")
        self.assertEqual(sent["authorization"], "Bearer sk-or-secret-3")
        self.assertEqual(sent["body"]["model"], "meta-llama/llama-3.3-70b")


class OllamaTests(_FlavourBase, TestCase):
    """``ollama/…``: Ollama's native ``/api/chat`` (JSON lines), no key."""

    provider, model, use_root_url = "ollama", "llama3.2", True

    def assert_request(self, sent):
        self.assertEqual(sent["path"], "/api/chat")
        self.assertEqual(sent["authorization"], "")
        self.assertEqual(sent["body"]["model"], "llama3.2")
        self.assertIs(sent["body"]["stream"], True)


class LMStudioTests(_FlavourBase, TestCase):
    """``lmstudio/…``: LM Studio's OpenAI-compatible server, no key."""

    provider, model = "lmstudio", "qwen/qwen3.5-9b"

    def assert_request(self, sent):
        self.assertEqual(sent["path"], "/v1/chat/completions")
        self.assertEqual(sent["authorization"], "")
        self.assertEqual(sent["body"]["model"], "qwen/qwen3.5-9b")


class MissingKeyTests(TestCase):
    """A built-in provider without its key: the run fails saying which variable to set."""

    timeout = 20

    @inlineCallbacks
    def test_the_error_names_the_variable(self):
        running = yield start_gateway(self, config={"agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5"}}})
        client, hello = yield connect(self, running.url, scopes=[ADMIN, READ, WRITE])
        yield client.request("chat.send", {"sessionKey": "main", "message": "hi", "idempotencyKey": "m1"})
        # The run fails at once: its events may come before the answer (kept in ``skipped``).
        final = next((f for f in client.skipped if chat_final(f)), None) or (yield client.next_matching(chat_final, limit=200))
        self.assertEqual(final["payload"]["state"], "error")
        self.assertIn("set ANTHROPIC_API_KEY", final["payload"]["errorMessage"])


class KeysInTheFileTests(TestCase):
    """A key written in the file (``env.vars`` or ``models.providers.*.apiKey``) reads redacted."""

    def test_config_get_view_hides_them(self):
        from openclaw.config.redaction import SENTINEL, redact

        config = {
            "env": {"vars": {"OPENAI_API_KEY": "sk-file-1", "ANTHROPIC_API_KEY": "sk-file-2", "OPENROUTER_API_KEY": "sk-file-3"}},
            "models": {"providers": {"anthropic": {"apiKey": "sk-file-4"}}},
        }
        shown = redact(config)
        self.assertEqual(set(shown["env"]["vars"].values()), {SENTINEL})
        self.assertEqual(shown["models"]["providers"]["anthropic"]["apiKey"], SENTINEL)
