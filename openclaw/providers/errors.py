"""How an upstream model call can fail, and which failures a fallback model may retry."""
from __future__ import annotations

# ``errorKind`` values the ``chat`` error event carries (protocol §6.5).
KIND_TIMEOUT = "timeout"
KIND_RATE_LIMIT = "rate_limit"
KIND_CONTEXT_LENGTH = "context_length"
KIND_REFUSAL = "refusal"
KIND_UNKNOWN = "unknown"


class ProviderError(Exception):
    """An upstream failure, already phrased for the user.

    ``retryable`` marks what the issue lists as fallback triggers: connection errors, 429 and
    5xx. A failure after text has streamed is never retried (the user has seen part of it).
    """

    def __init__(self, message: str, *, kind: str = KIND_UNKNOWN, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retryable = retryable

    @classmethod
    def for_status(cls, status: int, detail: str, provider: str) -> ProviderError:
        text = f"{provider} returned HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429:
            return cls(text, kind=KIND_RATE_LIMIT, status=status, retryable=True)
        if status >= 500:
            return cls(text, status=status, retryable=True)
        lowered = detail.lower()
        if "context" in lowered and ("length" in lowered or "window" in lowered or "too long" in lowered):
            return cls(text, kind=KIND_CONTEXT_LENGTH, status=status)
        return cls(text, status=status)


class ProviderNotConfigured(ProviderError):
    def __init__(self, message: str):
        super().__init__(message, kind=KIND_UNKNOWN)


class StreamAborted(Exception):
    """The caller cancelled the stream (``chat.abort``, run timeout, client gone)."""
