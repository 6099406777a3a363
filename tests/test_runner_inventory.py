"""The closed runner-inventory declaration: what the reference node host sends is accepted, and
every other shape is refused (the gateway answers "invalid node runner inventory")."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from openclaw.nodes.runner_inventory import needs_update, parse_declaration

V6 = "node-worker-supervisor-v6"
HOSTING = {"enabled": True, "capacity": {"total": 4, "available": 3}, "bundlePrewarm": 1, "capturedExecPolicy": True}


class ParseDeclarationTests(SynchronousTestCase):
    def test_what_the_node_host_sends(self):
        self.assertEqual(parse_declaration({"protocolFeatures": [V6], "workerHost": {"enabled": False}}), {"protocolFeatures": [V6], "workerHost": {"enabled": False}})
        declared = parse_declaration({"protocolFeatures": [V6], "workerHost": HOSTING})
        self.assertEqual(declared, {"protocolFeatures": [V6], "workerHost": HOSTING})
        self.assertFalse(needs_update(declared))
        self.assertEqual(parse_declaration({"protocolFeatures": []}), {"protocolFeatures": []})

    def test_retired_protocols_need_an_update(self):
        declared = parse_declaration({"protocolFeatures": ["node-worker-supervisor-v3"], "workerRuns": []})
        self.assertEqual(declared, {"protocolFeatures": ["node-worker-supervisor-v3"]})
        self.assertTrue(needs_update(declared))

    def test_everything_else_is_refused(self):
        bad = [
            None,
            [],
            {},
            {"protocolFeatures": "x"},
            {"protocolFeatures": [], "workerHost": {"enabled": False}},
            {"protocolFeatures": ["worker-supervisor.v1"]},
            {"protocolFeatures": [V6]},
            {"protocolFeatures": [V6, V6], "workerHost": {"enabled": False}},
            {"protocolFeatures": [V6], "workerHost": {"enabled": False, "capacity": {"total": 1, "available": 1}}},
            {"protocolFeatures": [V6], "workerHost": {"enabled": "yes"}},
            {"protocolFeatures": [V6], "workerHost": {"enabled": True}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "capacity": {"total": 0, "available": 0}}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "capacity": {"total": 2, "available": 3}}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "capacity": {"total": 1025, "available": 1}}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "capacity": {"total": True, "available": 0}}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "bundlePrewarm": 2}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "capturedExecPolicy": 1}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "bundleStatus": 1}},
            {"protocolFeatures": [V6], "workerHost": {**HOSTING, "unknown": 1}},
            {"protocolFeatures": [V6], "workerHost": {"enabled": False}, "workerRuns": []},
            {"protocolFeatures": ["node-worker-supervisor-v2"], "workerRuns": [], "workerHost": {}},
            {"protocolFeatures": ["node-worker-supervisor-v2"], "other": 1},
        ]
        for params in bad:
            self.assertIsNone(parse_declaration(params), params)
