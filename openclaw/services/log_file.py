"""The gateway's own log file: ``<state-dir>/logs/gateway.log``, one JSON object per line.

``logs.tail`` serves this file to operators, so it is written whatever twistd does with stdout.
Lines are compact ``{time, level, subsystem, message}`` objects (plus ``failure`` with the
traceback for ``log.failure``) rather than ``eventAsJSON``'s full event dumps, because people read
them in the Control UI and through ``openclaw logs``: those field names are the ones the reference
clients parse, so they print our lines as ``time level subsystem message`` instead of echoing the
raw JSON inside their own format. Rotation by size goes through ``twisted.python.logfile.LogFile``: the file is
renamed to ``gateway.log.1`` (older ones shift up, at most ``max_files`` are kept) and a fresh one
starts, which ``logs.tail`` clients see as a cursor past the end (``reset``).

The observer runs inside every ``log.*`` call anywhere in the process, possibly off the reactor
thread, so it takes a lock and never raises: a full disk must not break the code that logged.
Given an executor (as the gateway does), it only queues the formatted line: the queue (bounded;
lines past it are counted as dropped) is written in batches on the executor's thread every
``FLUSH_INTERVAL_S`` (and before ``logs.tail`` reads), so no log call ever waits on the disk.
Without one (tests, tools) lines are written at once.
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, InvalidLogLevelError, LogLevel, LogPublisher, formatEvent, globalLogPublisher
from twisted.python.logfile import LogFile

from ..config.loader import lookup
from ..stores.sqlite import Executor

if TYPE_CHECKING:
    from ..settings import GatewaySettings

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5
FLUSH_INTERVAL_S = 0.5
MAX_QUEUED_BYTES = 4 * 1024 * 1024
LOG_FILE_NAME = "gateway.log"


# The reference's ``logging.level`` names, as Twisted levels: the nearest one that shows no less.
_LEVEL_NAMES = {"warning": "warn", "trace": "debug", "fatal": "critical", "silent": "critical"}


def log_level_name(name: Any) -> str:
    """A Twisted log level name for a ``logging.level`` value (``info`` for anything unknown)."""
    name = _LEVEL_NAMES.get(name, name) if isinstance(name, str) else "info"
    return name if name in ("debug", "info", "warn", "error", "critical") else "info"


def default_log_path(state_dir: str) -> str:
    return os.path.join(state_dir, "logs", LOG_FILE_NAME)


def _subsystem(namespace: str) -> str:
    """``openclaw.gateway.Gateway`` → ``gateway.Gateway``: every line is ours, the prefix is noise."""
    return namespace[len("openclaw."):] if namespace.startswith("openclaw.") else namespace


# ``json.dumps(record, ensure_ascii=False, default=str)`` builds this encoder on every call (a
# third of the cost of a line); it holds no state, so one serves every line.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def format_line(event: dict[str, Any]) -> str:
    """One log event as a JSON line (with its newline)."""
    level = event.get("log_level") or LogLevel.info
    stamp = event.get("log_time")
    when = datetime.fromtimestamp(stamp if isinstance(stamp, (int, float)) else 0, UTC)
    record: dict[str, Any] = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": getattr(level, "name", str(level)),
        "subsystem": _subsystem(event.get("log_namespace") or ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    return _LINE_ENCODER.encode(record) + "\n"


class GatewayLogFile(Service):
    """While running, every log event at ``level`` or above is appended to ``path``."""

    def __init__(
        self,
        path: str,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
        *,
        level: LogLevel = LogLevel.info,
        publisher: LogPublisher = globalLogPublisher,
        executor: Executor | None = None,
        clock: Any = None,
    ):
        self.path = os.path.abspath(path)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.level = level
        self._publisher = publisher
        self._file: LogFile | None = None
        self._lock = threading.Lock()
        self.dropped = 0  # events that could not be written (reported nowhere else: no recursion)
        self._executor = executor
        # Any callable taking an event is an observer; the publisher's signature names the interface.
        self._observer = cast(ILogObserver, self.observe)
        self._queued: list[bytes] = []
        self._queued_bytes = 0
        self._flusher: LoopingCall | None = None
        if executor is not None:
            self._flusher = LoopingCall(self.flush)
            self._flusher.clock = clock

    def set_level(self, name: str) -> None:
        """Apply ``logging.level`` (the reference's names, see :func:`log_level_name`)."""
        try:
            self.level = LogLevel.levelWithName(log_level_name(name))
        except InvalidLogLevelError:
            pass

    def reconfigure(self, settings: GatewaySettings) -> None:
        """The hot-reload step (``reload-logging``): ``logging.level`` from the new config."""
        self.set_level(lookup(settings.config, "logging.level", "info"))

    def startService(self) -> None:
        directory, name = os.path.split(self.path)
        os.makedirs(directory, exist_ok=True)
        self._file = LogFile(name, directory, rotateLength=self.max_bytes, maxRotatedFiles=self.max_files)
        self._publisher.addObserver(self._observer)
        if self._flusher is not None:
            self._flusher.start(FLUSH_INTERVAL_S, now=False)
        super().startService()

    def stopService(self) -> Deferred[None]:
        self._publisher.removeObserver(self._observer)
        super().stopService()
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        # Closing is cheap: only the queued lines go through the executor (when there are any,
        # so a gateway that never logged starts no thread at stop).
        return self.flush().addBoth(self._close)

    def flush(self) -> Deferred[None]:
        """Hand the queued lines to the executor; fires once they are in the file."""
        with self._lock:
            batch, self._queued, self._queued_bytes = self._queued, [], 0
        if not batch or self._executor is None:
            return succeed(None)
        return self._executor.submit(lambda: self._write(*batch))

    def _write(self, *lines: bytes) -> None:
        # Line by line, so rotation still happens between whole lines at max_bytes.
        for line in lines:
            try:
                with self._lock:
                    if self._file is not None:
                        self._file.write(line)
            except Exception:  # noqa: BLE001 - a full disk loses log lines, never the gateway
                self.dropped += 1

    def _close(self, _: object = None) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def observe(self, event: dict[str, Any]) -> None:
        """The ILogObserver: format and append one event; never raises."""
        try:
            level = event.get("log_level") or LogLevel.info
            if level < self.level:
                return
            data = format_line(event).encode("utf-8")  # bytes: LogFile counts len() toward rotation
            if self._executor is None:
                self._write(data)
                return
            with self._lock:
                if self._queued_bytes + len(data) > MAX_QUEUED_BYTES:
                    self.dropped += 1
                    return
                self._queued.append(data)
                self._queued_bytes += len(data)
        except Exception:  # noqa: BLE001 - a logging observer must not raise into the caller
            self.dropped += 1
