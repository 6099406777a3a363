"""The ``reload`` service: notices config file changes and applies them per ``gateway.reload.mode``.

The file is polled on the injected clock (a ``stat`` on the worker thread: mtime, size, inode)
and also checked at once on SIGHUP; a change (re)starts the debounce timer, and when it fires the
file is read and hashed off the reactor thread. An unchanged hash (our own ``config.set`` echo)
is ignored (but logged once as ``noop`` when it ends an earlier skip: the file is back to what
runs); an invalid file (an empty one included) is logged and skipped, the running config
untouched, and so is one that would turn auth off without saying so (``refused``, see
:mod:`..config.safety`; ``config.*`` writes are checked the same way before anything is
written). Otherwise the planner decides: hot changes are applied to the running gateway in
order, restart-class changes restart the service tree in-process (hybrid and restart modes), hot
mode only logs them. Keys the command line or environment overrides (``masked``) are logged as
ignored and never restart.

A restart whose new tree cannot start (the new port is taken) falls back to the last config that
ran (``restart_failed``): the decision becomes ``rolled-back`` with the error, and ``snapshot``
is that config again, so ``configReload.hash`` keeps naming what runs.

Reloads are single-flight: a change noticed while one runs is picked up right after it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar
from collections.abc import Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ..config import snapshot as config_snapshot
from ..config.loader import ConfigError, lookup
from ..config.reload_plan import ReloadPlan, listing, plan
from ..config.safety import auth_downgrade
from ..config.writer import write_atomically
from ..stores.sqlite import Executor

T = TypeVar("T")

if TYPE_CHECKING:
    from ..security.shared_secret import AuthSettings
    from ..settings import GatewaySettings

POLL_INTERVAL_S = 0.25
RESTART_COOLDOWN_S = 30.0
DEFAULT_RESTART_DELAY_MS = 0

FileState = tuple[int, int, int] | None  # (mtime_ns, size, inode)
WatchState = tuple[tuple[str, FileState], ...]  # the config file, then each $include file


def _stat(path: str) -> FileState:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _stat_all(paths: tuple[str, ...]) -> WatchState:
    return tuple((path, _stat(path)) for path in paths)


def _watched(snapshot: config_snapshot.ConfigSnapshot) -> tuple[str, ...]:
    return (snapshot.path, *snapshot.included_files)


def _same_config(new: config_snapshot.ConfigSnapshot, running: config_snapshot.ConfigSnapshot) -> bool:
    """The same file text, and (with ``$include``) the same result: an included file may have
    changed under an unchanged main file."""
    if new.hash != running.hash:
        return False
    if not (new.included_files or running.included_files):
        return True
    return (new.config, new.issues) == (running.config, running.issues)


class ConfigReloader(Service):
    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        executor: Executor,
        snapshot: config_snapshot.ConfigSnapshot,
        settings_for: Callable[[config_snapshot.ConfigSnapshot], GatewaySettings],
        apply_hot: Callable[[GatewaySettings, ReloadPlan], None],
        restart: Callable[[str], Deferred[None]],
        env: Mapping[str, str] | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        masked: Mapping[str, str] | None = None,
    ):
        self._clock = clock
        self._executor = executor
        self.snapshot = snapshot
        # The config the running service tree reflects (``snapshot`` runs ahead of it while a
        # restart is pending); a failed restart falls back to it.
        self._tree_snapshot = snapshot
        self._restarting = False
        # Config keys the command line or environment overrides: {path: "--port"} (see config.overrides).
        self.masked: dict[str, str] = dict(masked or {})
        self._settings_for = settings_for
        self._apply_hot = apply_hot
        self._restart = restart
        self._env = dict(os.environ if env is None else env)
        self._poll_interval = poll_interval_s
        self._poller: LoopingCall | None = None
        self._file_state: WatchState = ()
        self._watching = _watched(snapshot)
        self._debounce: IDelayedCall | None = None
        self._running_reload: Deferred[Any] | None = None
        self._pending = False
        self._restart_call: IDelayedCall | None = None
        self._last_restart_at: float | None = None
        self.last_decision: dict[str, Any] | None = None
        self._last_read: config_snapshot.ConfigSnapshot | None = None
        # Called with a ``config.changed`` payload whenever a new config is taken into use.
        self.on_change: Callable[[dict[str, Any]], None] | None = None
        # Called with the text of each client's config.* write once it is taken into use (a
        # cluster shares it with the other instances: openclaw/cluster/config_sync.py).
        self.on_written: Callable[[str], Any] | None = None

    def current_settings(self) -> GatewaySettings:
        return self._settings_for(self.snapshot)

    def accepted_auth(self) -> AuthSettings | None:
        """Auth of the config last taken (or, failing that, of the running tree); None if unknown."""
        for snapshot in (self.snapshot, self._tree_snapshot):
            try:
                return self._settings_for(snapshot).auth
            except ConfigError:
                continue
        return None

    def running_settings(self) -> GatewaySettings:
        """Settings of the config the running tree was built from (the restart fallback)."""
        return self._settings_for(self._tree_snapshot)

    def _restart_pending(self) -> bool:
        return self._restarting or (self._restart_call is not None and self._restart_call.active())

    @property
    def path(self) -> str:
        return self.snapshot.path

    def _mode(self) -> str:
        return str(lookup(self.snapshot.config, "gateway.reload.mode", "hybrid"))

    def _debounce_s(self) -> float:
        return max(0, int(lookup(self.snapshot.config, "gateway.reload.debounceMs", 300))) / 1000.0

    # -- lifecycle ---------------------------------------------------------------------------

    def startService(self) -> Deferred[None]:
        super().startService()
        d = self._executor.submit(lambda: _stat_all(self._watching))

        def begin(state: WatchState) -> None:
            self._file_state = state
            self._poller = LoopingCall(self._poll)
            self._poller.clock = self._clock
            self._poller.start(self._poll_interval, now=False).addErrback(self._poller_stopped)

        return d.addCallback(begin)

    def _poller_stopped(self, failure: Failure) -> None:
        self._log.failure("config poller stopped", failure)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        for call in (self._debounce, self._restart_call):
            if call is not None and call.active():
                call.cancel()
        self._debounce = self._restart_call = None
        self._executor.stop()
        return succeed(None)

    # -- noticing changes --------------------------------------------------------------------

    def _poll(self) -> Deferred[None]:
        def compare(state: WatchState) -> None:
            if state != self._file_state:
                self._file_state = state
                self.schedule()

        watching = self._watching
        return self._executor.submit(lambda: _stat_all(watching)).addCallback(compare)

    def check_now(self) -> None:
        """SIGHUP: read the file now, whether or not its stat changed."""
        self._start_reload()

    def schedule(self) -> None:
        """A change was seen: (re)start the debounce timer."""
        if self._debounce is not None and self._debounce.active():
            self._debounce.reset(self._debounce_s())
        else:
            self._debounce = self._clock.callLater(self._debounce_s(), self._start_reload)

    def _start_reload(self) -> None:
        self._debounce = None
        if self._running_reload is not None:
            self._pending = True
            return
        d = self._running_reload = self.read_current()
        d.addCallback(self.consider)
        d.addErrback(lambda failure: self._log.failure("config reload failed", failure))
        d.addBoth(self._reload_done)

    def _reload_done(self, _: Any) -> None:
        self._running_reload = None
        if self._pending:
            self._pending = False
            self._start_reload()

    # -- deciding ----------------------------------------------------------------------------

    def _record(self, decision: str, reason: str, level: LogLevel = LogLevel.info, **extra: Any) -> None:
        self.last_decision = {"decision": decision, "reason": reason, "ts": int(self._clock.seconds() * 1000), **extra}
        self._log.emit(level, "config reload: {decision} ({reason})", decision=decision, reason=reason)

    def consider(self, new: config_snapshot.ConfigSnapshot, restart_delay_ms: int = DEFAULT_RESTART_DELAY_MS) -> ReloadPlan | None:
        """Apply ``new`` if it differs from what runs; returns the plan acted on (None if skipped)."""
        if not new.exists:
            self._record("skipped", "config file not found", LogLevel.warn)
            return None
        if _same_config(new, self.snapshot):
            if self.last_decision is not None and self.last_decision["decision"] in ("skipped", "refused", "rolled-back"):
                # The file is back to what runs: say so once, so lastDecision is not left stale.
                self._record("noop", "the file matches the running config again")
            return None
        if not new.valid:
            self._record("skipped", f"invalid config: {new.issue_summary(10)}", LogLevel.warn)
            return None
        try:
            settings = self._settings_for(new)
        except ConfigError as exc:
            self._record("skipped", f"invalid config: {exc}", LogLevel.warn)
            return None
        downgrade = auth_downgrade(self.accepted_auth(), settings.auth, new.config)
        if downgrade is not None:
            self._record("refused", f"{downgrade}; the running config stays", LogLevel.error)
            return None
        old = self.snapshot
        self.snapshot = new
        change = plan(old.config, new.config, self.masked)
        if change.empty:
            return change
        mode = self._mode()
        if mode == "off":
            self._record("ignored", "config reload disabled (gateway.reload.mode=off)", **change.summary())
            return change
        masked_text = listing(f"{path} (overridden by {source})" for path, source in change.masked)
        if change.only_masked:
            # The effective settings are unchanged: keep the running copy equal to the file, no restart.
            self._record("ignored", "overridden: " + masked_text, **change.summary())
            self._apply(settings, change)
            return change
        if change.masked:
            self._log.info("config reload: ignoring {masked}", masked=masked_text)
        self._announce(new, change)
        if mode == "restart" or (mode == "hybrid" and change.restart):
            self._record("restart", listing(change.restart_reasons or change.changed_paths), **change.summary())
            self.request_restart("config change", restart_delay_ms)
            return change
        if change.restart:  # hot mode
            self._record("ignored", "requires gateway restart; hot mode ignoring " + listing(change.restart_reasons), **change.summary())
            return change
        # Recorded first: applying refreshes health, whose ``configReload`` shows this decision.
        masked = dict(change.masked)
        self._record("hot", listing(path for path in change.changed_paths if path not in masked), **change.summary())
        self._apply(settings, change)
        return change

    def _apply(self, settings: GatewaySettings, change: ReloadPlan) -> None:
        self._apply_hot(settings, change)
        if not self._restart_pending():
            self._tree_snapshot = self.snapshot

    # -- restart outcome (called by the runtime) -------------------------------------------

    def restart_succeeded(self, snapshot: config_snapshot.ConfigSnapshot) -> None:
        """The tree now runs ``snapshot``."""
        self._tree_snapshot = snapshot

    def restart_failed(self, attempted: config_snapshot.ConfigSnapshot, error: str, recovered: bool) -> None:
        """The tree built from ``attempted`` could not start; the last good config was started again.

        ``recovered`` is False when even that failed: nothing listens, so another restart is
        queued (one per cooldown window) until one succeeds.
        """
        self.snapshot = self._tree_snapshot
        port = self._safe_port()
        if recovered:
            self._record(
                "rolled-back",
                f"new config not applied: the gateway could not start with it ({error}); "
                f"running the last good config again" + (f" on port {port}" if port else ""),
                LogLevel.error,
                error=error,
                attemptedHash=attempted.hash,
            )
        else:
            self._record(
                "failed",
                f"the gateway could not start with the new config ({error}) nor with the last good one; "
                "nothing is listening, retrying after the restart cooldown",
                LogLevel.critical,
                error=error,
                attemptedHash=attempted.hash,
            )
            self.request_restart("retry after a failed restart")

    def _safe_port(self) -> int | None:
        try:
            return self.running_settings().port
        except Exception:  # noqa: BLE001 - only for the message
            return None

    def _announce(self, new: config_snapshot.ConfigSnapshot, change: ReloadPlan) -> None:
        if self.on_change is not None:
            self.on_change(
                {
                    "hash": new.hash,
                    "changedPaths": list(change.changed_paths),
                    "restart": change.restart,
                    "ts": int(self._clock.seconds() * 1000),
                }
            )

    def read_current(self) -> Deferred[config_snapshot.ConfigSnapshot]:
        """The file as it is now (off the reactor thread), valid or not.

        Unchanged text is not parsed again: ``config.get`` after ``config.get`` (or after a
        write, or a reload) reuses the snapshot that text already gave.
        """
        known = (self.snapshot, self._last_read)

        def remember(snapshot: config_snapshot.ConfigSnapshot) -> config_snapshot.ConfigSnapshot:
            self._last_read = snapshot
            if snapshot.exists and snapshot.raw is not None:
                self._watching = _watched(snapshot)  # the $include list may have changed
            return snapshot

        return self._executor.submit(lambda: config_snapshot.read(self.path, self._env, known)).addCallback(remember)

    def request_restart(self, reason: str, delay_ms: int = DEFAULT_RESTART_DELAY_MS) -> bool:
        """Queue one in-process restart (coalesced, at most one per 30 s cycle); False if one is queued."""
        if self._restart_call is not None and self._restart_call.active():
            return False
        delay = delay_ms / 1000.0
        if self._last_restart_at is not None:
            delay = max(delay, self._last_restart_at + RESTART_COOLDOWN_S - self._clock.seconds())
        self._restart_call = self._clock.callLater(max(0.0, delay), self._do_restart, reason)
        return True

    def _do_restart(self, reason: str) -> None:
        self._restart_call = None
        self._last_restart_at = self._clock.seconds()
        self._restarting = True

        def done(result: object) -> object:
            self._restarting = False
            return result

        def failed(failure: Failure) -> None:
            self._log.failure("in-process restart failed", failure)

        d = self._restart(reason).addBoth(done)
        d.addErrback(failed)

    # -- writes from config.* RPCs ----------------------------------------------------------

    def write(self, text: str, document: Any = None) -> Deferred[config_snapshot.ConfigSnapshot]:
        """Check ``text`` (``document`` is it parsed, if known) and, when it is valid, persist it
        atomically; fires with its snapshot.

        Parsing (JSON5, env substitution, the schema) and the write both run on the file
        thread: the text comes from a client and may be large. An invalid snapshot means
        nothing was written; so does a :class:`ConfigError` (the settings cannot run, or the
        change would turn auth off by accident, see :mod:`..config.safety`). The snapshot is
        the text's own, not a re-read of the file.
        """
        running_auth = self.accepted_auth()

        def persist() -> tuple[config_snapshot.ConfigSnapshot, WatchState | None]:
            candidate = config_snapshot.parse(text, self.path, self._env, document)
            if not candidate.valid:
                return candidate, None
            try:
                settings = self._settings_for(candidate)
            except ConfigError as exc:
                raise ConfigError(f"invalid config: {exc}") from None
            downgrade = auth_downgrade(running_auth, settings.auth, candidate.config)
            if downgrade is not None:
                raise ConfigError(f"config change refused: {downgrade}; the file is unchanged")
            write_atomically(self.path, text)
            return candidate, _stat_all(_watched(candidate))

        def written(result: tuple[config_snapshot.ConfigSnapshot, WatchState | None]) -> config_snapshot.ConfigSnapshot:
            new, state = result
            if state is not None:
                self._watching = _watched(new)
                self._file_state = state  # our own write: the poller should not see it as news
            return new

        return self._executor.submit(persist).addCallback(written)

    def off_thread(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run CPU-heavy config work (parsing client-sent text) on the file thread."""
        return self._executor.submit(lambda: work(*args))
