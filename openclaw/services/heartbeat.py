"""The heartbeat: a periodic agent turn in the default agent's main session (spec §7).

Every ``agents.defaults.heartbeat.every`` (default ``30m``; ``0m`` disables; the default agent's
``agents.list[].heartbeat`` overrides the defaults) the service submits an ordinary
:class:`~openclaw.agents.runs.Run` of kind ``heartbeat`` with the heartbeat prompt, so it streams,
is recorded and times out exactly like any other turn. The outcome becomes a ``heartbeat`` event
(broadcast, droppable, and kept for ``last-heartbeat``):

- ``ok-empty`` / ``ok-token``: the model had nothing to say (empty, ``NO_REPLY`` or
  ``HEARTBEAT_OK``; a short acknowledgement around ``HEARTBEAT_OK`` counts too);
- ``sent``: the model said something worth reading (``preview`` holds its first 200 chars);
- ``failed``: the run errored, timed out or was aborted (``message`` says why);
- ``skipped``: the session already had a run (``reason: requests-in-flight``, the reference's
  word) or ``set-heartbeats`` turned heartbeats off (``reason: disabled``).

The default prompt is the reference's (:data:`DEFAULT_PROMPT`), ending in NO_REPLY as current
builds do. The timer runs on the injected clock and each tick schedules the next one *before*
doing any work, so an exception in one heartbeat is logged and the schedule carries on (a
``LoopingCall`` would stay dead after its callable raised).
"""
from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any, TypeGuard
from collections.abc import Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..agents.runs import STATUS_ABORTED, STATUS_OK, Run
from ..sessions.keys import agent_id_of, normalize_agent_id

if TYPE_CHECKING:
    from ..hub import GatewayHub
    from ..settings import GatewaySettings

DEFAULT_EVERY = "30m"
DEFAULT_PROMPT = (
    "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. "
    "Do not infer or repeat old tasks from prior chats. If nothing needs attention, reply NO_REPLY."
)
HEARTBEAT_TOKEN = "HEARTBEAT_OK"
SILENT_TOKEN = "NO_REPLY"
# Text left beside HEARTBEAT_OK up to this length is still an acknowledgement (reference ackMaxChars).
ACK_MAX_CHARS = 300
PREVIEW_CHARS = 200
REASON_BUSY = "requests-in-flight"
REASON_DISABLED = "disabled"

STATUS_SENT = "sent"
STATUS_OK_EMPTY = "ok-empty"
STATUS_OK_TOKEN = "ok-token"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
INDICATORS = {STATUS_OK_EMPTY: "ok", STATUS_OK_TOKEN: "ok", STATUS_SENT: "alert", STATUS_FAILED: "error"}

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")


def parse_duration(text: str, default_unit: str = "m") -> float:
    """Seconds in a duration like ``30m``, ``1h``, ``45s``, ``500ms``, ``1h30m``; a bare number is in
    ``default_unit`` (minutes, as the reference reads ``heartbeat.every``). Raises ValueError."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"invalid duration {text!r}: expected a string like '30m', '1h' or '45s'")
    raw = str(text).strip().lower()
    if re.fullmatch(_NUMBER, raw):
        return float(raw) * _UNIT_SECONDS[default_unit]
    if not _DURATION.fullmatch(raw):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit (ms, s, m, h, d), e.g. '30m', '1h', '45s'; '0m' disables"
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(raw))


def heartbeat_settings(config: Mapping[str, Any], agent_id: str) -> dict[str, Any]:
    """``agents.defaults.heartbeat`` with the agent's own ``agents.list[].heartbeat`` laid over it."""
    raw_agents = config.get("agents") if isinstance(config, Mapping) else None
    agents: Mapping[str, Any] = raw_agents if isinstance(raw_agents, Mapping) else {}
    raw_defaults = agents.get("defaults")
    defaults: Mapping[str, Any] = raw_defaults if isinstance(raw_defaults, Mapping) else {}
    merged = dict(defaults.get("heartbeat") or {}) if isinstance(defaults.get("heartbeat"), Mapping) else {}
    for entry in agents.get("list") or ():
        if (
            isinstance(entry, Mapping)
            and isinstance(entry.get("id"), str)
            and normalize_agent_id(entry["id"]) == agent_id
            and isinstance(entry.get("heartbeat"), Mapping)
        ):
            merged.update(entry["heartbeat"])
    return merged


def classify_reply(text: str) -> tuple[str, str | None]:
    """``(status, preview)`` for a finished heartbeat's answer."""
    trimmed = (text or "").strip()
    if not trimmed:
        return STATUS_OK_EMPTY, None
    if trimmed in (SILENT_TOKEN, HEARTBEAT_TOKEN):
        return STATUS_OK_TOKEN, None
    rest = trimmed
    while rest.startswith(HEARTBEAT_TOKEN) or rest.endswith(HEARTBEAT_TOKEN):
        rest = (rest[len(HEARTBEAT_TOKEN):] if rest.startswith(HEARTBEAT_TOKEN) else rest[: -len(HEARTBEAT_TOKEN)]).strip()
    if rest != trimmed and len(rest) <= ACK_MAX_CHARS:
        return STATUS_OK_TOKEN, None
    return STATUS_SENT, rest[:PREVIEW_CHARS]


class HeartbeatService(Service):
    _log = Logger()

    def __init__(self, gateway: GatewayHub, clock: IReactorTime):
        self._gateway = gateway
        self._clock = clock
        self._enabled = True
        self._every = "off"
        self._interval_s: float | None = None
        self._call: IDelayedCall | None = None
        self._last: dict[str, Any] | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """The ``set-heartbeats`` flag (in memory only, as in the reference)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)

    @property
    def last(self) -> dict[str, Any] | None:
        """The last heartbeat event, or None before the first one."""
        return self._last

    @property
    def interval_s(self) -> float | None:
        """Seconds between heartbeats, or None when the config turns them off."""
        return self._interval_s

    @property
    def next_due(self) -> float | None:
        """Clock time of the next heartbeat, if one is scheduled."""
        return self._call.getTime() if self._call is not None and self._call.active() else None

    def summary(self) -> dict[str, Any]:
        """The default agent's ``heartbeat`` section for health/status: ``{enabled, every, everyMs}``."""
        every_ms = int(round(self._interval_s * 1000)) if self._interval_s else 0
        return {"enabled": bool(self._interval_s), "every": self._every if self._interval_s else "off", "everyMs": every_ms}

    # -- schedule ----------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.reschedule()

    def stopService(self) -> Any:
        self._cancel()
        return super().stopService()

    def reconfigure(self, settings: GatewaySettings) -> None:
        """The hot-reload step (``restart-heartbeat``): the hub holds ``settings`` already."""
        self.reschedule()

    def reschedule(self) -> None:
        """Re-read the interval from the config (the reload service calls this on heartbeat changes).

        An unchanged interval keeps the pending timer, so editing only the prompt does not postpone
        the next heartbeat; a new interval counts from now. A junk ``every`` turns heartbeats off
        with an error in the log rather than failing a reload.
        """
        every, interval = self._read_interval()
        changed = interval != self._interval_s
        self._every, self._interval_s = every, interval
        if not self.running:
            return
        if interval is None:
            self._cancel()
        elif changed or self.next_due is None:
            self._cancel()
            self._schedule()

    def _read_interval(self) -> tuple[str, float | None]:
        agent_id = self._gateway.catalog.default_agent_id
        raw = heartbeat_settings(self._gateway.current_config(), agent_id).get("every", DEFAULT_EVERY)
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            self._log.error("heartbeats are off: agents.defaults.heartbeat.every: {error}", error=str(exc))
            return "off", None
        if seconds <= 0:
            return "off", None
        return str(raw).strip(), seconds

    def _schedule(self) -> None:
        if self._interval_s:
            self._call = self._clock.callLater(self._interval_s, self._tick)

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        self._call = None
        self._schedule()  # first: nothing this heartbeat does may stop the ones after it
        maybeDeferred(self.run_once).addErrback(lambda failure: self._log.failure("heartbeat failed", failure))

    # -- one heartbeat -----------------------------------------------------------------------

    def run_once(self) -> Deferred[dict[str, Any]]:
        """Run a heartbeat now; fires with its event, which is also broadcast and kept as ``last``."""
        gateway = self._gateway
        session_key = gateway.session_key("main")
        if not self._enabled:
            return succeed(self._emit({"status": STATUS_SKIPPED, "reason": REASON_DISABLED}))
        if gateway.runs.has_activity(session_key):
            return succeed(self._emit({"status": STATUS_SKIPPED, "reason": REASON_BUSY}))
        agent_id = agent_id_of(session_key) or gateway.catalog.default_agent_id
        settings = heartbeat_settings(gateway.current_config(), agent_id)
        prompt = settings.get("prompt")
        timeout = settings.get("timeoutSeconds")
        run = Run(
            run_id=f"heartbeat-{uuid.uuid4()}",
            session_key=session_key,
            agent_id=agent_id,
            message=with_system_events(
                prompt if isinstance(prompt, str) and prompt.strip() else DEFAULT_PROMPT,
                gateway.presence.take_queued_system_events(),
            ),
            accepted_at=gateway.now_ms(),
            kind="heartbeat",
            timeout_s=float(timeout if _positive_number(timeout) else gateway.catalog.run_timeout_s),
        )
        started = gateway.now_ms()
        gateway.runs.submit(run)
        return run.when_finished().addCallback(lambda finished: self._emit(self._outcome(finished, started)))

    def _outcome(self, run: Run, started_ms: int) -> dict[str, Any]:
        duration = max(0, (run.ended_at or self._gateway.now_ms()) - started_ms)
        if run.status == STATUS_OK:
            status, preview = classify_reply(run.text)
            outcome: dict[str, Any] = {"status": status}
            if preview is not None:
                outcome["preview"] = preview
            outcome["durationMs"] = duration
            return outcome
        message = "aborted" if run.status == STATUS_ABORTED else (run.error or run.status)
        return {"status": STATUS_FAILED, "message": message, "durationMs": duration}

    def _emit(self, outcome: dict[str, Any]) -> dict[str, Any]:
        event: dict[str, Any] = {"ts": self._gateway.now_ms(), **outcome}
        indicator = INDICATORS.get(outcome["status"])
        if indicator is not None:
            event["indicatorType"] = indicator
        self._last = event
        self._gateway.clients.broadcast("heartbeat", event, drop_if_slow=True)
        return event


def with_system_events(prompt: str, events: list[str]) -> str:
    """The heartbeat prompt plus the texts queued since the last one (``wake``, ``system-event``)."""
    if not events:
        return prompt
    return prompt + "\n\nSystem events since the last heartbeat:\n" + "\n".join(f"- {text}" for text in events)


def _positive_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
