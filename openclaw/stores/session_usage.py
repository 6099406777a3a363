"""``sessions.usage``: the usage page's per-session token and cost report, from the usage ledger.

Each answered run wrote one ledger row (``stores/usage.py``); this groups the rows of a UTC date
range by session and adds the page's aggregates (by model, provider, agent, day). Costs use the
per-million-token prices the config declares; rows without a price count as missing, never as 0.
Blocking: runs on the session database's worker thread.
"""
from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, UTC
from typing import Any
from collections.abc import Mapping

from ..sessions.keys import agent_id_of
from .usage import _add, _rounded, _zero

MAX_RANGE_DAYS = 366


def _day_bounds(start: date, end: date) -> tuple[int, int]:
    since = datetime(start.year, start.month, start.day, tzinfo=UTC)
    until = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return int(since.timestamp() * 1000), int(until.timestamp() * 1000)


def _grouped(rows: list[tuple[Any, ...]], key_of: Any, prices: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = key_of(row)
        group = groups.setdefault(key, {"count": 0, "totals": _zero()})
        group["count"] += 1
        _add(group["totals"], row[3:], prices.get((row[4] or "", row[5] or "")))
    return groups


def usage_report(
    connection: sqlite3.Connection,
    now_ms: int,
    start: date,
    end: date,
    prices: Mapping[tuple[str, str], Mapping[str, Any]],
    agent_id: str | None = None,
    limit: int = 1000,
) -> dict[str, Any]:
    """The ledger rows of the range, grouped by session (the ``limit`` largest), with the page's aggregates."""
    rows = _ledger_rows(connection, start, end, agent_id)
    by_session = _grouped(rows, lambda row: row[0], prices)
    totals = _zero()
    for group in by_session.values():
        for field, value in group["totals"].items():
            totals[field] += value
    return {
        "updatedAt": now_ms,
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "sessions": _session_entries(rows, by_session, prices, limit),
        "totals": _rounded(totals),
        "aggregates": _aggregates(rows, len(by_session), prices),
    }


def _ledger_rows(connection: sqlite3.Connection, start: date, end: date, agent_id: str | None) -> list[tuple[Any, ...]]:
    """The range's ledger rows, oldest first, as ``_grouped`` reads them after the first three
    columns: (session_key, agent_id, ts, ts, provider, model, tokens…)."""
    since, until = _day_bounds(start, end)
    query = (
        "SELECT session_key, agent_id, ts, ts, provider, model, input, output, cache_read, cache_write, total"
        " FROM usage_ledger WHERE ts >= ? AND ts < ?"
    )
    args: tuple[Any, ...] = (since, until)
    if agent_id is not None:
        query += " AND agent_id = ?"
        args += (agent_id,)
    return connection.execute(query + " ORDER BY ts", args).fetchall()


def _day_of(row: tuple[Any, ...]) -> str:
    """The UTC date of a ledger row's timestamp."""
    return datetime.fromtimestamp(row[2] / 1000, UTC).date().isoformat()


def _model_of(row: tuple[Any, ...]) -> tuple[Any, Any]:
    return (row[4], row[5])


def _session_entries(
    rows: list[tuple[Any, ...]],
    by_session: dict[Any, dict[str, Any]],
    prices: Mapping[tuple[str, str], Mapping[str, Any]],
    limit: int,
) -> list[dict[str, Any]]:
    """One entry per session, the most tokens first, at most ``limit``."""
    rows_of: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        rows_of.setdefault(row[0], []).append(row)
    sessions = []
    for key, group in sorted(by_session.items(), key=lambda item: -item[1]["totals"]["totalTokens"])[:limit]:
        mine = rows_of[key]
        models = _grouped(mine, _model_of, prices)
        sessions.append(
            {
                "key": key,
                "agentId": agent_id_of(key),
                "updatedAt": mine[-1][2],
                "modelProvider": mine[-1][4],
                "model": mine[-1][5],
                "usage": {
                    **_rounded(group["totals"]),
                    "firstActivity": mine[0][2],
                    "lastActivity": mine[-1][2],
                    "activityDates": sorted({_day_of(row) for row in mine}),
                    "modelUsage": [
                        {"provider": p, "model": m, "count": g["count"], "totals": _rounded(g["totals"])} for (p, m), g in models.items()
                    ],
                },
            }
        )
    return sessions


def _aggregates(
    rows: list[tuple[Any, ...]], session_count: int, prices: Mapping[tuple[str, str], Mapping[str, Any]]
) -> dict[str, Any]:
    """The page's aggregates over all the range's rows: by model, provider, agent and day."""
    daily = _grouped(rows, _day_of, prices)
    return {
        "sessionCount": session_count,
        "byModel": [
            {"provider": p, "model": m, "count": g["count"], "totals": _rounded(g["totals"])}
            for (p, m), g in _grouped(rows, _model_of, prices).items()
        ],
        "byProvider": [
            {"provider": p, "count": g["count"], "totals": _rounded(g["totals"])}
            for p, g in _grouped(rows, lambda row: row[4], prices).items()
        ],
        "byAgent": [{"agentId": a, "totals": _rounded(g["totals"])} for a, g in _grouped(rows, lambda row: row[1], prices).items()],
        "byChannel": [],
        "daily": [
            {"date": day, "tokens": g["totals"]["totalTokens"], "cost": round(g["totals"]["totalCost"], 6)}
            for day, g in sorted(daily.items())
        ],
        "costDaily": [{"date": day, **_rounded(g["totals"])} for day, g in sorted(daily.items())],
    }
