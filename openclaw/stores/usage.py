"""The usage ledger: tokens each answered run spent, kept in the session database.

``openclaw gateway usage-cost`` (``usage.cost``) asks what the last N days cost. The answer comes
from recorded runs: whenever the session store appends an assistant message that carries
``usage`` (a model answered), it also writes one ledger row in the same transaction, so the
ledger and the transcripts cannot disagree, and resetting or deleting a session does not erase
what was spent. Costs are computed at read time from the per-million-token prices the config
declares for the model (``models.providers.<id>.models[].cost``); rows whose model has no price
are counted as ``missingCostEntries`` rather than guessed.
"""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, UTC
from typing import Any
from collections.abc import Mapping

from ..sessions.keys import agent_id_of

MIGRATION = """
    CREATE TABLE usage_ledger (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        agent_id TEXT,
        session_key TEXT NOT NULL,
        provider TEXT,
        model TEXT,
        input INTEGER NOT NULL DEFAULT 0,
        output INTEGER NOT NULL DEFAULT 0,
        cache_read INTEGER NOT NULL DEFAULT 0,
        cache_write INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_ledger_by_time ON usage_ledger(ts)
"""

TOKEN_FIELDS = ("input", "output", "cacheRead", "cacheWrite", "totalTokens")
COST_FIELDS = ("totalCost", "inputCost", "outputCost", "cacheReadCost", "cacheWriteCost")
MAX_DAYS = 366
DAY_MS = 86_400_000


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def record_message(connection: sqlite3.Connection, session_key: str, message: Mapping[str, Any]) -> None:
    """Write a ledger row for an assistant message with ``usage`` (inside the caller's transaction)."""
    usage = message.get("usage")
    if message.get("role") != "assistant" or not isinstance(usage, Mapping):
        return
    counts = [_count(usage.get(field)) for field in ("input", "output", "cacheRead", "cacheWrite", "totalTokens")]
    if not any(counts):
        return
    if not counts[4]:
        counts[4] = sum(counts[:4])
    stamp = message.get("timestamp")
    connection.execute(
        "INSERT INTO usage_ledger (ts, agent_id, session_key, provider, model, input, output, cache_read, cache_write, total)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (stamp if isinstance(stamp, int) else 0, agent_id_of(session_key), session_key, message.get("provider"), message.get("model"), *counts),
    )


def _zero() -> dict[str, Any]:
    return {**{field: 0 for field in TOKEN_FIELDS}, **{field: 0 for field in COST_FIELDS}, "missingCostEntries": 0}


def _add(into: dict[str, Any], row: tuple[Any, ...], price: Mapping[str, Any] | None) -> None:
    _, _, _, inp, out, cache_read, cache_write, total = row
    into["input"] += inp
    into["output"] += out
    into["cacheRead"] += cache_read
    into["cacheWrite"] += cache_write
    into["totalTokens"] += total
    if price is None:
        into["missingCostEntries"] += 1
        return
    parts = {
        "inputCost": inp * _rate(price, "input"),
        "outputCost": out * _rate(price, "output"),
        "cacheReadCost": cache_read * _rate(price, "cacheRead"),
        "cacheWriteCost": cache_write * _rate(price, "cacheWrite"),
    }
    for field, value in parts.items():
        into[field] += value / 1_000_000
    into["totalCost"] += sum(parts.values()) / 1_000_000


def _rate(price: Mapping[str, Any], field: str) -> float:
    value = price.get(field)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def cost_summary(
    connection: sqlite3.Connection,
    now_ms: int,
    days: int,
    prices: Mapping[tuple[str, str], Mapping[str, Any]],
    agent_id: str | None = None,
) -> dict[str, Any]:
    """The ``usage.cost`` payload for the ``days`` UTC days ending today (blocking; run off the reactor)."""
    days = max(1, min(MAX_DAYS, days))
    today = datetime.fromtimestamp(now_ms / 1000, UTC).date()
    first = today - timedelta(days=days - 1)
    since = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1000)
    query = "SELECT ts, provider, model, input, output, cache_read, cache_write, total FROM usage_ledger WHERE ts >= ?"
    args: tuple[Any, ...] = (since,)
    if agent_id is not None:
        query += " AND agent_id = ?"
        args += (agent_id,)
    daily = {(first + timedelta(days=offset)).isoformat(): _zero() for offset in range(days)}
    totals = _zero()
    for row in connection.execute(query, args):
        day = datetime.fromtimestamp(row[0] / 1000, UTC).date().isoformat()
        price = prices.get((row[1] or "", row[2] or ""))
        if day in daily:
            _add(daily[day], row, price)
        _add(totals, row, price)
    return {
        "updatedAt": now_ms,
        "days": days,
        "daily": [{"date": date, **_rounded(values)} for date, values in daily.items()],
        "totals": _rounded(totals),
    }


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {key: round(value, 6) if isinstance(value, float) else value for key, value in values.items()}


def configured_prices(config: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """``{(provider, model): cost}`` from ``models.providers.<id>.models[].cost`` in the config."""
    prices: dict[tuple[str, str], Mapping[str, Any]] = {}
    providers = (config.get("models") or {}).get("providers") if isinstance(config.get("models"), Mapping) else None
    if not isinstance(providers, Mapping):
        return prices
    for provider_id, provider in providers.items():
        models = provider.get("models") if isinstance(provider, Mapping) else None
        for model in models if isinstance(models, list) else []:
            if isinstance(model, Mapping) and isinstance(model.get("id"), str) and isinstance(model.get("cost"), Mapping):
                prices[(provider_id, model["id"])] = model["cost"]
    return prices
