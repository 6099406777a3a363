"""Three real gateway processes on loopback sharing one PostgreSQL schema and one Redis prefix.

What a user of a cluster relies on: an operator on A sees a node connected to B and invokes it;
a session written through A is listed and extended through C; a device paired on A connects to B
with its device token; an event from B reaches a subscriber on C with the same scope gating;
and when B is killed with SIGKILL, A and C drop its node and presence and fail the invoke that was
waiting on it, within the heartbeat TTL. Each test has its own schema and key prefix.
"""
from __future__ import annotations

import json
import os
import socket

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python import log
from twisted.web.client import HTTPConnectionPool
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.security.device_identity import DeviceKeyPair

from .support.cluster import POSTGRES_DSN, REDIS_URL, fresh_schema, require_postgres, require_redis
from .support.gateway import TOKEN
from .support.twistd import TwistdGateway
from .support.upstream import Behaviour, FakeUpstream
from .support.wsclient import connect
from .test_nodes import NODE_CLIENT, event_seen, is_event, response_to, send_request

UI_CLIENT = {"id": "openclaw-control-ui", "version": "1.0", "platform": "web", "mode": "webchat", "instanceId": "ui-1"}
HEARTBEAT_TTL_S = 5


@inlineCallbacks
def wait_ready(port, attempts=200):
    """Poll ``/readyz`` until the stores have loaded (bounded; the port listens before that)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        for _ in range(attempts):
            response = yield treq.get(f"http://127.0.0.1:{port}/readyz", pool=pool)
            yield treq.content(response)
            if response.code == 200:
                return
            yield deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"gateway on {port} never became ready")
    finally:
        yield pool.closeCachedConnections()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClusterTestBase(TestCase):
    timeout = 240

    @inlineCallbacks
    def setUp(self):
        require_postgres()
        require_redis()
        self.schema = fresh_schema(self)
        self.instances = {}
        extra = self.extra_args()
        yield gatherResults([self.start_instance(name, [*extra, *self.instance_args(name)]) for name in self.names])

    names = ("A", "B", "C")
    postgres_dsn = POSTGRES_DSN  # a test may put a proxy or a private server in between
    redis_url = REDIS_URL

    def extra_args(self):
        return []

    def instance_args(self, name):
        """Arguments for one instance only."""
        return []

    @inlineCallbacks
    def start_instance(self, name, extra=()):
        port = free_port()
        state_dir = self.mktemp()
        os.makedirs(state_dir)
        args = [
            "--port", str(port), "--bind", "loopback", "--token", TOKEN, "--state-dir", state_dir,
            "--cluster-postgres", self.postgres_dsn, "--cluster-redis", self.redis_url,
            "--cluster-schema", self.schema, "--cluster-instance-id", name, *extra,
        ]
        process = TwistdGateway(self, args, env={"OPENCLAW_CLUSTER_HEARTBEAT_TTL_S": str(HEARTBEAT_TTL_S)})
        # What each instance logged ends up in test.log, for a failure seen only in CI.
        self.addCleanup(lambda: log.msg(f"instance {name}:\n" + "\n".join(process.lines[-60:])))
        yield process.wait_for_line(f"cluster instance {name} on PostgreSQL", timeout_s=90)
        yield process.wait_for_port(port)
        yield wait_ready(port)
        process.url = f"ws://127.0.0.1:{port}"
        self.instances[name] = process
        return process

    @inlineCallbacks
    def operator(self, name, key=None, client=None, scopes=None, **kwargs):
        client_socket, hello = yield connect(
            self, self.instances[name].url, device=key or DeviceKeyPair.generate(), client=client,
            scopes=scopes, **kwargs,
        )
        self.assertTrue(hello["ok"], hello)
        return client_socket

    @inlineCallbacks
    def node(self, name, commands=("system.notify",)):
        key = DeviceKeyPair.generate()
        node, hello = yield connect(
            self, self.instances[name].url, device=key, role="node", client=dict(NODE_CLIENT),
            scopes=[], caps=[], commands=list(commands),
        )
        self.assertTrue(hello["ok"], hello)
        node.key = key
        return node


    @inlineCallbacks
    def approve_commands(self, operator, node_id):
        """The node's command surface waits for an operator: approve it from wherever
        ``operator`` is (the request was made on the node's instance and relayed)."""
        requested = yield event_seen(operator, is_event("node.pair.requested", nodeId=node_id))
        approved = yield operator.request("node.pair.approve", {"requestId": requested["payload"]["requestId"]})
        self.assertTrue(approved["ok"], approved)


class ThreeInstanceTests(ClusterTestBase):
    @inlineCallbacks
    def test_operator_on_a_invokes_node_on_b(self):
        operator = yield self.operator("A")
        node = yield self.node("B")
        node_id = node.key.device_id
        yield self.approve_commands(operator, node_id)
        listed = yield operator.request("node.list", {})
        row = next(r for r in listed["payload"]["nodes"] if r["nodeId"] == node_id)
        self.assertTrue(row["connected"], row)
        self.assertEqual(row["commands"], ["system.notify"])

        request_id = send_request(operator, "node.invoke", {"nodeId": node_id, "command": "system.notify", "params": {"x": 1}, "idempotencyKey": "k1"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        self.assertEqual(invoke["payload"]["command"], "system.notify")
        self.assertEqual(invoke["payload"]["paramsJSON"], '{"x":1}')
        yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True, "payloadJSON": '{"system.notify":1}'})
        response = yield event_seen(operator, response_to(request_id))
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["payload"], {"system.notify": 1})

        # A node error comes back as the protocol's error, with the node's details.
        request_id = send_request(operator, "node.invoke", {"nodeId": node_id, "command": "system.notify", "idempotencyKey": "k2"})
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        yield node.request(
            "node.invoke.result",
            {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": False, "error": {"code": "BOOM", "message": "it broke"}},
        )
        response = yield event_seen(operator, response_to(request_id))
        self.assertEqual(response["error"]["code"], "UNAVAILABLE")
        self.assertIn("it broke", response["error"]["message"])
        self.assertEqual(response["error"]["details"]["nodeError"]["code"], "BOOM")

    @inlineCallbacks
    def test_session_written_on_a_is_listed_and_extended_on_c(self):
        on_a = yield self.operator("A")
        on_c = yield self.operator("C")
        created = yield on_a.request("sessions.patch", {"key": "agent:main:shared", "label": "Shared work"})
        self.assertTrue(created["ok"], created)
        listed = yield on_c.request("sessions.list", {"search": "shared w"})
        self.assertEqual([row["key"] for row in listed["payload"]["sessions"]], ["agent:main:shared"])
        extended = yield on_c.request("sessions.patch", {"key": "agent:main:shared", "thinkingLevel": "high"})
        self.assertTrue(extended["ok"], extended)
        resolved = yield on_a.request("sessions.resolve", {"label": "Shared work"})
        self.assertEqual(resolved["payload"]["key"], "agent:main:shared")
        again = yield on_a.request("sessions.list", {"search": "shared"})
        row = again["payload"]["sessions"][0]
        self.assertEqual((row["label"], row["thinkingLevel"]), ("Shared work", "high"))

    @inlineCallbacks
    def test_device_paired_on_a_connects_to_b_with_its_token(self):
        key = DeviceKeyPair.generate()
        first, hello = yield connect(self, self.instances["A"].url, device=key)
        self.assertTrue(hello["ok"], hello)
        device_token = hello["payload"]["auth"]["deviceToken"]
        _, on_b = yield connect(self, self.instances["B"].url, device=key, auth={"deviceToken": device_token})
        self.assertTrue(on_b["ok"], on_b)
        self.assertEqual(on_b["payload"]["auth"]["method"], "device-token")
        # A wrong token is refused on B as it would be on A.
        _, wrong = yield connect(self, self.instances["B"].url, device=key, auth={"deviceToken": "nope"})
        self.assertFalse(wrong["ok"])
        listed = yield first.request("device.pair.list", {})
        self.assertIn(key.device_id, [d["deviceId"] for d in listed["payload"]["paired"]])

    @inlineCallbacks
    def test_event_from_b_reaches_c_with_scope_gating(self):
        """``node.pair.requested`` (pairing scope) from B reaches the pairer on C, not the reader."""
        pairer = yield self.operator("C", scopes=["operator.pairing"])
        reader = yield self.operator("C", scopes=["operator.read"])
        yield pairer.request("health", {})
        before = max([f.get("seq", 0) for f in list(pairer.skipped) + list(pairer.frames) if f.get("type") == "event"] or [0])
        node = yield self.node("B")
        node_id = node.key.device_id
        seen = yield event_seen(pairer, is_event("node.pair.requested", nodeId=node_id))
        self.assertEqual(seen["payload"]["commands"], ["system.notify"])
        self.assertGreater(seen["seq"], before)  # C's own numbering for this connection
        # The reader (no pairing scope) got nothing of it: a round trip proves its stream is current.
        yield reader.request("health", {})
        frames = list(reader.skipped) + list(reader.frames)
        self.assertEqual([f for f in frames if f.get("event") == "node.pair.requested"], [])

    @inlineCallbacks
    def test_presence_lists_every_instance_and_its_clients(self):
        watcher = yield self.operator("A", client=dict(UI_CLIENT))
        yield self.operator("C", client={**UI_CLIENT, "instanceId": "ui-on-c"})
        # Eventually every instance and client is listed (each arrives on its own notice).
        presence = yield event_seen(
            watcher, lambda f: f.get("event") == "presence" and all(f'"{i}"' in json.dumps(f["payload"]) for i in ("C", "ui-on-c", "B"))
        )
        instance_ids = {entry.get("instanceId") for entry in presence["payload"]["presence"]}
        self.assertTrue({"A", "B", "C", "ui-1", "ui-on-c"} <= instance_ids, instance_ids)
        health = yield watcher.request("health", {})
        self.assertEqual(health["payload"]["cluster"]["instanceId"], "A")


class InstanceDeathTests(ClusterTestBase):
    @inlineCallbacks
    def test_kill_9_of_b_is_handled_within_the_ttl(self):
        operator = yield self.operator("A")
        node = yield self.node("B")
        node_id = node.key.device_id
        yield self.approve_commands(operator, node_id)
        pending = send_request(operator, "node.invoke", {"nodeId": node_id, "command": "system.notify", "idempotencyKey": "dies"})
        yield event_seen(node, is_event("node.invoke.request"))
        started = reactor.seconds()
        self.instances["B"].process.signalProcess("KILL")
        failed = yield event_seen(operator, response_to(pending))
        self.assertEqual(failed["error"]["code"], "UNAVAILABLE")
        self.assertLess(reactor.seconds() - started, 15)
        listed = yield operator.request("node.list", {})
        self.assertFalse(any(r["connected"] for r in listed["payload"]["nodes"] if r["nodeId"] == node_id))
        health = yield operator.request("health", {})
        self.assertEqual(health["payload"]["cluster"]["instances"], ["A", "C"])
        presence = yield operator.request("system-presence", {})
        self.assertNotIn("B", {entry.get("instanceId") for entry in presence["payload"]}, presence["payload"])


class TwoInstancesWithModel(ClusterTestBase):
    """A and C, both configured with one slow fake model server."""

    names = ("A", "C")

    def extra_args(self):
        self.upstream = FakeUpstream().start(self)
        self.upstream.behaviour = Behaviour(mode="slow", interval_s=0.2)
        path = os.path.join(self.mktemp() + "-config.json")
        with open(path, "w") as handle:
            json.dump(self.upstream.config(), handle)
        return ["--config", path]

    @inlineCallbacks
    def upstream_idle(self):
        """The upstream may still be finishing its last response (one paced step after [DONE])."""
        for _ in range(100):
            if not self.upstream.open_requests:
                break
            yield deferLater(reactor, 0.05, lambda: None)


class RacingRunsTests(TwoInstancesWithModel):
    """Two instances asked to run one session at the same moment take turns (session lease)."""

    @inlineCallbacks
    def test_racing_chat_sends_keep_one_consistent_transcript(self):
        on_a = yield self.operator("A")
        on_c = yield self.operator("C")
        first = send_request(on_a, "chat.send", {"sessionKey": "main", "message": "from A", "idempotencyKey": "race-a"})
        second = send_request(on_c, "chat.send", {"sessionKey": "main", "message": "from C", "idempotencyKey": "race-c"})
        for client, request_id in ((on_a, first), (on_c, second)):
            accepted = yield event_seen(client, response_to(request_id))
            self.assertTrue(accepted["ok"], accepted)
        finals = []
        while len(finals) < 2:
            frame = yield event_seen(on_a, lambda f: f.get("event") == "chat" and f["payload"].get("state") == "final")
            finals.append(frame["payload"]["runId"])
        self.assertEqual(len(set(finals)), 2)
        # The runs took turns: the second prompt already holds the first exchange.
        prompts = [[m.get("content") for m in request["body"]["messages"] if m.get("role") != "system"] for request in self.upstream.requests]
        self.assertEqual(len(prompts), 2)
        earlier, later = prompts
        self.assertEqual(len(earlier), 1, prompts)
        self.assertEqual(later[0], earlier[0], prompts)
        self.assertEqual(later[1], "Hello there!", prompts)
        self.assertEqual(len(later), 3, prompts)
        history = yield on_c.request("chat.history", {"sessionKey": "main"})
        roles = [message["role"] for message in history["payload"]["messages"]]
        self.assertEqual(roles, ["user", "assistant", "user", "assistant"])
        texts = [message["content"][0]["text"] if isinstance(message["content"], list) else message["content"] for message in history["payload"]["messages"]]
        self.assertEqual(sorted(texts[0::2]), ["from A", "from C"])
        yield self.upstream_idle()


def is_final(run_id):
    return lambda f: f.get("event") == "chat" and f["payload"].get("state") == "final" and f["payload"].get("runId") == run_id


class IdempotencyAcrossInstancesTests(TwoInstancesWithModel):
    """A client retrying through the balancer reaches another instance: same outcome, one run."""

    @inlineCallbacks
    def test_chat_send_and_agent_retried_on_another_instance_run_once(self):
        on_a = yield self.operator("A")
        on_c = yield self.operator("C")
        params = {"sessionKey": "main", "message": "only once", "idempotencyKey": "same-chat"}
        first = yield on_a.request("chat.send", params)
        self.assertEqual(first["payload"], {"runId": "same-chat", "status": "started"})
        replay = yield on_c.request("chat.send", params)
        self.assertEqual(replay["payload"], {"runId": "same-chat", "status": "in_flight"})
        conflict = yield on_c.request("chat.send", {**params, "message": "something else"})
        self.assertEqual(conflict["error"]["details"], {"reason": "chat-request-conflict"})
        yield event_seen(on_c, is_final("same-chat"))  # A's run, relayed to C
        after = yield on_c.request("chat.send", params)
        self.assertEqual(after["payload"], {"runId": "same-chat", "status": "ok"})

        # agent: both requests get the acceptance, then the same final answer of one run.
        agent_params = {"sessionKey": "agent:main:other", "message": "agent once", "idempotencyKey": "same-agent"}
        from_a = send_request(on_a, "agent", agent_params)
        accepted = yield event_seen(on_a, response_to(from_a))
        self.assertEqual(accepted["payload"]["status"], "accepted")
        from_c = send_request(on_c, "agent", agent_params)
        accepted_c = yield event_seen(on_c, response_to(from_c))
        self.assertEqual((accepted_c["payload"]["status"], accepted_c["payload"]["runId"]), ("accepted", "same-agent"))
        final_a = yield event_seen(on_a, response_to(from_a))
        final_c = yield event_seen(on_c, response_to(from_c))
        self.assertEqual(final_a["payload"]["status"], "ok")
        self.assertEqual(final_c["payload"], final_a["payload"])
        self.assertEqual(len(self.upstream.requests), 2)  # one chat run, one agent run
        history = yield on_c.request("chat.history", {"sessionKey": "main"})
        self.assertEqual([m["role"] for m in history["payload"]["messages"]], ["user", "assistant"])
        yield self.upstream_idle()

    @inlineCallbacks
    def test_node_invoke_retried_on_the_nodes_instance_reaches_the_node_once(self):
        on_a = yield self.operator("A")
        on_c = yield self.operator("C")
        node = yield self.node("C")
        node_id = node.key.device_id
        yield self.approve_commands(on_a, node_id)
        params = {"nodeId": node_id, "command": "system.notify", "params": {"n": 1}, "idempotencyKey": "inv-1"}
        from_a = send_request(on_a, "node.invoke", params)
        invoke = yield event_seen(node, is_event("node.invoke.request"))
        from_c = send_request(on_c, "node.invoke", params)
        refused = yield on_c.request("node.invoke", {**params, "params": {"n": 2}})
        self.assertIn("different invoke", refused["error"]["message"])
        yield node.request("node.invoke.result", {"id": invoke["payload"]["id"], "nodeId": node_id, "ok": True, "payloadJSON": '{"done":1}'})
        answer_a = yield event_seen(on_a, response_to(from_a))
        answer_c = yield event_seen(on_c, response_to(from_c))
        self.assertEqual(answer_a["payload"]["payload"], {"done": 1})
        self.assertEqual(answer_c["payload"], answer_a["payload"])
        # The node was asked once: the next request it sees is a new key's.
        send_request(on_a, "node.invoke", {**params, "params": {"n": 3}, "idempotencyKey": "inv-2"})
        following = yield event_seen(node, is_event("node.invoke.request"))
        self.assertEqual(following["payload"]["paramsJSON"], '{"n":3}')


class ConfigAcrossInstancesTests(ClusterTestBase):
    """A config.patch on A reaches C through C's own reload path; C keeps its own port setting."""

    names = ("A", "C")

    def instance_args(self, name):
        path = self.mktemp() + f"-{name}.json"
        own_port = {"A": 40001, "C": 40003, "D": 40004}[name]  # overridden by --port: only the file's value differs
        with open(path, "w") as handle:
            json.dump({"gateway": {"port": own_port}, "agents": {"defaults": {"timeoutSeconds": 60}}}, handle)
        self.config_paths = {**getattr(self, "config_paths", {}), name: path}
        return ["--config", path]

    @inlineCallbacks
    def test_config_patch_on_a_is_applied_on_c(self):
        on_a = yield self.operator("A")
        on_c = yield self.operator("C")
        current = yield on_a.request("config.get", {})
        taken = self.instances["C"].wait_for_line("config revision", timeout_s=30)
        patched = yield on_a.request(
            "config.patch", {"raw": json.dumps({"agents": {"defaults": {"timeoutSeconds": 90}}, "gateway": {"port": 40999}}), "baseHash": current["payload"]["hash"]}
        )
        self.assertTrue(patched["ok"], patched)
        line = yield taken
        self.assertIn("from instance A taken", line)
        seen = yield on_c.request("config.get", {})
        parsed = seen["payload"]["parsed"]
        self.assertEqual(parsed["agents"]["defaults"]["timeoutSeconds"], 90)
        self.assertEqual(parsed["gateway"]["port"], 40003)  # per-instance: C's own
        with open(self.config_paths["C"]) as handle:
            self.assertEqual(json.load(handle)["agents"]["defaults"]["timeoutSeconds"], 90)
        health = yield on_c.request("health", {})
        self.assertEqual(health["payload"]["configReload"]["hash"], seen["payload"]["hash"])
        self.assertEqual(health["payload"]["configReload"]["lastDecision"]["decision"], "hot")

        # An instance started later catches up with the newest revision.
        late = yield self.start_instance("D", self.instance_args("D"))
        on_d = yield self.operator("D")
        for _ in range(100):
            seen_d = yield on_d.request("config.get", {})
            if seen_d["payload"]["parsed"]["agents"]["defaults"]["timeoutSeconds"] == 90:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(seen_d["payload"]["parsed"]["agents"]["defaults"]["timeoutSeconds"], 90)
        self.assertEqual(seen_d["payload"]["parsed"]["gateway"]["port"], 40004)
        self.assertTrue(late)
