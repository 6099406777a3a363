"""The Control UI's operator pages beyond chat: Systems (``system.info``, ``environments.list``),
Usage (``sessions.usage``, ``usage.status``) and Debug (``diagnostics.lanes``).

Everything reported is this gateway's own state: the host it runs on (read on the file worker,
since /proc and disk statistics are file reads), its usage ledger, its run queues.
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
from datetime import date, datetime, timedelta, UTC
from typing import Any

from ..protocol.errors import invalid_request
from ..security.scopes import READ
from ..stores.usage import configured_prices
from .registry import MethodSpec, RequestContext

USAGE_DEFAULT_DAYS = 30
USAGE_MAX_DAYS = 366
USAGE_MAX_ROWS = 10_000
# The reference's preset windows; "all" is the widest window one report covers here.
USAGE_RANGE_DAYS = {"7d": 7, "30d": 30, "90d": 90, "1y": 365, "all": USAGE_MAX_DAYS}


def _meminfo() -> dict[str, int]:
    """Total and available memory in bytes from /proc/meminfo (empty where there is none)."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return values


def _host_facts(state_dir: str) -> dict[str, Any]:
    """Blocking: host, memory and disk facts (runs on the file worker)."""
    uname = platform.uname()
    memory = _meminfo()
    facts: dict[str, Any] = {
        "machineName": uname.node,
        "hostname": uname.node,
        "platform": sys.platform,
        "release": uname.release,
        "arch": uname.machine,
        "osLabel": f"{uname.system} {uname.release}",
        "pythonVersion": platform.python_version(),
        "pid": os.getpid(),
        "cpuCount": os.cpu_count() or 1,
        "cpuModel": platform.processor() or uname.machine,
        "loadAverage": [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else [],
    }
    if memory:
        facts["memoryTotalBytes"] = memory.get("MemTotal")
        facts["memoryFreeBytes"] = memory.get("MemAvailable")
    try:
        disk = shutil.disk_usage(state_dir)
    except OSError:
        return facts
    facts.update(
        {
            "disks": [{"path": state_dir, "totalBytes": disk.total, "availableBytes": disk.free}],
            "diskTotalBytes": disk.total,
            "diskAvailableBytes": disk.free,
            "diskPath": state_dir,
        }
    )
    return facts


def system_info(ctx: RequestContext) -> Any:
    gateway = ctx.gateway
    state_dir = gateway.settings.state_dir

    def complete(facts: dict[str, Any]) -> dict[str, Any]:
        facts.update(
            {
                "port": gateway.settings.port,
                "processInstanceId": gateway.instance_id,
                "uptimeMs": gateway.uptime_ms(),
                "eventLoop": gateway.event_loop.summary(),
                "processMemory": gateway.process_memory.current(),
                "defaultAgentUtilityModel": {"status": "unavailable"},
            }
        )
        return facts

    return gateway.file_executor.submit(lambda: _host_facts(state_dir)).addCallback(complete)


def environments_list(ctx: RequestContext) -> dict[str, Any]:
    """One environment: this gateway's host, which runs agent turns and keeps sessions.

    The ``profiles`` projection lists cloud-worker profiles (the Cloud workers settings page):
    there are none here.
    """
    if (ctx.params or {}).get("projection") == "profiles":
        return {"environments": []}
    return {
        "environments": [
            {
                "id": "gateway",
                "type": "local",
                "label": "Gateway local",
                "status": "available",
                "platform": sys.platform,
                "sessionHost": True,
                "trust": "persistent",
                "capabilities": ["agent.run", "sessions"],
            }
        ]
    }


def usage_status(ctx: RequestContext) -> dict[str, Any]:
    """Provider quota/usage windows: none of the configured providers report any here."""
    return {"updatedAt": ctx.gateway.now_ms(), "providers": []}


def _date(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise invalid_request(f"invalid sessions.usage params: {name} must be a YYYY-MM-DD date") from None


def sessions_usage(ctx: RequestContext) -> Any:
    params = ctx.params or {}
    gateway = ctx.gateway
    today = datetime.fromtimestamp(gateway.now_ms() / 1000, UTC).date()
    end = _date(params["endDate"], "endDate") if params.get("endDate") else today
    days = USAGE_RANGE_DAYS.get(params.get("range") or "", USAGE_DEFAULT_DAYS)
    start = _date(params["startDate"], "startDate") if params.get("startDate") else end - timedelta(days=days - 1)
    if start > end:
        raise invalid_request("invalid sessions.usage params: startDate is after endDate")
    if (end - start).days >= USAGE_MAX_DAYS:
        raise invalid_request(f"invalid sessions.usage params: at most {USAGE_MAX_DAYS} days at once")
    agent_id = None if params.get("agentScope") == "all" else params.get("agentId")
    prices = configured_prices(gateway.current_config())
    limit = min(params.get("limit") or 1000, USAGE_MAX_ROWS)
    return gateway.sessions.usage_report(gateway.now_ms(), start, end, prices, agent_id, limit)


def diagnostics_lanes(ctx: RequestContext) -> dict[str, Any]:
    """The one run lane here: turns run one at a time per session, queued behind each other."""
    runs = ctx.gateway.runs
    return {
        "ts": ctx.gateway.now_ms(),
        "lanes": [
            {
                "lane": "main",
                "queuedCount": runs.queued_count,
                "activeCount": runs.active_count,
                "maxConcurrent": None,
                "draining": not ctx.gateway.accepting,
                "generation": 0,
                "blockedBy": None,
            }
        ],
        "dynamic": None,
    }


def methods() -> list[MethodSpec]:
    return [
        MethodSpec("system.info", system_info, scope=READ),
        MethodSpec("environments.list", environments_list, scope=READ),
        MethodSpec("usage.status", usage_status, scope=READ),
        MethodSpec("sessions.usage", sessions_usage, scope=READ),
        MethodSpec("diagnostics.lanes", diagnostics_lanes, scope=READ),
    ]
