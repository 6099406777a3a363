"""Which node commands may run: the per-platform allowlist, the config, and the approved surface.

Facts from the reference (its docs/nodes/command-policy.md and its behaviour): each platform has
a default allowlist; desktop host commands (``system.run``, ``system.which``, ``browser.proxy``,
``fs.listDir`` …) are never default, they come only from an approved pairing surface; dangerous
commands (camera capture, SMS, …) need ``gateway.nodes.commands.allow``; ``deny`` always wins.

Two lists are derived from that:

* the **pairing allowlist** bounds what a node may even ask for: the commands of a pairing request
  are the declared ones this list keeps (``file.*`` on Linux never reaches an operator);
* the **runtime allowlist** is checked at every ``node.invoke``, with the node's *effective*
  commands: declared, approved, and in the pairing allowlist. A node whose surface is not yet
  approved has no effective commands.
"""
from __future__ import annotations

import unicodedata
from typing import Any
from collections.abc import Iterable, Mapping

from ..config.loader import lookup

SYSTEM_RUN = ("system.run.prepare", "system.run", "system.which")
EXEC_APPROVALS = ("system.execApprovals.get", "system.execApprovals.set")
FILE = ("fs.listDir", "terminal.upload")
BROWSER_PROXY = ("browser.proxy", "browser.proxy.upload.v1")
MCP_CALL = "mcp.tools.call.v1"
CLAUDE_RUN = "agent.cli.claude.run.v1"
SCREEN = ("screen.snapshot",)
DESKTOP_SCREEN = (*SCREEN, "desktop.stream")
COMPUTER = ("computer.act",)
SYSTEM = (*SYSTEM_RUN, *EXEC_APPROVALS, *FILE, "system.notify", *BROWSER_PROXY, MCP_CALL, CLAUDE_RUN)
DESKTOP_HOST = frozenset((*SYSTEM_RUN, *EXEC_APPROVALS, *FILE, *BROWSER_PROXY, MCP_CALL, CLAUDE_RUN, *DESKTOP_SCREEN))
CAMERA = ("camera.list",)
LOCATION = ("location.get",)
DEVICE = ("device.info", "device.status")
PERSONAL = ("contacts.search", "calendar.events", "reminders.list", "photos.latest", "motion.activity", "motion.pedometer")
DANGEROUS = frozenset(
    ("camera.snap", "camera.clip", "camera.ptz.control", "screen.record", "contacts.add", "calendar.add", "reminders.add", "sms.send", "sms.search", "health.summary")
)
TALK_PTT = ("talk.ptt.start", "talk.ptt.stop", "talk.ptt.cancel", "talk.ptt.once")
# The reference's bundled local-inference (Ollama) plugin adds these on desktop platforms; the
# node does the work, the gateway only forwards.
DESKTOP_PLUGIN_DEFAULTS = ("ollama.chat", "ollama.models")

PLATFORM_DEFAULTS: dict[str, tuple[str, ...]] = {
    "ios": (*CAMERA, *LOCATION, *DEVICE, *PERSONAL, "system.notify"),
    "watchos": (*DEVICE, "system.notify"),
    "android": (
        *CAMERA, *LOCATION, "notifications.list", "notifications.actions", "system.notify", *DEVICE, "device.permissions",
        "device.health", "device.apps", *PERSONAL[:2], "callLog.search", *PERSONAL[2:], "mobile.ui.observe", "mobile.ui.act",
    ),
    "macos": (*CAMERA, "camera.ptz.status", *LOCATION, *DEVICE, "device.apps", *PERSONAL, *SYSTEM, *DESKTOP_SCREEN, *COMPUTER),
    "linux": (*SYSTEM, *DESKTOP_SCREEN, *COMPUTER),
    "windows": (*CAMERA, *LOCATION, *DEVICE, *SYSTEM, *DESKTOP_SCREEN, *COMPUTER),
    "unknown": (*CAMERA, *LOCATION, "system.notify"),
}
DESKTOP = frozenset(("macos", "windows", "linux"))
FAMILY_OF = {"ios": ("", "iphone", "ipad", "ios"), "watchos": ("apple watch", "watchos"), "android": ("", "android"), "macos": ("mac",), "windows": ("windows",), "linux": ("linux",)}
FAMILY_TOKENS = (("ios", ("iphone", "ipad", "ios")), ("watchos", ("apple watch", "watchos")), ("android", ("android",)), ("macos", ("mac",)), ("windows", ("windows",)), ("linux", ("linux",)))


def _fold(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    decomposed = unicodedata.normalize("NFKD", value.strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def platform_id(platform: Any, device_family: Any) -> str:
    """The policy platform: an exact platform label must agree with the device family."""
    raw, family = _fold(platform), _fold(device_family)
    if raw in FAMILY_OF:
        return raw if family in FAMILY_OF[raw] else "unknown"
    if raw:
        return "unknown"
    for pid, tokens in FAMILY_TOKENS:
        if any(token in family for token in tokens):
            return pid
    return "unknown"


def _config_lists(config: Mapping[str, Any]) -> tuple[list[str], set[str]]:
    allow = [str(c).strip() for c in lookup(config, "gateway.nodes.commands.allow", []) or [] if str(c).strip()]
    deny = {str(c).strip() for c in lookup(config, "gateway.nodes.commands.deny", []) or [] if str(c).strip()}
    return allow, deny


def _talk(caps: Iterable[str], commands: Iterable[str]) -> tuple[str, ...]:
    if any(str(c).strip().lower() == "talk" for c in caps) or any(str(c).strip().lower().startswith("talk.") for c in commands):
        return TALK_PTT
    return ()


def _allowlist(config: Mapping[str, Any], node: Mapping[str, Any], *, pairing: bool, approved: Iterable[str]) -> set[str]:
    pid = platform_id(node.get("platform"), node.get("deviceFamily"))
    base = [c for c in PLATFORM_DEFAULTS[pid] if pairing or pid not in DESKTOP or c not in DESKTOP_HOST]
    plugins = DESKTOP_PLUGIN_DEFAULTS if pid in DESKTOP else ()
    host = [c for c in approved if pid in DESKTOP and c in DESKTOP_HOST]
    allow, deny = _config_lists(config)
    dangerous = frozenset() if pairing else DANGEROUS
    allowed = {c for c in (*base, *_talk(node.get("caps") or (), node.get("commands") or ()), *plugins, *host, *allow) if c not in dangerous}
    allowed.update(allow)
    return allowed - (deny - DANGEROUS if pairing else deny)


def pairing_allowlist(config: Mapping[str, Any], node: Mapping[str, Any]) -> set[str]:
    """What a node may ask operators for (dangerous commands included: asking is not running)."""
    return _allowlist(config, node, pairing=True, approved=node.get("commands") or ())


def runtime_allowlist(config: Mapping[str, Any], node: Mapping[str, Any], approved: Iterable[str]) -> set[str]:
    return _allowlist(config, node, pairing=False, approved=approved)


def requestable(config: Mapping[str, Any], node: Mapping[str, Any]) -> list[str]:
    """The declared commands a pairing request carries, sorted."""
    allowed = pairing_allowlist(config, node)
    return sorted({str(c).strip() for c in node.get("commands") or () if str(c).strip() in allowed})


def effective(config: Mapping[str, Any], node: Mapping[str, Any], approved: Iterable[str] | None) -> list[str]:
    """Declared, approved and allowed for pairing: what this node can be asked to run."""
    if approved is None:
        return []
    granted = set(approved)
    return [c for c in requestable(config, node) if c in granted]


_PENDING = (
    "node command not allowed: the node's declared command surface is pending approval; "
    "run `openclaw nodes pending`, then `openclaw nodes approve <requestId>`"
)


def refusal(config: Mapping[str, Any], node: Mapping[str, Any], approved: Iterable[str] | None, command: str) -> tuple[str, str] | None:
    """``(reason, message)`` when ``command`` may not run on this node, as the reference words it."""
    commands = effective(config, node, approved)
    platform = node.get("platform") or "unknown"
    if not commands and command in (node.get("commands") or ()) and command in pairing_allowlist(config, node):
        # Declared and requestable, only not approved yet: say so, not "not in the allowlist".
        return "node did not declare commands", _PENDING
    if command not in runtime_allowlist(config, node, commands):
        _, deny = _config_lists(config)
        if command.startswith("talk."):
            why = f'"{command}" requires a trusted Talk-capable node'
        elif command in deny:
            why = f'"{command}" is blocked by gateway.nodes.commands.deny'
        elif command in DANGEROUS:
            why = f'"{command}" requires explicit gateway.nodes.commands.allow opt-in'
        else:
            why = f'"{command}" is not in the allowlist for platform "{platform}"'
        return "command not allowlisted", f"node command not allowed: {why}"
    if not commands:
        if command in (node.get("commands") or ()):
            return "node did not declare commands", _PENDING
        return "node did not declare commands", "node command not allowed: the node did not declare any supported commands"
    if command not in commands:
        return "command not declared by node", f'node command not allowed: the node (platform: {platform}) does not support "{command}"'
    return None
