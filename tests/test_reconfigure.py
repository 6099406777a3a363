"""Hot reload runs each part's own reconfigure step, in the order the reload plan declares."""
from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.config import reload_plan
from openclaw.services.reconfigure import ReconfigureStep, run_steps
from tests.support.gateway import make_gateway


class Recorder:
    def __init__(self, name: str, seen: list[str]):
        self.name, self.seen = name, seen

    def reconfigure(self, settings: object) -> None:
        self.seen.append(self.name)

    def summary(self) -> dict[str, object]:
        return {"enabled": False, "every": "off", "everyMs": 0}


class RunStepsTests(SynchronousTestCase):
    def test_runs_only_the_asked_steps_in_their_order(self) -> None:
        seen: list[str] = []
        steps = [
            ReconfigureStep("a", "first", lambda settings: seen.append("first")),
            ReconfigureStep("b", "second", lambda settings: seen.append("second")),
            ReconfigureStep("c", "third", lambda settings: seen.append("third")),
        ]
        self.assertEqual(run_steps(steps, object(), ("c", "a")), ["first", "third"])
        self.assertEqual(seen, ["first", "third"])


class GatewayStepsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gateway = make_gateway(self, clock=Clock())
        self.seen: list[str] = []
        self.gateway.heartbeat = Recorder("heartbeat", self.seen)
        self.gateway.log_file = Recorder("log-file", self.seen)

    def test_steps_follow_the_declared_action_order(self) -> None:
        actions = [step.action for step in self.gateway.reconfigure_steps()]
        self.assertEqual(actions, [action for action in reload_plan.ACTION_ORDER if action in actions])
        self.assertEqual(
            [step.part for step in self.gateway.reconfigure_steps()], ["catalog", "rate-limiter", "heartbeat", "log-file"]
        )

    def test_apply_settings_runs_the_parts_the_plan_names(self) -> None:
        catalog = self.gateway.catalog
        settings = attrs.evolve(self.gateway.settings)
        self.gateway.apply_settings(settings, (reload_plan.RELOAD_LOGGING,))
        self.assertEqual(self.seen, ["log-file"])
        self.assertIs(self.gateway.catalog, catalog)
        self.assertIs(self.gateway.settings, settings)
        self.gateway.apply_settings(settings, (reload_plan.RELOAD_CATALOG, reload_plan.RESTART_HEARTBEAT))
        self.assertEqual(self.seen, ["log-file", "heartbeat"])
        self.assertIsNot(self.gateway.catalog, catalog)

    def test_absent_parts_have_no_step(self) -> None:
        self.gateway.heartbeat = None
        self.gateway.log_file = None
        self.assertEqual([step.part for step in self.gateway.reconfigure_steps()], ["catalog", "rate-limiter"])
