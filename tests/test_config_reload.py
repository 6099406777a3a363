"""The ``reload`` service: poll, debounce, decide by ``gateway.reload.mode``, apply or restart.

http spec §4 "Reload watcher" and "Restart mechanics". The reloader runs on a ``task.Clock``
with an inline executor, against a real file in a temp dir; ``apply_hot`` and ``restart`` are
recorders, so every test sees exactly what the gateway would have been asked to do.
"""
from __future__ import annotations

import json
import os
from typing import Any
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import reload_plan
from openclaw.config import snapshot as config_snapshot
from openclaw.config.loader import ConfigError
from openclaw.config.overrides import masked_paths
from openclaw.services.reload import POLL_INTERVAL_S, RESTART_COOLDOWN_S, ConfigReloader
from openclaw.settings import resolve_settings
from openclaw.stores.sqlite import InlineExecutor

BASE = {"gateway": {"port": 18789, "auth": {"mode": "token", "token": "tok-1"}}, "logging": {"level": "info"}}
DEBOUNCE_S = 0.3


def with_changes(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``document`` with dotted-path values set (``gateway__port=1`` style)."""
    copy = json.loads(json.dumps(document))
    for dotted, value in changes.items():
        parts = dotted.split("__")
        node = copy
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return copy


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class QueuedExecutor:
    """Work waits until ``run_next``: lets a test hold a read "on the worker thread"."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], Any], Deferred]] = []
        self.submitted = 0

    def submit(self, work: Callable[[], Any]) -> Deferred:
        d: Deferred = Deferred()
        self.queue.append((work, d))
        self.submitted += 1
        return d

    def run_next(self) -> None:
        work, d = self.queue.pop(0)
        d.callback(work())

    def stop(self) -> None:
        pass


class _ReloaderMixin:
    initial: dict[str, Any] = BASE

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")
        self.env: dict[str, str] = {}
        self.options = {"state-dir": self.dir, "config": self.path}
        self._mtime = 1_000_000_000_000_000_000
        self.write(self.initial)
        self.clock = Clock()
        self.applied: list[tuple[Any, reload_plan.ReloadPlan]] = []
        self.restarts: list[str] = []
        self.changes: list[dict[str, Any]] = []
        self.logged: list[str] = []
        self.levels: list[tuple[str, str]] = []  # (level name, text) of every line

        def observer(event: dict[str, Any]) -> None:
            self.logged.append(formatEvent(event))
            self.levels.append((event["log_level"].name, formatEvent(event)))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.reloader = self.make_reloader(InlineExecutor())
        self.reloader.startService()
        self.addCleanup(self.stop)

    def make_reloader(self, executor: Any) -> ConfigReloader:
        reloader = ConfigReloader(
            self.clock,
            executor,
            config_snapshot.read(self.path, self.env),
            settings_for=lambda snap: resolve_settings(self.options, self.env, snap),
            apply_hot=lambda settings, plan: self.applied.append((settings, plan)),
            restart=self.restart,
            env=self.env,
            masked=masked_paths(self.options, self.env),
        )
        reloader.on_change = self.changes.append
        return reloader

    def restart(self, reason: str) -> Deferred:
        self.restarts.append(reason)
        return succeed(None)

    def stop(self) -> None:
        if self.reloader.running:
            self.reloader.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # -- the file ----------------------------------------------------------------------------

    def write(self, document: Any) -> str:
        """Edit the file as an editor would; the mtime always moves, so the poller sees it."""
        text = document if isinstance(document, str) else json.dumps(document, indent=2)
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(text)
        self._mtime += 1_000_000_000
        os.utime(self.path, ns=(self._mtime, self._mtime))
        return text

    def poll_and_settle(self) -> None:
        """One poll that notices, then the whole debounce."""
        self.clock.advance(POLL_INTERVAL_S)
        self.clock.advance(DEBOUNCE_S)

    @property
    def plans(self) -> list[reload_plan.ReloadPlan]:
        return [plan for _, plan in self.applied]


class PollAndDebounceTests(_ReloaderMixin, SynchronousTestCase):
    def test_edit_is_noticed_and_applied_after_the_debounce(self):
        self.write(with_changes(BASE, logging__level="debug"))
        self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual(self.applied, [])  # seen, but the debounce runs
        self.clock.advance(DEBOUNCE_S - 0.01)
        self.assertEqual(self.applied, [])
        self.clock.advance(0.01)
        self.assertEqual(len(self.applied), 1)
        settings, plan = self.applied[0]
        self.assertEqual(plan.changed_paths, ("logging.level",))
        self.assertEqual(plan.actions, (reload_plan.RELOAD_SETTINGS, reload_plan.RELOAD_LOGGING))
        self.assertEqual(settings.config["logging"]["level"], "debug")
        self.assertEqual(self.reloader.snapshot.config["logging"]["level"], "debug")
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.reloader.last_decision["decision"], "hot")
        self.assertEqual(self.reloader.last_decision["changedPaths"], ["logging.level"])

    def test_nothing_happens_without_an_edit(self):
        for _ in range(20):
            self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual((self.applied, self.restarts, self.changes), ([], [], []))
        self.assertIsNone(self.reloader.last_decision)

    def test_second_edit_within_the_debounce_restarts_the_timer(self):
        self.write(with_changes(BASE, logging__level="debug"))
        self.clock.advance(POLL_INTERVAL_S)  # t=0.25: seen, reload due at 0.55
        self.clock.advance(0.05)
        self.write(with_changes(BASE, logging__level="warn", session={"mainKey": "home"}))
        self.clock.advance(0.2)  # t=0.5: seen again, reload now due at 0.8
        self.clock.advance(0.25)  # t=0.75: the first timer would have fired at 0.55
        self.assertEqual(self.applied, [])
        self.clock.advance(0.05)  # t=0.8
        self.assertEqual(len(self.applied), 1)
        self.assertEqual(self.plans[0].changed_paths, ("logging.level", "session.mainKey"))
        for _ in range(8):
            self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual(len(self.applied), 1)

    def test_debounce_follows_the_config(self):
        self.reloader.stopService()
        self.write(with_changes(BASE, gateway__reload={"debounceMs": 1000}))
        self.reloader = self.make_reloader(InlineExecutor())
        self.reloader.startService()
        self.write(with_changes(BASE, gateway__reload={"debounceMs": 1000}, logging__level="error"))
        self.clock.advance(POLL_INTERVAL_S)
        self.clock.advance(0.99)
        self.assertEqual(self.applied, [])
        self.clock.advance(0.01)
        self.assertEqual(len(self.applied), 1)

    def test_check_now_reads_at_once(self):
        """SIGHUP: no waiting for the poll or the debounce."""
        self.write(with_changes(BASE, logging__level="debug"))
        self.reloader.check_now()
        self.assertEqual(len(self.applied), 1)
        # The poller still sees the stat change, but the content is what already runs.
        for _ in range(8):
            self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual(len(self.applied), 1)

    def test_check_now_without_a_change_does_nothing(self):
        self.reloader.check_now()
        self.assertEqual((self.applied, self.restarts), ([], []))

    def test_touch_without_a_content_change_does_nothing(self):
        self.write(BASE)
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts, self.changes), ([], [], []))

    def test_reloads_are_single_flight(self):
        """A change seen while a read runs is picked up by one more read afterwards, not two."""
        self.reloader.stopService()
        executor = QueuedExecutor()
        self.reloader = self.make_reloader(executor)
        self.reloader.startService()
        executor.run_next()  # the initial stat
        self.write(with_changes(BASE, logging__level="debug"))
        self.reloader.check_now()
        self.assertEqual(len(executor.queue), 1)
        self.reloader.check_now()
        self.reloader.check_now()
        self.assertEqual(len(executor.queue), 1)  # no second read while one runs
        executor.run_next()
        self.assertEqual(len(self.applied), 1)
        self.assertEqual(len(executor.queue), 1)  # the pending one
        executor.run_next()
        self.assertEqual(executor.queue, [])
        self.assertEqual(len(self.applied), 1)

    def test_stop_cancels_the_timers(self):
        self.write(with_changes(BASE, logging__level="debug"))
        self.clock.advance(POLL_INTERVAL_S)
        self.assertTrue(self.clock.getDelayedCalls())
        self.reloader.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.applied, [])


class DecisionTests(_ReloaderMixin, SynchronousTestCase):
    def test_restart_class_change_restarts_once(self):
        self.write(with_changes(BASE, gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.applied, [])
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "restart")
        self.assertEqual(decision["restartGateway"], True)
        self.assertEqual(decision["restartReasons"], ["gateway.port"])
        self.assertEqual(self.reloader.current_settings().port, 18790)
        for _ in range(200):
            self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual(self.restarts, ["config change"])

    def test_mixed_change_restarts_without_applying_hot(self):
        self.write(with_changes(BASE, gateway__port=18790, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.applied, [])

    def test_two_restart_class_changes_coalesce(self):
        first = config_snapshot.parse(json.dumps(with_changes(BASE, gateway__port=18790)), self.path, self.env)
        second = config_snapshot.parse(json.dumps(with_changes(BASE, gateway__port=18791)), self.path, self.env)
        self.assertTrue(self.reloader.consider(first).restart)
        self.assertTrue(self.reloader.consider(second).restart)
        self.assertEqual(self.restarts, [])  # queued on the clock
        self.clock.advance(0)
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.current_settings().port, 18791)  # the restart takes the latest

    def test_request_restart_is_coalesced(self):
        self.assertTrue(self.reloader.request_restart("one", 1000))
        self.assertFalse(self.reloader.request_restart("two"))
        self.clock.advance(0.999)
        self.assertEqual(self.restarts, [])
        self.clock.advance(0.001)
        self.assertEqual(self.restarts, ["one"])

    def test_cooldown_between_restarts(self):
        self.write(with_changes(BASE, gateway__port=18790))
        self.poll_and_settle()
        first_at = self.clock.seconds()
        self.assertEqual(self.restarts, ["config change"])
        self.write(with_changes(BASE, gateway__port=18791))
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])  # waits out the 30 s
        self.write(with_changes(BASE, gateway__port=18792))
        self.poll_and_settle()  # joins the queued restart
        self.clock.advance(first_at + RESTART_COOLDOWN_S - self.clock.seconds() - 0.01)
        self.assertEqual(len(self.restarts), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.restarts), 2)
        self.assertEqual(self.reloader.current_settings().port, 18792)
        self.clock.advance(3600)
        self.assertEqual(len(self.restarts), 2)

    def test_restart_delay_is_honoured(self):
        new = config_snapshot.parse(json.dumps(with_changes(BASE, gateway__port=18790)), self.path, self.env)
        self.reloader.consider(new, restart_delay_ms=2500)
        self.clock.advance(2.499)
        self.assertEqual(self.restarts, [])
        self.clock.advance(0.001)
        self.assertEqual(self.restarts, ["config change"])

    def test_noop_change_refreshes_settings_only(self):
        self.write(with_changes(BASE, meta={"lastTouchedVersion": "x"}, gateway__remote={"url": "ws://elsewhere"}))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.plans[0].noop_paths, ("gateway.remote.url", "meta.lastTouchedVersion"))
        self.assertEqual(self.plans[0].actions, (reload_plan.RELOAD_SETTINGS,))

    def test_hot_change_passes_the_plan_actions(self):
        self.write(with_changes(BASE, gateway__auth={"mode": "token", "token": "tok-1", "rateLimit": {"maxAttempts": 3}}))
        self.poll_and_settle()
        settings, plan = self.applied[0]
        self.assertEqual(plan.actions, (reload_plan.RELOAD_SETTINGS, reload_plan.RELOAD_RATE_LIMIT))
        self.assertEqual(settings.rate_limit, {"maxAttempts": 3})

    def test_invalid_file_is_skipped(self):
        running = self.reloader.snapshot
        self.write(with_changes(BASE, gateway__bogus=1, gateway__port="x"))
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts, self.changes), ([], [], []))
        self.assertIs(self.reloader.snapshot, running)
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "skipped")
        self.assertEqual(decision["reason"], "invalid config: gateway.bogus: unknown key; gateway.port: expected integer")
        # Logged once, as a warning (it used to be an info line plus a warning).
        reload_lines = [(level, text) for level, text in self.levels if "config reload" in text]
        self.assertEqual(
            reload_lines,
            [("warn", "config reload: skipped (invalid config: gateway.bogus: unknown key; gateway.port: expected integer)")],
        )
        # The next good edit is planned against what runs, not against the broken file.
        self.write(with_changes(BASE, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(self.plans[0].changed_paths, ("logging.level",))

    def test_restoring_the_running_file_after_a_skip_is_recorded_once(self):
        """lastDecision must not keep saying ``skipped`` once the file is back to what runs."""
        running_text = read(self.path)
        self.write(with_changes(BASE, gateway__port="x"))
        self.poll_and_settle()
        self.assertEqual(self.reloader.last_decision["decision"], "skipped")
        self.clock.advance(5)
        self.write(running_text)
        self.poll_and_settle()
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "noop")
        self.assertEqual(decision["reason"], "the file matches the running config again")
        self.assertEqual(decision["ts"], int(self.clock.seconds() * 1000))
        self.assertEqual((self.applied, self.restarts, self.changes), ([], [], []))
        noop_lines = [text for text in self.logged if text.startswith("config reload: noop")]
        self.assertEqual(noop_lines, ["config reload: noop (the file matches the running config again)"])
        # Touching it again (or SIGHUP) is silent: the decision is no longer stale.
        self.write(running_text)
        self.poll_and_settle()
        self.reloader.check_now()
        self.assertEqual(len([text for text in self.logged if text.startswith("config reload: noop")]), 1)

    def test_restoring_the_file_after_it_was_deleted_is_recorded(self):
        running_text = read(self.path)
        os.remove(self.path)
        self.poll_and_settle()
        self.assertEqual(self.reloader.last_decision["reason"], "config file not found")
        self.write(running_text)
        self.poll_and_settle()
        self.assertEqual(self.reloader.last_decision["decision"], "noop")

    def test_unparseable_file_is_skipped(self):
        self.write("{ gateway: ")
        self.poll_and_settle()
        self.assertEqual(self.applied, [])
        self.assertTrue(self.reloader.last_decision["reason"].startswith("invalid config: <root>: JSON5 parse failed"))

    def test_settings_that_cannot_run_are_skipped(self):
        """Schema-valid but unusable (token mode without a token): the running config stays."""
        running = self.reloader.snapshot
        self.write({"gateway": {"auth": {"mode": "token"}}})
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts), ([], []))
        self.assertIs(self.reloader.snapshot, running)
        self.assertEqual(self.reloader.last_decision["decision"], "skipped")
        self.assertIn("needs a token", self.reloader.last_decision["reason"])

    def test_missing_file_is_skipped(self):
        running = self.reloader.snapshot
        os.remove(self.path)
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts), ([], []))
        self.assertIs(self.reloader.snapshot, running)
        self.assertEqual(self.reloader.last_decision["decision"], "skipped")
        self.assertEqual(self.reloader.last_decision["reason"], "config file not found")
        # When it comes back, it is read again.
        self.write(with_changes(BASE, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(len(self.applied), 1)

    def test_on_change_payload(self):
        self.clock.advance(100)
        text = self.write(with_changes(BASE, logging__level="debug", gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual(
            self.changes,
            [
                {
                    "hash": config_snapshot.content_hash(text),
                    "changedPaths": ["gateway.port", "logging.level"],
                    "restart": True,
                    "ts": int(self.clock.seconds() * 1000),
                }
            ],
        )
        self.assertEqual(self.changes[0]["ts"], 100_550)


class AuthFloorTests(_ReloaderMixin, SynchronousTestCase):
    """A reload never turns auth off by accident (issue 13, item 1): the token is only in the file."""

    def reload_lines(self) -> list[tuple[str, str]]:
        return [(level, text) for level, text in self.levels if text.startswith("config reload")]

    def assert_still_running_with_the_token(self, running: config_snapshot.ConfigSnapshot) -> None:
        self.assertEqual((self.applied, self.restarts, self.changes), ([], [], []))
        self.assertIs(self.reloader.snapshot, running)
        # What a SIGUSR1 restart would build: still the token from the file.
        self.assertEqual(self.reloader.current_settings().auth.mode, "token")
        self.assertEqual(self.reloader.current_settings().auth.token, "tok-1")
        self.assertEqual(self.reloader.current_settings().port, 18789)

    def test_truncated_file_is_an_invalid_edit(self):
        running = self.reloader.snapshot
        for text in ("", " \n\t\n"):
            self.write(text)
            self.poll_and_settle()
            self.assert_still_running_with_the_token(running)
            self.assertEqual(self.reloader.last_decision["decision"], "skipped")
        expected = "config reload: skipped (invalid config: <root>: " + config_snapshot.EMPTY_FILE_MESSAGE + ")"
        self.assertEqual(self.reload_lines(), [("warn", expected), ("warn", expected)])

    def test_an_edit_that_drops_the_auth_block_is_refused(self):
        running = self.reloader.snapshot
        for document in ({}, {"gateway": {"port": 18789}, "logging": {"level": "debug"}}):
            self.write(document)
            self.poll_and_settle()
            self.assert_still_running_with_the_token(running)
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "refused")
        reason = (
            "the new config would turn authentication off (auth mode token -> none) without saying "
            'gateway.auth.mode: "none"; the running config stays'
        )
        self.assertEqual(decision["reason"], reason)
        self.assertEqual(self.reload_lines(), [("error", f"config reload: refused ({reason})")] * 2)
        # Putting the file back is recorded once, like after a skipped edit.
        self.write(BASE)
        self.poll_and_settle()
        self.assertEqual(self.reloader.last_decision["decision"], "noop")

    def test_a_later_good_edit_is_planned_against_what_runs(self):
        self.write({})
        self.poll_and_settle()
        self.write(with_changes(BASE, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(self.plans[0].changed_paths, ("logging.level",))

    def test_saying_none_explicitly_turns_auth_off(self):
        self.write({"gateway": {"auth": {"mode": "none"}}})
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.current_settings().auth.mode, "none")
        # From there on, a config without auth is no downgrade.
        self.clock.advance(RESTART_COOLDOWN_S)
        self.write({"logging": {"level": "debug"}})
        self.poll_and_settle()
        self.assertEqual(self.reloader.last_decision["decision"], "restart")

    def test_token_to_password_is_not_a_downgrade(self):
        self.write({"gateway": {"auth": {"password": "pw-1"}}})
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.current_settings().auth.mode, "password")

    def test_port_key_removed_with_auth_kept_moves_the_listener(self):
        """Not a downgrade: the file asks for the default port, and auth stays."""
        self.write({"gateway": {"auth": {"mode": "token", "token": "tok-1"}}, "logging": {"level": "info"}})
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.last_decision["reason"], "gateway.port")


class AuthFloorWithEnvironmentTokenTests(_ReloaderMixin, SynchronousTestCase):
    """With OPENCLAW_GATEWAY_TOKEN set, auth does not depend on the file: dropping it is no downgrade."""

    def make_reloader(self, executor: Any) -> ConfigReloader:
        self.env["OPENCLAW_GATEWAY_TOKEN"] = "env-token"
        return super().make_reloader(executor)

    def test_dropping_the_auth_block_keeps_the_environment_token(self):
        self.write({"gateway": {"port": 18789}, "logging": {"level": "info"}})
        self.poll_and_settle()
        self.assertNotEqual(self.reloader.last_decision["decision"], "refused")
        settings = self.reloader.current_settings()
        self.assertEqual((settings.auth.mode, settings.auth.token), ("token", "env-token"))

    def test_an_empty_file_is_still_an_invalid_edit(self):
        self.write("")
        self.poll_and_settle()
        self.assertEqual(self.reloader.last_decision["decision"], "skipped")


class LargeChangeTests(_ReloaderMixin, SynchronousTestCase):
    def test_log_line_and_last_decision_name_at_most_50_paths(self):
        """``lastDecision`` goes out in every ``health``: a change of 200 keys must not ride along whole."""
        self.write(with_changes(BASE, channels={f"c{index:03d}": {"enabled": True} for index in range(200)}))
        self.poll_and_settle()
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "hot")
        self.assertEqual(len(decision["changedPaths"]), 50)
        self.assertEqual(len(decision["noopPaths"]), 50)
        self.assertEqual(decision["changedPathCount"], 200)
        self.assertTrue(decision["reason"].endswith("channels.c049.enabled, and 150 more"), decision["reason"])
        self.assertEqual(len(self.plans[0].changed_paths), 200)  # the plan itself is whole
        self.assertEqual(len(self.changes[0]["changedPaths"]), 200)  # and so is config.changed


class OwnWriteTests(_ReloaderMixin, SynchronousTestCase):
    def test_own_write_is_not_reloaded_again_by_the_poller(self):
        text = json.dumps(with_changes(BASE, logging__level="debug"))
        written = self.successResultOf(self.reloader.write(text))
        self.assertEqual(written.hash, config_snapshot.content_hash(text))
        self.reloader.consider(written)  # what config.set/patch/apply do next
        self.assertEqual(len(self.applied), 1)
        self.assertEqual(len(self.changes), 1)
        for _ in range(20):
            self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual(len(self.applied), 1)
        self.assertEqual(len(self.changes), 1)

    def test_own_write_schedules_no_reload(self):
        self.successResultOf(self.reloader.write(json.dumps(with_changes(BASE, logging__level="debug"))))
        self.clock.advance(POLL_INTERVAL_S)
        # Only the poller is pending: no debounce timer was started by our own write.
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_own_write_is_atomic_with_a_backup(self):
        before = read(self.path)
        text = '{gateway: {auth: {mode: "none"}}}'
        self.successResultOf(self.reloader.write(text))
        self.assertEqual(read(self.path + ".bak"), before)
        self.assertEqual(read(self.path), text)

    def test_own_write_that_turns_auth_off_is_refused_before_writing(self):
        before = read(self.path)
        for text in ("{}", '{gateway: {port: 18789}}', '{gateway: {auth: {mode: "token"}}}'):
            failure = self.failureResultOf(self.reloader.write(text), ConfigError)
            self.assertEqual(read(self.path), before, text)
            self.assertFalse(os.path.exists(self.path + ".bak"))
        self.assertIn("turn authentication off", str(self.failureResultOf(self.reloader.write("{}")).value))
        self.assertIn("needs a token", str(failure.value))

    def test_own_write_with_settings_that_cannot_run_is_refused_before_writing(self):
        before = read(self.path)
        text = json.dumps(with_changes(BASE, gateway__bind="lan", gateway__auth={"mode": "none"}))
        failure = self.failureResultOf(self.reloader.write(text), ConfigError)
        self.assertIn("refusing to serve beyond loopback without auth", str(failure.value))
        self.assertEqual(read(self.path), before)

    def test_read_current_sees_the_file_even_when_invalid(self):
        self.write("{ bogus: 1 }")
        current = self.successResultOf(self.reloader.read_current())
        self.assertFalse(current.valid)
        self.assertEqual(current.raw, "{ bogus: 1 }")
        self.assertTrue(self.reloader.snapshot.valid)  # reading is not taking


class ModeTests(_ReloaderMixin, SynchronousTestCase):
    def start_with(self, mode: str) -> None:
        self.reloader.stopService()
        self.write(with_changes(BASE, gateway__reload={"mode": mode}))
        self.reloader = self.make_reloader(InlineExecutor())
        self.reloader.startService()

    def test_off_applies_nothing(self):
        self.start_with("off")
        self.write(with_changes(BASE, gateway__reload={"mode": "off"}, gateway__port=18790, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts, self.changes), ([], [], []))
        self.assertEqual(self.reloader.last_decision["decision"], "ignored")
        self.assertEqual(self.reloader.last_decision["reason"], "config reload disabled (gateway.reload.mode=off)")
        self.assertIn("config reload: ignored (config reload disabled (gateway.reload.mode=off))", self.logged)

    def test_hot_mode_ignores_restart_class_changes(self):
        self.start_with("hot")
        self.write(with_changes(BASE, gateway__reload={"mode": "hot"}, gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts), ([], []))
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "ignored")
        self.assertEqual(decision["reason"], "requires gateway restart; hot mode ignoring gateway.port")
        self.assertEqual(decision["restartReasons"], ["gateway.port"])

    def test_hot_mode_applies_hot_changes(self):
        self.start_with("hot")
        self.write(with_changes(BASE, gateway__reload={"mode": "hot"}, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(len(self.applied), 1)
        self.assertEqual(self.restarts, [])

    def test_restart_mode_restarts_even_for_hot_changes(self):
        self.start_with("restart")
        self.write(with_changes(BASE, gateway__reload={"mode": "restart"}, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(self.applied, [])
        self.assertEqual(self.restarts, ["config change"])

    def test_switching_mode_off_is_itself_not_acted_on(self):
        """The new file's mode decides: turning reload off stops this very change too."""
        self.write(with_changes(BASE, gateway__reload={"mode": "off"}, gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual((self.applied, self.restarts), ([], []))


class OverrideTests(_ReloaderMixin, SynchronousTestCase):
    """``--port``/``--token`` (or OPENCLAW_GATEWAY_*) win over the file: editing those keys restarts nothing."""

    def setUp(self) -> None:
        self.extra_options = {"port": 18800, "token": "cli-token"}
        super().setUp()

    def make_reloader(self, executor: Any) -> ConfigReloader:
        self.options.update(self.extra_options)
        return super().make_reloader(executor)

    def test_masked_port_change_is_ignored_without_restart(self):
        self.write(with_changes(BASE, gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "ignored")
        self.assertEqual(decision["reason"], "overridden: gateway.port (overridden by --port)")
        self.assertEqual(decision["maskedPaths"], {"gateway.port": "--port"})
        self.assertIn("config reload: ignored (overridden: gateway.port (overridden by --port))", self.logged)
        self.assertFalse(any("restart" in text for text in self.logged), self.logged)
        # The running copy of the file still follows it (settings refresh only), effective port unchanged.
        [(settings, plan)] = self.applied
        self.assertEqual(plan.actions, (reload_plan.RELOAD_SETTINGS,))
        self.assertEqual(settings.port, 18800)
        self.assertEqual(self.changes, [])

    def test_masked_token_change_is_ignored(self):
        self.write(with_changes(BASE, gateway__auth={"mode": "token", "token": "tok-2"}))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.reloader.last_decision["reason"], "overridden: gateway.auth.token (overridden by --token)")

    def test_masked_key_next_to_a_hot_change(self):
        self.write(with_changes(BASE, gateway__port=18790, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.reloader.last_decision["decision"], "hot")
        self.assertEqual(self.reloader.last_decision["reason"], "logging.level")
        self.assertIn("config reload: ignoring gateway.port (overridden by --port)", self.logged)
        self.assertEqual(self.plans[0].restart, False)

    def test_unmasked_restart_key_still_restarts(self):
        self.write(with_changes(BASE, gateway__port=18790, gateway__bind="lan"))
        self.poll_and_settle()
        self.assertEqual(self.restarts, ["config change"])
        self.assertEqual(self.reloader.last_decision["reason"], "gateway.bind")

    def test_restart_mode_does_not_restart_for_a_masked_key(self):
        self.reloader.stopService()
        restart_mode = with_changes(BASE, gateway__reload={"mode": "restart"})
        self.write(restart_mode)
        self.reloader = self.make_reloader(InlineExecutor())
        self.reloader.startService()
        self.write(with_changes(restart_mode, gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertEqual(self.reloader.last_decision["decision"], "ignored")


class EnvironmentOverrideTests(OverrideTests):
    def setUp(self) -> None:
        self.extra_options = {}
        self.env_overrides = {"OPENCLAW_GATEWAY_PORT": "18800", "OPENCLAW_GATEWAY_TOKEN": "env-token"}
        _ReloaderMixin.setUp(self)

    def make_reloader(self, executor: Any) -> ConfigReloader:
        self.env.update(self.env_overrides)
        return _ReloaderMixin.make_reloader(self, executor)

    def test_masked_port_change_is_ignored_without_restart(self):
        self.write(with_changes(BASE, gateway__port=18790))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertEqual(
            self.reloader.last_decision["reason"], "overridden: gateway.port (overridden by OPENCLAW_GATEWAY_PORT)"
        )

    def test_masked_token_change_is_ignored(self):
        self.write(with_changes(BASE, gateway__auth={"mode": "token", "token": "tok-2"}))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertEqual(
            self.reloader.last_decision["reason"], "overridden: gateway.auth.token (overridden by OPENCLAW_GATEWAY_TOKEN)"
        )

    def test_masked_key_next_to_a_hot_change(self):
        self.write(with_changes(BASE, gateway__port=18790, logging__level="debug"))
        self.poll_and_settle()
        self.assertEqual(self.restarts, [])
        self.assertIn("config reload: ignoring gateway.port (overridden by OPENCLAW_GATEWAY_PORT)", self.logged)


class IncludeWatchTests(_ReloaderMixin, SynchronousTestCase):
    """An edit to a ``$include`` file reloads like an edit to the main file."""

    def setUp(self) -> None:
        super().setUp()
        self.logging_path = os.path.join(self.dir, "logging.json5")
        self.write_logging("info")
        self.write({**BASE, "logging": {"$include": "./logging.json5"}})
        self.poll_and_settle()
        self.assertEqual(self.reloader.snapshot.config["logging"]["level"], "info")
        self.applied.clear()

    def write_logging(self, level: str) -> None:
        with open(self.logging_path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"level": level}))
        self._mtime += 1_000_000_000
        os.utime(self.logging_path, ns=(self._mtime, self._mtime))

    def test_edit_to_an_included_file_is_applied(self):
        self.write_logging("debug")
        self.poll_and_settle()
        self.assertEqual(self.plans[-1].changed_paths, ("logging.level",))
        self.assertEqual(self.reloader.snapshot.config["logging"]["level"], "debug")
        self.assertEqual(self.reloader.last_decision["decision"], "hot")

    def test_broken_included_file_is_skipped_and_the_running_config_stays(self):
        with open(self.logging_path, "w", encoding="utf-8") as handle:
            handle.write("{ level: ")
        self._mtime += 1_000_000_000
        os.utime(self.logging_path, ns=(self._mtime, self._mtime))
        self.poll_and_settle()
        self.assertEqual(self.applied, [])
        self.assertEqual(self.reloader.last_decision["decision"], "skipped")
        self.assertIn("logging.json5", self.reloader.last_decision["reason"])
        self.assertEqual(self.reloader.snapshot.config["logging"]["level"], "info")

    def test_untouched_include_does_nothing(self):
        for _ in range(8):
            self.clock.advance(POLL_INTERVAL_S)
        self.assertEqual(self.applied, [])

    def test_dropping_the_include_stops_watching_it(self):
        self.write(BASE)
        self.poll_and_settle()
        self.applied.clear()
        self.write_logging("debug")
        self.poll_and_settle()
        self.assertEqual(self.applied, [])
        self.assertEqual(self.reloader.snapshot.config["logging"]["level"], "info")
