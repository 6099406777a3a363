"""Nodes end to end: pairing, the registry, ``node.invoke`` and what nodes send back.

Protocol §3.6 / §9.4 and http-config-sessions-nodes §6. Every test runs a real gateway on a
loopback port with a real node socket and a real operator socket. Loopback nodes are normally
approved silently; tests of the manual flow start the gateway with ``auto_approve_local=False``
and put the node's *device* pairing in place directly, so that the only question left is the
node's capability surface. Timers (invoke timeouts, pending expiry) are driven by a ``Clock``.
"""
from __future__ import annotations

import json
import uuid

from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from openclaw.security.device_identity import DeviceKeyPair
from openclaw.stores.devices import PairedDevice

from .support.gateway import start_gateway
from .support.wsclient import connect

NODE_CLIENT = {"id": "node-host", "version": "1.0", "platform": "linux", "deviceFamily": "Linux", "mode": "node"}
ALL_OPERATOR = ["operator.pairing", "operator.read", "operator.write", "operator.admin"]


def is_event(name, **payload):
    def predicate(frame):
        if not (isinstance(frame, dict) and frame.get("type") == "event" and frame.get("event") == name):
            return False
        return all(frame["payload"].get(key) == value for key, value in payload.items())

    return predicate


def event_seen(client, predicate):
    """The first frame matching ``predicate``, whether already passed over by a request or still to come."""
    for frame in list(client.skipped):
        if predicate(frame):
            client.skipped.remove(frame)
            return succeed(frame)
    return client.next_matching(predicate)


def send_request(client, method, params):
    request_id = uuid.uuid4().hex
    client.send({"type": "req", "id": request_id, "method": method, "params": params})
    return request_id


def response_to(request_id):
    return lambda f: isinstance(f, dict) and f.get("type") == "res" and f.get("id") == request_id


class NodeTestBase(TestCase):
    timeout = 15

    clock = None
    auto_approve_local = True
    config: dict = {}
    # Made-up commands the tests use: not in any platform allowlist, so the config allows them.
    allow = ("echo", "other", "a.cmd", "b.cmd")

    @inlineCallbacks
    def setUp(self):
        overrides = {"auto_approve_local": self.auto_approve_local}
        config = json.loads(json.dumps(self.config))
        commands = config.setdefault("gateway", {}).setdefault("nodes", {}).setdefault("commands", {})
        commands["allow"] = list(self.allow) + list(commands.get("allow", []))
        overrides["config"] = config
        self.running = yield start_gateway(self, clock=self.clock, **overrides)
        self.gateway = self.running.gateway

    @inlineCallbacks
    def operator(self, scopes=None):
        client, hello = yield connect(self, self.running.url, scopes=list(ALL_OPERATOR if scopes is None else scopes))
        self.assertTrue(hello["ok"], hello)
        return client

    def device_paired(self, key):
        """Device pairing done out of band: the node's *device* is known, its surface is not."""
        d = self.gateway.pairing.store.put_paired(
            PairedDevice(
                device_id=key.device_id,
                public_key=key.public_key,
                roles=["node"],
                scopes=[],
                created_at_ms=0,
                approved_at_ms=0,
                platform="linux",
                client_id="node-host",
                client_mode="node",
            )
        )
        return d

    @inlineCallbacks
    def approve_surface(self, node_id):
        """What ``openclaw nodes approve`` does: approve the node's pending command surface."""
        pending = self.gateway.node_pairing.store.pending_for(node_id)
        if pending is not None:
            yield self.gateway.node_pairing.approve(pending["requestId"], ["operator.admin"])

    @inlineCallbacks
    def node(self, key=None, commands=("echo",), caps=("camera",), client=None, approve=None, **kwargs):
        """A connected node; on loopback (the default) its surface is approved as an operator would."""
        key = key or DeviceKeyPair.generate()
        if not self.auto_approve_local:
            yield self.device_paired(key)
        node, hello = yield connect(
            self,
            self.running.url,
            device=key,
            role="node",
            client=dict(client or NODE_CLIENT),
            scopes=[],
            caps=list(caps),
            commands=list(commands),
            **kwargs,
        )
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(hello["payload"]["auth"]["role"], "node")
        node.key = key
        if self.auto_approve_local if approve is None else approve:
            yield self.approve_surface(key.device_id)
        return node

    def assertError(self, response, code, message):
        self.assertIs(response["ok"], False, response)
        self.assertEqual(response["error"]["code"], code, response)
        self.assertEqual(response["error"]["message"], message, response)


# -- pairing ----------------------------------------------------------------------------------


class ManualPairingTests(NodeTestBase):
    auto_approve_local = False

    @inlineCallbacks
    def connect_pending(self, observer, **kwargs):
        node = yield self.node(**kwargs)
        requested = yield event_seen(observer, is_event("node.pair.requested", nodeId=node.key.device_id))
        return (node, requested["payload"])

    @inlineCallbacks
    def test_request_approve_list(self):
        observer = yield self.operator()
        node, request = yield self.connect_pending(observer, commands=["echo", "camera.list", "echo"], caps=["screen", "camera"])
        node_id = node.key.device_id
        self.assertEqual(request["caps"], ["camera", "screen"])
        # camera.list is not in the Linux allowlist: the request never carries it.
        self.assertEqual(request["commands"], ["echo"])
        self.assertEqual(request["platform"], "linux")
        self.assertIs(request["isRepair"], False)

        listed = yield observer.request("node.pair.list", {})
        self.assertTrue(listed["ok"], listed)
        self.assertEqual([r["requestId"] for r in listed["payload"]["pending"]], [request["requestId"]])
        self.assertEqual(listed["payload"]["paired"], [])

        # Not yet approved: as in the reference, the node's device is paired (listed under
        # "Paired" by `openclaw nodes list`) while its surface waits, and the row says what waits.
        nodes = yield observer.request("node.list", {})
        [row] = nodes["payload"]["nodes"]
        self.assertEqual((row["nodeId"], row["paired"], row["connected"], row["approvalState"]), (node_id, True, True, "pending-approval"))
        self.assertEqual((row["pendingRequestId"], row["pendingDeclaredCommands"], row["pendingDeclaredCaps"]), (request["requestId"], ["echo"], ["camera", "screen"]))

        approved = yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertTrue(approved["ok"], approved)
        self.assertEqual(approved["payload"]["node"]["nodeId"], node_id)
        self.assertTrue(approved["payload"]["node"]["token"])
        resolved = yield event_seen(observer, is_event("node.pair.resolved", nodeId=node_id))
        self.assertEqual(resolved["payload"]["decision"], "approved")
        self.assertEqual(resolved["payload"]["requestId"], request["requestId"])

        nodes = yield observer.request("node.list", {})
        [row] = nodes["payload"]["nodes"]
        self.assertEqual((row["nodeId"], row["paired"], row["connected"]), (node_id, True, True))
        self.assertEqual(row["caps"], ["camera", "screen"])
        self.assertEqual(row["commands"], ["echo"])
        self.assertEqual(row["approvalState"], "approved")
        self.assertNotIn("token", row)

        listed = yield observer.request("node.pair.list", {})
        self.assertEqual(listed["payload"]["pending"], [])
        [paired] = listed["payload"]["paired"]
        self.assertEqual(paired["nodeId"], node_id)
        self.assertNotIn("token", paired)

        # Approving the same request twice: it is gone.
        again = yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertError(again, "INVALID_REQUEST", "unknown requestId")

    @inlineCallbacks
    def test_reject(self):
        observer = yield self.operator()
        node, request = yield self.connect_pending(observer)
        rejected = yield observer.request("node.pair.reject", {"requestId": request["requestId"]})
        self.assertTrue(rejected["ok"], rejected)
        self.assertEqual(rejected["payload"], {"requestId": request["requestId"], "nodeId": node.key.device_id})
        resolved = yield event_seen(observer, is_event("node.pair.resolved", nodeId=node.key.device_id))
        self.assertEqual(resolved["payload"]["decision"], "rejected")
        listed = yield observer.request("node.pair.list", {})
        self.assertEqual(listed["payload"], {"pending": [], "paired": []})
        self.assertIsNone(self.gateway.node_pairing.store.paired(node.key.device_id))

    @inlineCallbacks
    def test_remove(self):
        observer = yield self.operator()
        node, request = yield self.connect_pending(observer)
        node_id = node.key.device_id
        yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        yield event_seen(observer, is_event("node.pair.resolved", nodeId=node_id, decision="approved"))
        removed = yield observer.request("node.pair.remove", {"nodeId": node_id})
        self.assertTrue(removed["ok"], removed)
        self.assertEqual(removed["payload"]["nodeId"], node_id)
        resolved = yield event_seen(observer, is_event("node.pair.resolved", nodeId=node_id))
        self.assertEqual(resolved["payload"]["decision"], "removed")
        listed = yield observer.request("node.pair.list", {})
        self.assertEqual(listed["payload"]["paired"], [])
        # As in the reference, the device loses its node role and the node is disconnected.
        code, _ = yield node.closed
        self.assertEqual(code, 4001)
        self.assertIsNone(self.gateway.pairing.store.paired(node_id))
        nodes = yield observer.request("node.list", {})
        self.assertEqual(nodes["payload"]["nodes"], [])
        unknown = yield observer.request("node.pair.remove", {"nodeId": node_id})
        self.assertError(unknown, "INVALID_REQUEST", "unknown nodeId")

    @inlineCallbacks
    def test_approval_of_ordinary_commands_needs_write(self):
        observer = yield self.operator()
        pairing_only = yield self.operator(["operator.pairing"])
        _, request = yield self.connect_pending(observer, commands=["echo"])
        refused = yield pairing_only.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertError(refused, "FORBIDDEN", "missing scope: operator.write")
        self.assertEqual(refused["error"]["details"]["missingScope"], "operator.write")
        writer = yield self.operator(["operator.pairing", "operator.write"])
        approved = yield writer.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertTrue(approved["ok"], approved)

    @inlineCallbacks
    def test_approval_of_system_run_needs_admin(self):
        observer = yield self.operator()
        writer = yield self.operator(["operator.pairing", "operator.write"])
        _, request = yield self.connect_pending(observer, commands=["system.run", "echo"])
        refused = yield writer.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertError(refused, "FORBIDDEN", "missing scope: operator.admin")
        approved = yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertTrue(approved["ok"], approved)

    @inlineCallbacks
    def test_node_without_commands_needs_only_pairing(self):
        observer = yield self.operator()
        pairing_only = yield self.operator(["operator.pairing"])
        _, request = yield self.connect_pending(observer, commands=[])
        approved = yield pairing_only.request("node.pair.approve", {"requestId": request["requestId"]})
        self.assertTrue(approved["ok"], approved)

    @inlineCallbacks
    def test_approved_surface_not_asked_again_but_a_wider_one_is(self):
        observer = yield self.operator()
        key = DeviceKeyPair.generate()
        node, request = yield self.connect_pending(observer, key=key, commands=["echo"])
        yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        yield node.close()
        # Same surface: no new request (the next pair event is the wider surface's).
        node = yield self.node(key=key, commands=["echo"])
        yield node.close()
        # A command outside the allowlist widens nothing; one inside it does.
        node = yield self.node(key=key, commands=["echo", "camera.list"])
        yield node.close()
        node = yield self.node(key=key, commands=["echo", "other"])
        requested = yield event_seen(observer, is_event("node.pair.requested"))
        self.assertEqual(requested["payload"]["nodeId"], key.device_id)
        self.assertEqual(requested["payload"]["commands"], ["echo", "other"])
        self.assertIs(requested["payload"]["isRepair"], True)

    @inlineCallbacks
    def test_invoke_needs_approved_surface(self):
        observer = yield self.operator()
        node, request = yield self.connect_pending(observer, commands=["echo"])
        node_id = node.key.device_id
        # As in the reference: no approved surface, no node work (UNAVAILABLE, PAIRING_CHANGED,
        # retryable), whatever the command; the message says what to run.
        for key, command in (("a", "echo"), ("a2", "file.stat")):
            refused = yield observer.request("node.invoke", {"nodeId": node_id, "command": command, "idempotencyKey": key})
            self.assertError(
                refused,
                "UNAVAILABLE",
                f"node command surface is awaiting operator approval; run `openclaw nodes approve {request['requestId']}` "
                "(see `openclaw nodes pending`)",
            )
            self.assertEqual(refused["error"]["details"], {"code": "PAIRING_CHANGED", "requestId": request["requestId"]})
            self.assertIs(refused["error"]["retryable"], True)
        yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        request_id = send_request(observer, "node.invoke", {"nodeId": node_id, "command": "echo", "idempotencyKey": "b"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True, "payloadJSON": "1"})
        response = yield event_seen(observer, response_to(request_id))
        self.assertEqual(response["payload"]["payload"], 1)

    @inlineCallbacks
    def test_remove_a_node_whose_surface_was_never_approved(self):
        """As in the reference, a node known only through its device can be removed too: the
        removal is announced and the node is disconnected."""
        observer = yield self.operator()
        node, _ = yield self.connect_pending(observer)
        node_id = node.key.device_id
        removed = yield observer.request("node.pair.remove", {"nodeId": node_id})
        self.assertEqual(removed["payload"]["nodeId"], node_id, removed)
        resolved = yield event_seen(observer, is_event("node.pair.resolved", nodeId=node_id, decision="removed"))
        self.assertEqual(resolved["payload"]["requestId"], "")
        closed = yield node.closed
        self.assertEqual(closed, (4001, "device removed"))  # the reference's close, as its node host logs it
        again = yield observer.request("node.pair.remove", {"nodeId": node_id})
        self.assertError(again, "INVALID_REQUEST", "unknown nodeId")

    @inlineCallbacks
    def test_explicit_request_and_verify(self):
        observer = yield self.operator()
        params = {"nodeId": "explicit-node", "displayName": "Kitchen", "platform": "ios", "commands": ["echo"]}
        first = yield observer.request("node.pair.request", params)
        self.assertTrue(first["ok"], first)
        self.assertEqual(first["payload"]["status"], "pending")
        self.assertIs(first["payload"]["created"], True)
        request = first["payload"]["request"]
        self.assertEqual(request["nodeId"], "explicit-node")
        again = yield observer.request("node.pair.request", params)
        self.assertIs(again["payload"]["created"], False)
        self.assertEqual(again["payload"]["request"]["requestId"], request["requestId"])
        requested = yield event_seen(observer, is_event("node.pair.requested", nodeId="explicit-node"))
        self.assertEqual(requested["payload"]["requestId"], request["requestId"])

        approved = yield observer.request("node.pair.approve", {"requestId": request["requestId"]})
        token = approved["payload"]["node"]["token"]
        ok = yield observer.request("node.pair.verify", {"nodeId": "explicit-node", "token": token})
        self.assertTrue(ok["ok"], ok)
        self.assertIs(ok["payload"]["ok"], True)
        self.assertNotIn("token", ok["payload"]["node"])
        wrong = yield observer.request("node.pair.verify", {"nodeId": "explicit-node", "token": token + "x"})
        self.assertEqual(wrong["payload"], {"ok": False})
        unknown = yield observer.request("node.pair.verify", {"nodeId": "nobody", "token": token})
        self.assertEqual(unknown["payload"], {"ok": False})


class PendingExpiryTests(NodeTestBase):
    auto_approve_local = False

    def setUp(self):
        self.clock = Clock()
        return super().setUp()

    @inlineCallbacks
    def test_a_connected_nodes_request_waits_for_an_answer(self):
        """As in the reference: the node is connected and retrying; its request does not lapse."""
        observer = yield self.operator()
        node = yield self.node()
        requested = yield event_seen(observer, is_event("node.pair.requested", nodeId=node.key.device_id))
        self.assertNotIn("expiresAtMs", requested["payload"])
        for _ in range(30):  # 30 minutes
            self.clock.advance(60)
        listed = yield observer.request("node.pair.list", {})
        self.assertEqual([r["requestId"] for r in listed["payload"]["pending"]], [requested["payload"]["requestId"]])
        approved = yield observer.request("node.pair.approve", {"requestId": requested["payload"]["requestId"]})
        self.assertTrue(approved["ok"], approved)

    @inlineCallbacks
    def test_explicit_request_expires_after_five_minutes(self):
        observer = yield self.operator()
        created = yield observer.request("node.pair.request", {"nodeId": "explicit", "commands": ["echo"]})
        request_id = created["payload"]["request"]["requestId"]
        self.assertEqual(created["payload"]["request"]["expiresAtMs"], created["payload"]["request"]["ts"] + 300_000)
        for _ in range(4):  # 240 s: still pending
            self.clock.advance(60)
        listed = yield observer.request("node.pair.list", {})
        self.assertEqual([r["requestId"] for r in listed["payload"]["pending"]], [request_id])
        for _ in range(2):  # 360 s: the pruner has run past the five-minute mark
            self.clock.advance(60)
        resolved = yield event_seen(observer, is_event("node.pair.resolved", nodeId="explicit"))
        self.assertEqual(resolved["payload"]["decision"], "rejected")
        self.assertEqual(resolved["payload"]["requestId"], request_id)
        self.assertEqual(resolved["payload"].get("reason"), "expired")
        listed = yield observer.request("node.pair.list", {})
        self.assertEqual(listed["payload"]["pending"], [])
        late = yield observer.request("node.pair.approve", {"requestId": request_id})
        self.assertError(late, "INVALID_REQUEST", "unknown requestId")


class LocalSilentApprovalTests(NodeTestBase):
    @inlineCallbacks
    def test_loopback_device_is_paired_silently_but_its_surface_waits(self):
        """As in the reference: device pairing alone must not grant commands."""
        observer = yield self.operator()
        node = yield self.node(commands=["echo", "system.run", "file.stat"], approve=False)
        node_id = node.key.device_id
        requested = yield event_seen(observer, is_event("node.pair.requested", nodeId=node_id))
        self.assertIs(requested["payload"]["silent"], True)
        # As in the reference, a loopback address is not reported (the IP column stays empty).
        self.assertNotIn("remoteIp", requested["payload"])
        self.assertEqual(requested["payload"]["commands"], ["echo", "system.run"])
        self.assertEqual(requested["payload"]["requiredApproveScopes"], ["operator.pairing", "operator.admin"])
        self.assertIsNone(self.gateway.node_pairing.store.paired(node_id))
        nodes = yield observer.request("node.list", {})
        [row] = nodes["payload"]["nodes"]
        self.assertEqual((row["nodeId"], row["paired"], row["connected"], row["commands"]), (node_id, True, True, []))
        self.assertEqual(row["approvalState"], "pending-approval")
        self.assertNotIn("remoteIp", row)
        # Issue 19 row 1d: gone from the socket, still known (device paired, request waiting).
        yield node.close()
        nodes = yield observer.request("node.list", {})
        [row] = nodes["payload"]["nodes"]
        self.assertEqual((row["paired"], row["connected"], row["approvalState"], row["sessionHost"]), (True, False, "pending-approval", False))
        self.assertEqual(row["pendingDeclaredCommands"], ["echo", "system.run"])
        described = yield observer.request("node.describe", {"nodeId": node_id})
        self.assertEqual(described["payload"]["platform"], "linux")
        approved = yield observer.request("node.pair.approve", {"requestId": requested["payload"]["requestId"]})
        self.assertEqual(approved["payload"]["node"]["commands"], ["echo", "system.run"])
        described = yield observer.request("node.describe", {"nodeId": node_id})
        self.assertEqual(described["payload"]["commands"], ["echo", "system.run"])
        self.assertEqual(described["payload"]["approvalState"], "approved")

    @inlineCallbacks
    def test_v3_node_accepted(self):
        node = yield self.node(min_protocol=3, max_protocol=3)
        self.assertIn(node.key.device_id, [n.node_id for n in self.gateway.nodes.all()])

    @inlineCallbacks
    def test_v3_hello(self):
        key = DeviceKeyPair.generate()
        client, hello = yield connect(
            self, self.running.url, device=key, role="node", client=NODE_CLIENT, scopes=[], commands=["echo"],
            min_protocol=3, max_protocol=3,
        )
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(hello["payload"]["protocol"], 3)


# -- invoke -----------------------------------------------------------------------------------


class InvokeTests(NodeTestBase):
    config = {"gateway": {"nodes": {"commands": {"deny": ["forbidden.cmd"], "allow": ["camera.clip"]}}}}

    @inlineCallbacks
    def test_invoke_round_trip(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo"])
        node_id = node.key.device_id
        params = {"text": "hi", "n": [1, 2]}
        request_id = send_request(op, "node.invoke", {"nodeId": node_id, "command": "echo", "params": params, "idempotencyKey": "k1"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        self.assertNotIn("seq", invoke)
        payload = invoke["payload"]
        self.assertEqual(payload["nodeId"], node_id)
        self.assertEqual(payload["command"], "echo")
        self.assertIsInstance(payload["paramsJSON"], str)
        self.assertEqual(json.loads(payload["paramsJSON"]), params)
        self.assertEqual(payload["timeoutMs"], 30000)
        self.assertEqual(payload["idempotencyKey"], "k1")
        answer = yield node.request(
            "node.invoke.result", {"id": payload["id"], "nodeId": node_id, "ok": True, "payloadJSON": json.dumps({"echo": "hi"})}
        )
        self.assertTrue(answer["ok"], answer)
        response = yield event_seen(op, response_to(request_id))
        self.assertTrue(response["ok"], response)
        self.assertEqual(
            response["payload"],
            {"ok": True, "nodeId": node_id, "command": "echo", "payload": {"echo": "hi"}, "payloadJSON": json.dumps({"echo": "hi"})},
        )

    @inlineCallbacks
    def test_node_error(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo"])
        node_id = node.key.device_id
        request_id = send_request(op, "node.invoke", {"nodeId": node_id, "command": "echo", "idempotencyKey": "k-err"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        self.assertIsNone(invoke["payload"]["paramsJSON"])
        yield node.request(
            "node.invoke.result",
            {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": False, "error": {"code": "E_CAMERA", "message": "camera busy"}},
        )
        response = yield event_seen(op, response_to(request_id))
        # The reference's shape: "CODE: message", the node's error, and that the command was sent.
        self.assertError(response, "UNAVAILABLE", "E_CAMERA: camera busy")
        self.assertEqual(response["error"]["details"]["nodeError"], {"code": "E_CAMERA", "message": "camera busy"})
        self.assertIs(response["error"]["details"]["nodeCommandDispatched"], True)

    @inlineCallbacks
    def test_node_disconnect_mid_invoke(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo"])
        request_id = send_request(op, "node.invoke", {"nodeId": node.key.device_id, "command": "echo", "idempotencyKey": "k-dc"})
        yield event_seen(node, is_event("node.invoke.request"))
        yield node.close()
        # Default timeout is 30 s on the real reactor; the test timeout is 15 s, so this must be immediate.
        response = yield event_seen(op, response_to(request_id))
        self.assertError(response, "UNAVAILABLE", "node disconnected (echo)")

    @inlineCallbacks
    def test_undeclared_command(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo"])
        response = yield op.request("node.invoke", {"nodeId": node.key.device_id, "command": "other", "idempotencyKey": "k"})
        self.assertError(response, "INVALID_REQUEST", 'node command not allowed: the node (platform: linux) does not support "other"')
        self.assertEqual(response["error"]["details"], {"reason": "command not declared by node", "command": "other"})

    @inlineCallbacks
    def test_deny_wins(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo", "forbidden.cmd"])
        response = yield op.request("node.invoke", {"nodeId": node.key.device_id, "command": "forbidden.cmd", "idempotencyKey": "k"})
        self.assertError(response, "INVALID_REQUEST", 'node command not allowed: "forbidden.cmd" is blocked by gateway.nodes.commands.deny')
        self.assertEqual(response["error"]["details"]["reason"], "command not allowlisted")

    @inlineCallbacks
    def test_dangerous_command_needs_explicit_allow(self):
        op = yield self.operator()
        node = yield self.node(commands=["camera.snap", "camera.clip"])
        node_id = node.key.device_id
        response = yield op.request("node.invoke", {"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "k1"})
        self.assertError(
            response, "INVALID_REQUEST", 'node command not allowed: "camera.snap" requires explicit gateway.nodes.commands.allow opt-in'
        )
        self.assertEqual(response["error"]["details"]["reason"], "command not allowlisted")
        # camera.clip is in gateway.nodes.commands.allow: it reaches the node.
        request_id = send_request(op, "node.invoke", {"nodeId": node_id, "command": "camera.clip", "idempotencyKey": "k2"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        self.assertEqual(invoke["payload"]["command"], "camera.clip")
        yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True, "payload": {"a": 1}})
        answered = yield event_seen(op, response_to(request_id))
        self.assertTrue(answered["ok"], answered)
        self.assertEqual(answered["payload"]["payload"], {"a": 1})

    @inlineCallbacks
    def test_unknown_node(self):
        op = yield self.operator()
        response = yield op.request("node.invoke", {"nodeId": "nope", "command": "echo", "idempotencyKey": "k"})
        self.assertError(response, "UNAVAILABLE", "node not connected")

    @inlineCallbacks
    def test_host_boundary_commands_need_admin(self):
        """As in the reference: browser.proxy, fs.listDir, terminal.upload need admin; system.run
        and system.which only write (the exec approval gate guards those)."""
        writer = yield self.operator(["operator.write"])
        node = yield self.node(commands=["browser.proxy", "echo"])
        response = yield writer.request("node.invoke", {"nodeId": node.key.device_id, "command": "browser.proxy", "idempotencyKey": "k"})
        self.assertError(response, "FORBIDDEN", "missing scope: operator.admin")
        reader = yield self.operator(["operator.read"])
        response = yield reader.request("node.invoke", {"nodeId": node.key.device_id, "command": "echo", "idempotencyKey": "k"})
        self.assertError(response, "FORBIDDEN", "missing scope: operator.write")

    @inlineCallbacks
    def test_idempotent_replay(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo", "other"])
        node_id = node.key.device_id
        invoke_params = {"nodeId": node_id, "command": "echo", "params": {"x": 1}, "idempotencyKey": "same"}
        first_id = send_request(op, "node.invoke", invoke_params)
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        # A replay while the first is still running joins it.
        second_id = send_request(op, "node.invoke", invoke_params)
        # An operator round trip proves the replay reached the gateway before the node answers.
        yield op.request("node.list", {})
        yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True, "payloadJSON": "[1]"})
        first = yield event_seen(op, response_to(first_id))
        second = yield event_seen(op, response_to(second_id))
        self.assertEqual(first["payload"]["payload"], [1])
        self.assertEqual(second["payload"], first["payload"])
        # A replay after completion gets the same result.
        third = yield op.request("node.invoke", invoke_params)
        self.assertEqual(third["payload"], first["payload"])
        # Same key, different command: refused.
        clash = yield op.request("node.invoke", dict(invoke_params, command="other"))
        self.assertError(clash, "INVALID_REQUEST", "idempotencyKey was already used for a different invoke")
        # The node saw exactly one request.
        yield node.request("node.event", {"event": "ping"})
        requests = [f for f in list(node.skipped) + list(node.frames) if is_event("node.invoke.request")(f)]
        self.assertEqual(requests, [])

    @inlineCallbacks
    def test_hundred_concurrent_invokes(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo"])
        node_id = node.key.device_id
        sent = {}
        for i in range(100):
            rid = send_request(op, "node.invoke", {"nodeId": node_id, "command": "echo", "params": {"i": i}, "idempotencyKey": f"c{i}"})
            sent[rid] = i
        invokes = []
        for _ in range(100):
            frame = yield event_seen(node, is_event("node.invoke.request"))
            invokes.append(frame["payload"])
        self.assertEqual(len({p["id"] for p in invokes}), 100)
        for payload in reversed(invokes):
            i = json.loads(payload["paramsJSON"])["i"]
            node.send(
                {
                    "type": "req",
                    "id": f"r-{payload['id']}",
                    "method": "node.invoke.result",
                    "params": {"id": payload["id"], "nodeId": node_id, "ok": True, "payloadJSON": json.dumps({"i": i, "sq": i * i})},
                }
            )
        got = {}
        while len(got) < 100:
            frame = yield op.next_matching(lambda f: isinstance(f, dict) and f.get("type") == "res", limit=500)
            got[frame["id"]] = frame
        self.assertEqual(set(got), set(sent))
        for rid, i in sent.items():
            self.assertTrue(got[rid]["ok"], got[rid])
            self.assertEqual(got[rid]["payload"]["payload"], {"i": i, "sq": i * i})
        self.assertEqual(self.gateway.nodes.get(node_id).invokes, {})

    @inlineCallbacks
    def test_late_or_unknown_result_is_harmless(self):
        node = yield self.node(commands=["echo"])
        answer = yield node.request("node.invoke.result", {"id": "nope", "nodeId": node.key.device_id, "ok": True})
        self.assertTrue(answer["ok"], answer)
        self.assertEqual(answer["payload"], {"ok": True, "ignored": True})

    @inlineCallbacks
    def test_a_node_cannot_answer_another_nodes_invoke(self):
        """The reference's rule: nodeId must be the caller's own, so a leaked invoke id is useless."""
        op = yield self.operator()
        target = yield self.node(commands=["echo"])
        other = yield self.node(commands=["echo"])
        target_id = target.key.device_id
        request_id = send_request(op, "node.invoke", {"nodeId": target_id, "command": "echo", "params": {}, "idempotencyKey": "k-x"})
        invoke = yield event_seen(target, is_event("node.invoke.request"))
        forged = {"id": invoke["payload"]["id"], "nodeId": target_id, "ok": True, "payloadJSON": "\"forged\""}
        answer = yield other.request("node.invoke.result", forged)
        self.assertEqual((answer["ok"], answer["error"]["message"]), (False, "nodeId mismatch"))
        self.assertIn(invoke["payload"]["id"], self.gateway.nodes.get(target_id).invokes)  # still pending
        yield target.request("node.invoke.result", {**forged, "payloadJSON": "\"real\""})
        response = yield event_seen(op, response_to(request_id))
        self.assertEqual(response["payload"]["payload"], "real")

    @inlineCallbacks
    def test_operator_cannot_send_node_results(self):
        op = yield self.operator()
        response = yield op.request("node.invoke.result", {"id": "x", "nodeId": "y", "ok": True})
        self.assertIs(response["ok"], False, response)


class InvokeTimeoutTests(NodeTestBase):
    def setUp(self):
        self.clock = Clock()
        return super().setUp()

    @inlineCallbacks
    def test_timeout_cancels_on_node(self):
        op = yield self.operator()
        node = yield self.node(commands=["echo"])
        node_id = node.key.device_id
        request_id = send_request(op, "node.invoke", {"nodeId": node_id, "command": "echo", "timeoutMs": 5000, "idempotencyKey": "t"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        self.assertEqual(invoke["payload"]["timeoutMs"], 5000)
        self.clock.advance(4.9)
        self.assertEqual(len(self.gateway.nodes.get(node_id).invokes), 1)
        self.clock.advance(0.2)
        response = yield event_seen(op, response_to(request_id))
        self.assertError(response, "UNAVAILABLE", "TIMEOUT: node invoke timed out")
        self.assertEqual(response["error"]["details"]["nodeCommandDispatched"], True)
        cancel = yield event_seen(node, is_event("node.invoke.cancel"))
        self.assertEqual(cancel["payload"], {"invokeId": invoke["payload"]["id"], "nodeId": node_id})
        self.assertNotIn("seq", cancel)
        # A result after the timeout changes nothing.
        late = yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True})
        self.assertTrue(late["ok"], late)


# -- events, describe, rename, reconnect, presence -----------------------------------------------


class NodeRegistryTests(NodeTestBase):
    @inlineCallbacks
    def test_node_event_is_acknowledged_not_broadcast(self):
        """The reference does not forward node events to operators; neither do we."""
        reader = yield self.operator(["operator.read"])
        node = yield self.node()
        answer = yield node.request("node.event", {"event": "battery", "payload": {"level": 42}})
        self.assertEqual(answer["payload"], {"ok": True, "event": "battery", "handled": False, "reason": "unsupported-event"})
        yield reader.request("node.list", {})
        self.assertNotIn("node.event", [f.get("event") for f in list(reader.skipped) + list(reader.frames)])

    @inlineCallbacks
    def test_operator_cannot_send_node_event(self):
        op = yield self.operator()
        response = yield op.request("node.event", {"event": "x"})
        self.assertIs(response["ok"], False, response)

    @inlineCallbacks
    def test_describe(self):
        op = yield self.operator()
        node = yield self.node(commands=["b.cmd", "a.cmd"], caps=["z", "a"])
        described = yield op.request("node.describe", {"nodeId": node.key.device_id})
        self.assertTrue(described["ok"], described)
        self.assertEqual(described["payload"]["nodeId"], node.key.device_id)
        self.assertEqual(described["payload"]["commands"], ["a.cmd", "b.cmd"])
        self.assertEqual(described["payload"]["caps"], ["a", "z"])
        self.assertIs(described["payload"]["connected"], True)
        unknown = yield op.request("node.describe", {"nodeId": "ghost"})
        self.assertError(unknown, "INVALID_REQUEST", "unknown nodeId")

    @inlineCallbacks
    def test_rename(self):
        op = yield self.operator()
        node = yield self.node(client=dict(NODE_CLIENT, displayName="Old Name"))
        node_id = node.key.device_id
        empty = yield op.request("node.rename", {"nodeId": node_id, "displayName": "   "})
        self.assertError(empty, "INVALID_REQUEST", "displayName required")
        renamed = yield op.request("node.rename", {"nodeId": node_id, "displayName": "  Living Room  "})
        self.assertTrue(renamed["ok"], renamed)
        self.assertEqual(renamed["payload"], {"nodeId": node_id, "displayName": "Living Room"})
        nodes = yield op.request("node.list", {})
        [row] = nodes["payload"]["nodes"]
        self.assertEqual(row["displayName"], "Living Room")
        unknown = yield op.request("node.rename", {"nodeId": "ghost", "displayName": "x"})
        self.assertError(unknown, "INVALID_REQUEST", "unknown nodeId")

    @inlineCallbacks
    def test_reconnect_replaces_old_socket(self):
        op = yield self.operator()
        key = DeviceKeyPair.generate()
        first = yield self.node(key=key)
        second = yield self.node(key=key)
        code, _ = yield first.closed
        self.assertEqual(code, 1000)
        nodes = yield op.request("node.list", {})
        self.assertEqual([(n["nodeId"], n["connected"]) for n in nodes["payload"]["nodes"]], [(key.device_id, True)])
        # The new socket is the live one: what it publishes is the node's.
        answer = yield second.request("node.skills.update", {"skills": []})
        self.assertEqual(answer["payload"], {"nodeId": key.device_id, "skills": []})

    @inlineCallbacks
    def test_reconnect_fails_pending_invokes_of_old_socket(self):
        op = yield self.operator()
        key = DeviceKeyPair.generate()
        first = yield self.node(key=key, commands=["echo"])
        request_id = send_request(op, "node.invoke", {"nodeId": key.device_id, "command": "echo", "idempotencyKey": "r"})
        yield event_seen(first, is_event("node.invoke.request"))
        yield self.node(key=key, commands=["echo"])
        response = yield event_seen(op, response_to(request_id))
        self.assertError(response, "UNAVAILABLE", "node reconnected (echo)")
        code, _ = yield first.closed
        self.assertEqual(code, 1000)

    @inlineCallbacks
    def test_no_node_presence_event_and_list_follows_the_socket(self):
        op = yield self.operator(["operator.read"])
        node = yield self.node()
        node_id = node.key.device_id
        yield node.close()
        nodes = yield op.request("node.list", {})
        self.assertEqual([(n["nodeId"], n["connected"]) for n in nodes["payload"]["nodes"]], [(node_id, False)])
        self.assertNotIn("node.presence", [f.get("event") for f in list(op.skipped) + list(op.frames)])

    @inlineCallbacks
    def test_node_without_device_is_refused(self):
        """Without a device identity a node is refused (§3.6: nodes need an identity)."""
        client, hello = yield connect(self, self.running.url, role="node", client=NODE_CLIENT, scopes=[])
        self.assertIs(hello["ok"], False, hello)
        yield client.closed
        self.assertEqual(self.gateway.nodes.all(), [])
