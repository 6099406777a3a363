"""Request dispatch over real sockets: gate order, error shapes, post-auth frame rules (§1.5, §5, §7).

Every test drives a real gateway on loopback through the Autobahn test client, because the
behaviour under test is what a client sees on the wire (which frame, which code, whether the
socket survives), not just what the registry returns.
"""
from __future__ import annotations

import uuid

from twisted.internet.defer import fail, inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.methods.registry import ROLE_NODE, MethodSpec
from openclaw.security.device_identity import DeviceKeyPair
from openclaw.security.scopes import READ

from .support.gateway import start_gateway
from .support.wsclient import connect

NODE_CLIENT = {"id": "node-host", "version": "1.0.0", "platform": "linux", "mode": "node"}


@inlineCallbacks
def call(client, method, params=None, *, request_id=None, omit_params=False):
    """Send a req and return ``(response, frames_received_before_it)``."""
    request_id = request_id or uuid.uuid4().hex
    frame = {"type": "req", "id": request_id, "method": method}
    if not omit_params:
        frame["params"] = {} if params is None else params
    client.send(frame)
    response, before = yield response_to(client, request_id)
    return (response, before)


@inlineCallbacks
def response_to(client, request_id):
    """Read frames until the ``res`` for ``request_id``; return it and everything read before it."""
    before = []
    while True:
        frame = yield client.next_frame()
        if isinstance(frame, dict) and frame.get("type") == "res" and frame.get("id") == request_id:
            return (frame, before)
        before.append(frame)


@inlineCallbacks
def operator(testcase, running, scopes):
    """A device-less local CLI operator; loopback CLI keeps exactly the scopes it asks for."""
    client, hello = yield connect(testcase, running.url, scopes=scopes)
    testcase.assertTrue(hello["ok"], hello)
    testcase.assertEqual(hello["payload"]["auth"]["scopes"], scopes)
    return client


@inlineCallbacks
def node(testcase, running):
    """A node with a device identity; loopback nodes are paired silently."""
    client, hello = yield connect(
        testcase, running.url, role="node", client=NODE_CLIENT, scopes=[], device=DeviceKeyPair.generate()
    )
    testcase.assertTrue(hello["ok"], hello)
    testcase.assertEqual(hello["payload"]["auth"]["role"], "node")
    return client


class DispatchTestCase(TestCase):
    def assertError(self, response, code, message):
        self.assertEqual(response["type"], "res")
        self.assertIs(response["ok"], False, response)
        self.assertEqual(response["error"]["code"], code, response)
        self.assertEqual(response["error"]["message"], message, response)

    @inlineCallbacks
    def assertStillOpen(self, client):
        """The socket survives: a later request still gets a normal answer."""
        response, _ = yield call(client, "health")
        self.assertTrue(response["ok"], response)
        self.assertFalse(client.closed.called)


class MissingScopeTests(DispatchTestCase):
    """A method-level scope failure is FORBIDDEN with MISSING_SCOPE details and keeps the socket (fact 9)."""

    @inlineCallbacks
    def test_system_event_needs_admin(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "system-event", {"text": "hello"})
        self.assertEqual(
            response["error"],
            {
                "code": "FORBIDDEN",
                "message": "missing scope: operator.admin",
                "details": {
                    "code": "MISSING_SCOPE",
                    "missingScope": "operator.admin",
                    "requiredScopes": ["operator.admin"],
                },
            },
        )
        self.assertNotIn("payload", response)
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_write_is_not_admin(self):
        """Write implies a lot, but never admin."""
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.write"])
        response, _ = yield call(client, "system-event", {"text": "hello"})
        self.assertError(response, "FORBIDDEN", "missing scope: operator.admin")

    @inlineCallbacks
    def test_device_pair_list_needs_pairing(self):
        """Read and write do not open the pairing methods."""
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.read", "operator.write"])
        response, _ = yield call(client, "device.pair.list")
        self.assertError(response, "FORBIDDEN", "missing scope: operator.pairing")
        self.assertEqual(
            response["error"]["details"],
            {"code": "MISSING_SCOPE", "missingScope": "operator.pairing", "requiredScopes": ["operator.pairing"]},
        )
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_pairing_does_not_imply_read(self):
        """A pairing-only operator may list devices but not read status (fact 10)."""
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.pairing"])
        listed, _ = yield call(client, "device.pair.list")
        self.assertTrue(listed["ok"], listed)
        response, _ = yield call(client, "status")
        self.assertError(response, "FORBIDDEN", "missing scope: operator.read")

    @inlineCallbacks
    def test_write_satisfies_read_methods(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.write"])
        response, _ = yield call(client, "system-presence")
        self.assertTrue(response["ok"], response)
        self.assertIsInstance(response["payload"], list)

    @inlineCallbacks
    def test_scope_gate_runs_before_params(self):
        """A caller without the scope learns nothing about the params (authorization first)."""
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "system-event", {"bogus": 1})
        self.assertError(response, "FORBIDDEN", "missing scope: operator.admin")


class UnknownMethodTests(DispatchTestCase):
    """An unknown method is called that for every operator (issue 15: the reference tells non-admins
    ``missing scope: operator.admin``, which sends them after a permission problem that is not there)."""

    @inlineCallbacks
    def test_non_admin_sees_unknown_method(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.read", "operator.write", "operator.pairing"])
        response, _ = yield call(client, "no.such.method")
        self.assertEqual(response["error"], {"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"})
        yield self.assertStillOpen(client)


    @inlineCallbacks
    def test_admin_sees_unknown_method(self):
        """Golden frame "res error: unknown method": INVALID_REQUEST without details."""
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.admin"])
        response, _ = yield call(client, "no.such.method", request_id="39737e5c87924c5bb181c1b5879d0b98")
        self.assertEqual(
            response,
            {
                "type": "res",
                "id": "39737e5c87924c5bb181c1b5879d0b98",
                "ok": False,
                "error": {"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"},
            },
        )
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_reserved_prefix_needs_admin(self):
        """config.* is unimplemented here, and so admin-gated like any unknown method."""
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "config.set", {"raw": "{}"})
        self.assertError(response, "FORBIDDEN", "missing scope: operator.admin")


class HealthBypassTests(DispatchTestCase):
    """``health`` skips the role and scope gates and tolerates a missing params field."""

    @inlineCallbacks
    def test_health_with_no_scopes(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        response, _ = yield call(client, "health")
        self.assertTrue(response["ok"], response)
        self.assertIs(response["payload"]["ok"], True)

    @inlineCallbacks
    def test_request_without_params_field(self):
        """Golden "req without params field (health)": the params key may be omitted entirely."""
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        response, _ = yield call(client, "health", omit_params=True)
        self.assertTrue(response["ok"], response)

    @inlineCallbacks
    def test_empty_scopes_gate_everything_else(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        response, _ = yield call(client, "status")
        self.assertError(response, "FORBIDDEN", "missing scope: operator.read")


class ParamsValidationTests(DispatchTestCase):
    """Bad params are INVALID_REQUEST ``invalid <method> params: <errors>``; the socket stays open."""

    @inlineCallbacks
    def test_system_event_extra_property(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.admin"])
        response, _ = yield call(client, "system-event", {"text": "x", "bogus": 1})
        self.assertError(response, "INVALID_REQUEST", "invalid system-event params: at root: unexpected property 'bogus'")
        self.assertNotIn("details", response["error"])
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_system_event_missing_text(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.admin"])
        response, _ = yield call(client, "system-event", {"host": "h"})
        self.assertError(response, "INVALID_REQUEST", "invalid system-event params: must have required property 'text'")

    @inlineCallbacks
    def test_system_event_wrong_type(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.admin"])
        response, _ = yield call(client, "system-event", {"text": "x", "lastInputSeconds": "abc"})
        self.assertError(response, "INVALID_REQUEST", "invalid system-event params: at /lastInputSeconds: must be integer")

    @inlineCallbacks
    def test_status_takes_no_params(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "status", {"x": 1})
        self.assertError(response, "INVALID_REQUEST", "invalid status params: at root: unexpected property 'x'")
        ok, _ = yield call(client, "status")
        self.assertTrue(ok["ok"], ok)

    @inlineCallbacks
    def test_health_rejects_wrong_probe_type(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        response, _ = yield call(client, "health", {"probe": "yes"})
        self.assertError(response, "INVALID_REQUEST", "invalid health params: at /probe: must be boolean")


class PostAuthFrameRuleTests(DispatchTestCase):
    """After hello-ok, garbage is ignored and malformed frames get an error res, never a close (fact 4)."""

    @inlineCallbacks
    def test_non_json_is_ignored(self):
        """No reply at all: the next frame the client sees is the answer to its next request."""
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        client.send_raw(b"this is {not json")
        response, before = yield call(client, "health")
        self.assertTrue(response["ok"], response)
        self.assertEqual(before, [])
        self.assertFalse(client.closed.called)

    @inlineCallbacks
    def test_invalid_frame_echoes_its_id(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        client.send({"type": "req", "id": "abc", "method": "health", "bogus": 1})
        response, before = yield response_to(client, "abc")
        self.assertEqual(before, [])
        self.assertError(response, "INVALID_REQUEST", "invalid request frame: at root: unexpected property 'bogus'")
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_invalid_frame_without_id_uses_invalid(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        client.send({"type": "event", "event": "tick"})
        response, _ = yield response_to(client, "invalid")
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertTrue(response["error"]["message"].startswith("invalid request frame: "), response)
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_non_object_json_uses_invalid(self):
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        client.send([1, 2, 3])
        response, _ = yield response_to(client, "invalid")
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        self.assertTrue(response["error"]["message"].startswith("invalid request frame: "), response)
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_empty_id_is_reported_as_invalid(self):
        """An empty id is not a usable id, so the error goes to ``invalid``."""
        running = yield start_gateway(self)
        client = yield operator(self, running, [])
        client.send({"type": "req", "id": "", "method": "health"})
        response, _ = yield response_to(client, "invalid")
        self.assertEqual(response["error"]["code"], "INVALID_REQUEST")
        yield self.assertStillOpen(client)


class RoleGateTests(DispatchTestCase):
    """Node methods are node-only, everything else operator-only; a flood of violations closes 1008."""

    @inlineCallbacks
    def test_node_calling_operator_method(self):
        running = yield start_gateway(self)
        client = yield node(self, running)
        response, _ = yield call(client, "status")
        self.assertError(response, "INVALID_REQUEST", "unauthorized role: node")
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_node_calling_unknown_method(self):
        """A node hears that a method does not exist, not a role error (issue 19: the node host's
        ``skill publish failed: unauthorized role: node`` sent its reader the wrong way)."""
        running = yield start_gateway(self)
        client = yield node(self, running)
        response, _ = yield call(client, "no.such.method")
        self.assertError(response, "INVALID_REQUEST", "unknown method: no.such.method")

    @inlineCallbacks
    def test_operator_calling_node_method(self):
        """Even an admin operator may not call a node-only method."""
        running = yield start_gateway(self)
        running.gateway.methods.add(MethodSpec("test.node.only", lambda ctx: {"ok": True}, scope=None, role=ROLE_NODE))
        client = yield operator(self, running, ["operator.admin"])
        response, _ = yield call(client, "test.node.only")
        self.assertError(response, "INVALID_REQUEST", "unauthorized role: operator")
        nodeclient = yield node(self, running)
        response, _ = yield call(nodeclient, "test.node.only")
        self.assertEqual(response["payload"], {"ok": True})

    @inlineCallbacks
    def test_node_may_call_health(self):
        running = yield start_gateway(self)
        client = yield node(self, running)
        response, _ = yield call(client, "health")
        self.assertTrue(response["ok"], response)

    @inlineCallbacks
    def test_ten_unauthorized_calls_are_tolerated(self):
        running = yield start_gateway(self)
        client = yield node(self, running)
        for _ in range(10):
            response, _ = yield call(client, "status")
            self.assertError(response, "INVALID_REQUEST", "unauthorized role: node")
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_eleven_unauthorized_calls_close_1008(self):
        """The 11th violation is still answered, then the socket closes."""
        running = yield start_gateway(self)
        client = yield node(self, running)
        for _ in range(11):
            response, _ = yield call(client, "status")
            self.assertError(response, "INVALID_REQUEST", "unauthorized role: node")
        code, reason = yield client.closed
        self.assertEqual((code, reason), (1008, "repeated unauthorized calls"))

    @inlineCallbacks
    def test_any_other_response_resets_the_streak(self):
        running = yield start_gateway(self)
        client = yield node(self, running)
        for _ in range(2):
            for _ in range(10):
                response, _ = yield call(client, "status")
                self.assertError(response, "INVALID_REQUEST", "unauthorized role: node")
            ok, _ = yield call(client, "health")
            self.assertTrue(ok["ok"])
        self.assertFalse(client.closed.called)

    @inlineCallbacks
    def test_other_errors_reset_the_streak(self):
        """Only consecutive role violations count; a params error in between resets the count."""
        running = yield start_gateway(self)
        client = yield node(self, running)
        for _ in range(10):
            yield call(client, "status")
        bad, _ = yield call(client, "health", {"probe": "nope"})
        self.assertEqual(bad["error"]["code"], "INVALID_REQUEST")
        for _ in range(10):
            yield call(client, "status")
        yield self.assertStillOpen(client)


class HandlerFailureTests(DispatchTestCase):
    """A handler that raises (or whose Deferred fails) becomes UNAVAILABLE with the error text."""

    @inlineCallbacks
    def test_raising_handler(self):
        running = yield start_gateway(self)

        def crash(ctx):
            raise RuntimeError("kaboom")

        running.gateway.methods.add(MethodSpec("test.crash", crash, scope=READ))
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "test.crash")
        self.assertError(response, "UNAVAILABLE", "kaboom")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        yield self.assertStillOpen(client)

    @inlineCallbacks
    def test_failing_deferred(self):
        running = yield start_gateway(self)
        running.gateway.methods.add(MethodSpec("test.fail", lambda ctx: fail(ValueError("bad value")), scope=READ))
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "test.fail")
        self.assertError(response, "UNAVAILABLE", "bad value")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    @inlineCallbacks
    def test_exception_without_message_uses_type_name(self):
        running = yield start_gateway(self)

        def crash(ctx):
            raise KeyError

        running.gateway.methods.add(MethodSpec("test.keyerror", crash, scope=READ))
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "test.keyerror")
        self.assertError(response, "UNAVAILABLE", "KeyError")
        self.flushLoggedErrors(KeyError)

    @inlineCallbacks
    def test_unencodable_result(self):
        """A handler returning something JSON cannot carry still gets an answer, not silence."""
        running = yield start_gateway(self)
        running.gateway.methods.add(MethodSpec("test.unencodable", lambda ctx: {"x": object()}, scope=READ))
        client = yield operator(self, running, ["operator.read"])
        response, _ = yield call(client, "test.unencodable")
        self.assertEqual(response["error"]["code"], "UNAVAILABLE")
        self.flushLoggedErrors()
        yield self.assertStillOpen(client)
