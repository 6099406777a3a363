"""What the node host publishes (node.host.stats, node.skills.update, node.pluginTools.update,
node.runnerInventory.update) is kept and shown in node.describe / node.list in the reference's shape."""
from __future__ import annotations

from twisted.internet.defer import inlineCallbacks

from openclaw.security.device_identity import DeviceKeyPair

from .test_nodes import NodeTestBase, event_seen, is_event

STATS = {"cpuCount": 2, "loadAverage": [0.5, 0.4, 0.3], "memoryTotalBytes": 100, "memoryFreeBytes": 50, "diskTotalBytes": 10, "diskAvailableBytes": 5}


class NodeSideTests(NodeTestBase):
    @inlineCallbacks
    def test_published_state_shows_in_describe_and_list(self):
        op = yield self.operator(["operator.read"])
        node = yield self.node(commands=["echo"], pathEnv="/usr/bin:/bin")
        node_id = node.key.device_id
        stats = yield node.request("node.event", {"event": "node.host.stats", "payloadJSON": '{"cpuCount": 2, "loadAverage": [0.5, 0.4, 0.3], "memoryTotalBytes": 100, "memoryFreeBytes": 50, "diskTotalBytes": 10, "diskAvailableBytes": 5, "extra": 1}'})
        self.assertEqual(stats["payload"], {"ok": True, "event": "node.host.stats", "handled": True, "reason": "updated"})
        broadcast = yield event_seen(op, is_event("node.hostStats", nodeId=node_id))
        self.assertEqual(broadcast["payload"]["hostStats"]["cpuCount"], 2)
        skills = yield node.request("node.skills.update", {"skills": [{"name": "s"}]})
        self.assertEqual(skills["payload"], {"nodeId": node_id, "skills": [{"name": "s"}]})
        tools = yield node.request("node.pluginTools.update", {"tools": [{"name": "t", "command": "echo"}]})
        self.assertEqual(tools["payload"], {"nodeId": node_id, "tools": [{"name": "t", "command": "echo"}]})
        inventory = yield node.request("node.runnerInventory.update", {"protocolFeatures": ["node-worker-supervisor-v6"], "workerHost": {"enabled": False}})
        self.assertEqual(inventory["payload"], {"nodeId": node_id})
        described = yield op.request("node.describe", {"nodeId": node_id})
        row = described["payload"]
        host_stats = dict(row["hostStats"])
        self.assertIsInstance(host_stats.pop("updatedAtMs"), int)
        self.assertEqual(host_stats, STATS)
        self.assertEqual(row["nodePluginTools"], [{"name": "t", "command": "echo"}])
        self.assertEqual(row["pathEnv"], "/usr/bin:/bin")
        self.assertEqual(row["approvalState"], "approved")
        self.assertIs(row["sessionHost"], False)
        self.assertEqual(row["lastSeenReason"], "connect")
        for field in ("connectedAtMs", "lastConnectedAtMs", "lastSeenAtMs", "approvedAtMs"):
            self.assertIsInstance(row[field], int, field)
        self.assertEqual((row["clientId"], row["clientMode"], row["deviceFamily"]), ("node-host", "node", "Linux"))
        listed = yield op.request("node.list", {})
        self.assertEqual(listed["payload"]["nodes"][0]["hostStats"], row["hostStats"])

    @inlineCallbacks
    def test_runner_inventory_waits_for_the_surface(self):
        node = yield self.node(commands=["echo"], approve=False)
        pending = self.gateway.node_pairing.store.pending_for(node.key.device_id)
        refused = yield node.request("node.runnerInventory.update", {"protocolFeatures": []})
        self.assertEqual(refused["error"]["code"], "UNAVAILABLE")
        self.assertEqual(
            refused["error"]["message"],
            f"node capability surface is awaiting operator approval; run `openclaw nodes approve {pending['requestId']}` "
            "(see `openclaw nodes pending`), then this node retries automatically",
        )
        # Skills and plugin tools are accepted while the surface waits, as in the reference.
        skills = yield node.request("node.skills.update", {"skills": []})
        self.assertTrue(skills["ok"], skills)

    @inlineCallbacks
    def test_runner_inventory_is_checked_before_the_pairing(self):
        """Issue 19 row 7c: a malformed declaration is refused as such even while the surface
        waits; a retired supervisor protocol is told to update."""
        node = yield self.node(commands=["echo"], approve=False)
        for bad in ({"protocolFeatures": ["worker-supervisor.v1"]}, {"protocolFeatures": ["node-worker-supervisor-v6"]}, {}):
            refused = yield node.request("node.runnerInventory.update", bad)
            self.assertEqual(refused["error"], {"code": "INVALID_REQUEST", "message": "invalid node runner inventory"}, bad)
        retired = yield node.request("node.runnerInventory.update", {"protocolFeatures": ["node-worker-supervisor-v5"], "workerRuns": []})
        self.assertEqual(retired["error"]["code"], "INVALID_REQUEST")
        self.assertIn(f"device worker node {node.key.device_id} requires an update", retired["error"]["message"])
        waiting = yield node.request("node.runnerInventory.update", {"protocolFeatures": ["node-worker-supervisor-v6"], "workerHost": {"enabled": False}})
        self.assertIn("awaiting operator approval", waiting["error"]["message"])

    @inlineCallbacks
    def test_events_wait_for_the_surface(self):
        """As in the reference, a node whose surface is not approved cannot reach operators."""
        op = yield self.operator(["operator.read"])
        node = yield self.node(commands=["echo"], approve=False)
        pending = self.gateway.node_pairing.store.pending_for(node.key.device_id)
        refused = yield node.request("node.event", {"event": "node.host.stats", "payload": {"cpuCount": 2}})
        self.assertEqual(refused["error"]["code"], "UNAVAILABLE")
        self.assertEqual(refused["error"]["details"], {"code": "PAIRING_CHANGED", "requestId": pending["requestId"]})
        self.assertIs(refused["error"]["retryable"], True)
        yield op.request("node.list", {})  # a round trip: a broadcast would have arrived before it
        self.assertFalse([f for f in [*op.frames, *op.skipped] if f.get("event") == "node.hostStats"])

    @inlineCallbacks
    def test_bad_input_and_unknown_methods(self):
        node = yield self.node(commands=["echo"])
        bad = yield node.request("node.event", {"event": "node.host.stats", "payloadJSON": "{not json"})
        self.assertEqual(bad["error"]["message"], "payloadJSON is not valid JSON")
        too_many = yield node.request("node.skills.update", {"skills": [{}] * 257})
        self.assertEqual(too_many["error"]["message"], "too many skills (max 256)")
        unknown = yield node.request("node.nonexistent.method", {})
        self.assertEqual(unknown["error"], {"code": "INVALID_REQUEST", "message": "unknown method: node.nonexistent.method"})

    @inlineCallbacks
    def test_last_connected_survives_disconnect(self):
        op = yield self.operator(["operator.read"])
        key = DeviceKeyPair.generate()
        first = yield self.node(key=key)
        yield first.close()
        second = yield self.node(key=key)
        yield second.close()
        described = yield op.request("node.describe", {"nodeId": key.device_id})
        row = described["payload"]
        self.assertIs(row["connected"], False)
        self.assertIsInstance(row["lastConnectedAtMs"], int)
        self.assertNotIn("hostStats", row)
