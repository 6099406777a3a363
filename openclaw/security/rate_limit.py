"""Failed-authentication limiter: a sliding window per (remote address, credential kind) (§4.3).

Only failures are counted and a success clears the slate. Loopback is exempt by default so a
local operator cannot lock themselves out while typing a token.
"""
from __future__ import annotations

from collections import deque
from ipaddress import ip_address
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..seams import IAuthRateLimiter
from ..protocol.constants import (
    AUTH_RATE_LIMIT_LOCKOUT_MS,
    AUTH_RATE_LIMIT_MAX_ATTEMPTS,
    AUTH_RATE_LIMIT_WINDOW_MS,
)

MAX_TRACKED_KEYS = 10_000


# What a loopback peer's address reads as almost always: answered without parsing, since
# ``ip_address`` cost about a twentieth of a handshake (called two or three times per connect).
_PLAIN_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    if address in _PLAIN_LOOPBACK:
        return True
    try:
        parsed = ip_address(address.split("%", 1)[0])
    except ValueError:
        return address == "localhost"
    mapped = getattr(parsed, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or parsed).is_loopback


def reported_client_ip(address: str | None) -> str | None:
    """The address shown to operators (pairing requests, ``node.list``): none for loopback, as in
    the reference, where a same-host client has no address worth showing."""
    return None if is_loopback(address) else address


@attrs.define
class _Window:
    failures: deque[float] = attrs.field(factory=deque)
    locked_until: float = 0.0


# Auth attempts from a browser page (a WebSocket with an Origin header) are counted even on
# loopback: any web page the user visits can open ws://127.0.0.1 and guess, so loopback is no
# proof of a local operator there (the reference limits these the same way).
BROWSER_ORIGIN_KIND = "browser-origin"


@implementer(IAuthRateLimiter)
class AuthRateLimiter:
    """Counts failed attempts; ``retry_after_ms`` says how long a locked-out key must wait."""

    on_failure: Any = None  # the metrics hook: called with the kind of every failure

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_attempts: int = AUTH_RATE_LIMIT_MAX_ATTEMPTS,
        window_ms: int = AUTH_RATE_LIMIT_WINDOW_MS,
        lockout_ms: int = AUTH_RATE_LIMIT_LOCKOUT_MS,
        exempt_loopback: bool = True,
    ):
        self._clock = clock
        self._max_attempts = max_attempts
        self._window = window_ms / 1000.0
        self._lockout = lockout_ms / 1000.0
        self._exempt_loopback = exempt_loopback
        self._windows: dict[tuple[str, str], _Window] = {}

    def configure(
        self,
        *,
        exempt_loopback: bool,
        max_attempts: int | None = None,
        window_ms: int | None = None,
        lockout_ms: int | None = None,
    ) -> None:
        """New limits from a reloaded config; counts already made are kept."""
        self._exempt_loopback = exempt_loopback
        self._max_attempts = max_attempts or AUTH_RATE_LIMIT_MAX_ATTEMPTS
        self._window = (window_ms or AUTH_RATE_LIMIT_WINDOW_MS) / 1000.0
        self._lockout = (lockout_ms or AUTH_RATE_LIMIT_LOCKOUT_MS) / 1000.0

    def _exempt(self, address: str | None, kind: str) -> bool:
        return kind != BROWSER_ORIGIN_KIND and self._exempt_loopback and is_loopback(address)

    def retry_after_ms(self, address: str | None, kind: str) -> int | None:
        """Milliseconds left on a lockout, or ``None`` when the key may try."""
        if self._exempt(address, kind):
            return None
        window = self._windows.get((address or "", kind))
        if window is None:
            return None
        remaining = window.locked_until - self._clock.seconds()
        if remaining <= 0:
            return None
        return max(1, int(remaining * 1000))

    def record_failure(self, address: str | None, kind: str) -> None:
        if self.on_failure is not None:
            self.on_failure(kind)  # counted even for exempt addresses: failures are worth seeing
        if self._exempt(address, kind):
            return
        now = self._clock.seconds()
        key = (address or "", kind)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= MAX_TRACKED_KEYS:
                self._prune(now)
            window = self._windows[key] = _Window()
        window.failures.append(now)
        while window.failures and window.failures[0] <= now - self._window:
            window.failures.popleft()
        if len(window.failures) >= self._max_attempts:
            window.locked_until = now + self._lockout
            window.failures.clear()

    def record_success(self, address: str | None, kind: str) -> None:
        self._windows.pop((address or "", kind), None)

    def _prune(self, now: float) -> None:
        """Forget keys with nothing recent, so a scan from many addresses stays bounded."""
        stale = [
            key
            for key, window in self._windows.items()
            if window.locked_until <= now and (not window.failures or window.failures[-1] <= now - self._window)
        ]
        for key in stale:
            del self._windows[key]
        while len(self._windows) >= MAX_TRACKED_KEYS:
            self._windows.pop(next(iter(self._windows)))
