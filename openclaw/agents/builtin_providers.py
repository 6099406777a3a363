"""Model providers usable as ``provider/model`` without declaring them, as in the reference.

A reference user writes ``agents.defaults.model: "openai/gpt-4.1-mini"`` and sets
``OPENAI_API_KEY``; nothing else. Each entry here says where that provider is, which API it
speaks and where its key comes from. Base URLs and APIs follow the reference's provider docs:
OpenAI over the Responses API, Anthropic over its Messages API, OpenRouter over Chat
Completions, and the two local servers without a key (LM Studio's OpenAI-compatible ``/v1``,
Ollama's native ``/api/chat``).

A ``models.providers.<id>`` entry with the same id overrides any field it sets (``baseUrl`` to
reach a proxy, ``apiKey``, ``api``, ``headers``, ``models``); the rest stays as here.
"""
from __future__ import annotations

import attrs

API_COMPLETIONS = "openai-completions"
API_RESPONSES = "openai-responses"
API_ANTHROPIC = "anthropic-messages"
API_OLLAMA = "ollama"
SUPPORTED_APIS = (API_COMPLETIONS, API_RESPONSES, API_ANTHROPIC, API_OLLAMA)


@attrs.frozen
class BuiltinProvider:
    id: str
    base_url: str
    api: str
    key_env: tuple[str, ...]  # environment variables holding the key, first set wins
    needs_key: bool = True


BUILTIN_PROVIDERS: dict[str, BuiltinProvider] = {
    provider.id: provider
    for provider in (
        BuiltinProvider("openai", "https://api.openai.com/v1", API_RESPONSES, ("OPENAI_API_KEY",)),
        BuiltinProvider("anthropic", "https://api.anthropic.com", API_ANTHROPIC, ("ANTHROPIC_API_KEY",)),
        BuiltinProvider("openrouter", "https://openrouter.ai/api/v1", API_COMPLETIONS, ("OPENROUTER_API_KEY",)),
        BuiltinProvider("ollama", "http://127.0.0.1:11434", API_OLLAMA, ("OLLAMA_API_KEY",), needs_key=False),
        BuiltinProvider("lmstudio", "http://localhost:1234/v1", API_COMPLETIONS, ("LM_API_TOKEN",), needs_key=False),
    )
}


def key_env_names() -> tuple[str, ...]:
    """Every environment variable a built-in provider reads its key from."""
    return tuple(name for provider in BUILTIN_PROVIDERS.values() for name in provider.key_env)
