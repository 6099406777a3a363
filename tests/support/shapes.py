"""Error shapes several test modules expect verbatim (the reference's wording, §7)."""
from __future__ import annotations

from typing import Any


def rate_limited_error(retry_after_ms: int) -> dict[str, Any]:
    """A connect refused during a failed-auth lockout: the same shape at every layer."""
    return {
        "code": "INVALID_REQUEST",
        "message": "unauthorized: too many failed authentication attempts (retry later)",
        "details": {
            "code": "AUTH_RATE_LIMITED",
            "authReason": "rate_limited",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "wait_then_retry",
        },
        "retryable": True,
        "retryAfterMs": retry_after_ms,
    }
