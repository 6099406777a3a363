"""Streaming clients for OpenAI-compatible model servers."""
