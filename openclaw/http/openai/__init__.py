"""The OpenAI-compatible HTTP API: ``/v1/chat/completions``, ``/v1/responses``, ``/v1/models``."""
