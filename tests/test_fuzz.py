"""Property-based fuzzing of every inbound frame type and every method's params (hardening issue).

Invariants, checked after every single frame:

* post-auth: the connection stays open (no close frame, transport not lost), nothing is logged
  as an unhandled error, and every frame the server sends is either an event or a ``res`` with
  the request's id (or ``"invalid"``) and ``ok: true`` + ``payload`` or ``ok: false`` + an
  error ``{code in the known codes, message: non-empty str}``;
* pre-auth: any first frame ends in an error-shaped ``res`` and/or a close with a documented
  code (1000, 1002, 1008, 1009), or in a successful admission — never a traceback.

The harness is in memory: a real :class:`GatewayServerProtocol` (a subclass that records what
Autobahn would have put on the wire) on a ``StringTransport`` with a ``task.Clock``, driven at the
application layer (``onMessage``). Autobahn's own framing (UTF-8 validation of text frames, size
limits) sits below that layer, so text payloads here are always valid UTF-8, as Autobahn
guarantees to ``onMessage``.

``bench/fuzz.py`` runs the same properties with many more examples; it sets
``OPENCLAW_FUZZ_EXAMPLES`` before importing this module and reads :data:`COUNTERS`.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from openclaw.connection.factory import GatewayWebSocketFactory
from openclaw.connection.protocol import PHASE_OPEN, GatewayServerProtocol
from openclaw.protocol.constants import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
)
from openclaw.protocol.errors import APPROVAL_NOT_FOUND, FORBIDDEN, INVALID_REQUEST, NOT_PAIRED, UNAVAILABLE
from openclaw.protocol.frame_decoding import RefusedFrame, decode_frame
from openclaw.protocol.schema import frames as frame_schemas
from openclaw.protocol.schema.methods import METHOD_PARAMS
from openclaw.security.device_identity import DeviceKeyPair

from .support.gateway import make_gateway
from .support.wsclient import connect_params

# -- budget ---------------------------------------------------------------------------------------

#: Examples per property; bench/fuzz.py raises it through the environment.
EXAMPLES = int(os.environ.get("OPENCLAW_FUZZ_EXAMPLES", "0")) or None
#: How many inputs each property has tried (read by bench/fuzz.py).
COUNTERS: Counter = Counter()


def fuzz_settings(default: int):
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


KNOWN_CODES = {INVALID_REQUEST, FORBIDDEN, UNAVAILABLE, NOT_PAIRED, APPROVAL_NOT_FOUND}
DOCUMENTED_CLOSE_CODES = {CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_POLICY_VIOLATION, CLOSE_MESSAGE_TOO_BIG}
NODE_CLIENT = {"id": "node-host", "version": "1.0.0", "platform": "linux", "mode": "node"}
NODE_METHODS = {"node.invoke.result", "node.event"}  # role=node in openclaw/methods/nodes.py
#: The longest timer any method may arm from its params (agent.wait's timeoutMs maximum, 1 day).
LONGEST_TIMEOUT_S = 86_400 + 1

# -- strategies -----------------------------------------------------------------------------------

# Any JSON value orjson can both encode and decode (integers beyond 64 bits are not JSON to it).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
# Keys that occur somewhere in the real schemas make "almost valid" objects far more likely.
_SCHEMA_KEYS = sorted(
    {key for schema in METHOD_PARAMS.values() for key in schema.get("properties", {})}
    | {"type", "id", "method", "params", "traceparent", "expectedProfileId"}
)
json_keys = st.sampled_from(_SCHEMA_KEYS) | st.text(max_size=12)
json_objects = st.dictionaries(json_keys, json_values, max_size=6)

METHOD_NAMES = sorted(METHOD_PARAMS)
method_names = st.sampled_from(METHOD_NAMES + ["connect"]) | st.text(max_size=30)
request_ids = st.text(min_size=1, max_size=40) | json_values  # mostly strings, sometimes not


def schema_values(schema: dict[str, Any], definitions: dict[str, Any] | None = None, depth: int = 0) -> st.SearchStrategy:
    """Values that (mostly) satisfy ``schema``: the subset of JSON Schema the method params use."""
    definitions = definitions or {}
    if depth > 6:
        return st.none()
    if "$ref" in schema:
        return schema_values(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions, depth + 1)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([schema_values(option, definitions, depth + 1) for option in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([schema_values({**schema, "type": k}, definitions, depth) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**53)), schema.get("maximum", 2**53))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**9)
            )
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    if kind == "array":
        items = schema_values(schema.get("items", {}), definitions, depth + 1)
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=max(low, min(schema.get("maxItems", 4), 4)))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: schema_values(sub, definitions, depth + 1) for name, sub in properties.items() if name in required},
            optional={
                name: schema_values(sub, definitions, depth + 1)
                for name, sub in properties.items()
                if name not in required
            },
        )
    return json_values  # {} — anything


def params_for(method: str) -> st.SearchStrategy:
    """Schema-valid params, arbitrary JSON, or valid params with one key broken or added."""
    valid = schema_values(METHOD_PARAMS[method], frame_schemas.DEFINITIONS)

    def mutate(draw_args):
        params, key, value = draw_args
        if isinstance(params, dict):
            params = dict(params)
            params[key] = value
        return params

    mutated = st.tuples(valid, json_keys, json_values).map(mutate)
    return st.one_of(valid, valid, mutated, json_values)


def req_frames(methods: st.SearchStrategy = method_names) -> st.SearchStrategy:
    """Objects shaped like req frames, some keys missing or of the wrong type."""
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.just("req") | st.just("req") | json_values,
            "id": request_ids,
            "method": methods | json_values,
            "params": json_values,
            "traceparent": st.text(max_size=140) | json_values,
            "expectedProfileId": st.text(max_size=140) | json_values,
            "extra": json_values,
        },
    )


def as_text(value: Any) -> bytes:
    return orjson.dumps(value)


text_payloads = st.text().map(lambda s: s.encode("utf-8"))  # what Autobahn hands onMessage for text
binary_payloads = st.binary(max_size=200)

# -- the in-memory connection ---------------------------------------------------------------------


class _Upgrade:
    def __init__(self, headers: dict[str, str]):
        self.headers = headers


class _NoUpstream:
    """The model client's HTTP: every request fails at once (no socket, no real reactor)."""

    def request(self, *args: Any, **kwargs: Any):
        return fail(ConnectionRefusedError("fuzz: no upstream"))


class RecordingProtocol(GatewayServerProtocol):
    """The real protocol; what Autobahn would write to the wire is recorded instead."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.sent_after_close: list[bytes] = []
        self.close_codes: list[int | None] = []

    def _write(self, payload: bytes) -> None:
        """Every frame the gateway sends goes through ``_write`` (text frames only)."""
        if self.state != self.STATE_OPEN:
            self.sent_after_close.append(payload)
            return
        self.sent.append(payload)

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        self.close_codes.append(code)
        if reasonUtf8 is not None:
            assert len(reasonUtf8) <= 123, reasonUtf8
            reasonUtf8.decode("utf-8")
        self.state = self.STATE_CLOSING

    def take(self) -> list[Any]:
        frames, self.sent = [orjson.loads(frame) for frame in self.sent], []
        return frames


class Harness:
    """One gateway; connections opened, admitted and closed in memory."""

    def __init__(self, testcase: SynchronousTestCase):
        self.testcase = testcase
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # a plausible wall clock for signed device blocks
        self.gateway = make_gateway(testcase, clock=self.clock, http=_NoUpstream())
        self.factory = GatewayWebSocketFactory(self.gateway, reactor=self.clock)
        self.open: list[RecordingProtocol] = []
        testcase.addCleanup(self.close_all)

    def opened(self) -> RecordingProtocol:
        """A socket past the WebSocket upgrade: the challenge is sent, ``connect`` is awaited."""
        proto = RecordingProtocol()
        proto.factory = self.factory
        proto.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + len(self.open)))
        proto.state = proto.STATE_OPEN
        proto.onConnect(_Upgrade({"host": "127.0.0.1:18789", "user-agent": "fuzz"}))
        proto.onOpen()
        self.open.append(proto)
        challenge = proto.take()
        assert challenge[0]["event"] == "connect.challenge", challenge
        return proto

    def admitted(self, role: str = "operator") -> RecordingProtocol:
        proto = self.opened()
        if role == "node":
            params = connect_params(
                role="node", client=NODE_CLIENT, scopes=[], device=DeviceKeyPair.generate(),
                nonce=proto._nonce, signed_at_ms=self.gateway.now_ms(),
            )
        else:
            params = connect_params(nonce=proto._nonce)
        proto.onMessage(as_text({"type": "req", "id": "connect-1", "method": "connect", "params": params}), False)
        self.clock.advance(0)
        hello = [frame for frame in proto.take() if frame.get("type") == "res"]
        assert proto._phase == PHASE_OPEN and len(hello) == 1 and hello[0]["ok"], hello
        return proto

    def close(self, proto: RecordingProtocol) -> None:
        if proto in self.open:
            self.open.remove(proto)
            proto.state = proto.STATE_CLOSED
            proto.onClose(True, 1000, None)

    def close_all(self) -> None:
        for proto in list(self.open):
            self.close(proto)
        # let every timer a fuzzed request armed run out (agent.wait, node.invoke, ...)
        self.clock.advance(LONGEST_TIMEOUT_S)


# -- invariants ----------------------------------------------------------------------------------


def check_response(testcase: SynchronousTestCase, frame: Any, expected_ids: set[str]) -> None:
    testcase.assertIsInstance(frame, dict)
    if frame.get("type") == "event":
        testcase.assertIsInstance(frame.get("event"), str, frame)
        return
    testcase.assertEqual(frame.get("type"), "res", frame)
    testcase.assertIn(frame.get("id"), expected_ids, frame)
    testcase.assertIsInstance(frame.get("ok"), bool, frame)
    if frame["ok"]:
        testcase.assertIn("payload", frame, frame)
        testcase.assertNotIn("error", frame, frame)
    else:
        error = frame.get("error")
        testcase.assertIsInstance(error, dict, frame)
        testcase.assertIn(error.get("code"), KNOWN_CODES, frame)
        testcase.assertIsInstance(error.get("message"), str, frame)
        testcase.assertTrue(error["message"], frame)
    testcase.assertEqual(testcase.harness.gateway.validators.response_frame.errors(frame), [], frame)


def assert_answered_once(testcase: SynchronousTestCase, responses: list[Any], request_id: str | None = None) -> None:
    """Exactly one final ``res``; only ``agent`` may precede it with its interim ``accepted`` ack."""
    testcase.assertGreaterEqual(len(responses), 1, "request never answered")
    ids = {response["id"] for response in responses}
    testcase.assertEqual(len(ids), 1, responses)
    if request_id is not None:
        testcase.assertEqual(ids, {request_id}, responses)
    for interim in responses[:-1]:
        testcase.assertIs(interim["ok"], True, responses)
        testcase.assertEqual(interim["payload"].get("status"), "accepted", responses)
    testcase.assertLessEqual(len(responses), 2, responses)


NOT_JSON = object()  # a frame that is not JSON at all (or binary)


def expected_id(frame: Any) -> str:
    request_id = frame.get("id") if isinstance(frame, dict) else None
    return request_id if isinstance(request_id, str) and request_id else "invalid"


class PostAuthFuzzTests(SynchronousTestCase):
    """After ``hello-ok`` no inbound frame may cost the connection or escape as a traceback."""

    def setUp(self):
        self.harness = Harness(self)

    def send_post_auth(self, payload: bytes, is_binary: bool, frame: Any = NOT_JSON, role: str = "operator") -> list[Any]:
        """Send one frame on a fresh admitted connection; check the invariants; return the responses."""
        COUNTERS[self._testMethodName] += 1
        proto = self.harness.admitted(role)
        try:
            proto.onMessage(payload, is_binary)
            self.harness.clock.advance(0)
            # Timers a handler armed (waits, invoke timeouts) must also end in a well-shaped answer.
            self.harness.clock.advance(LONGEST_TIMEOUT_S)
            self.assertEqual(self.flushLoggedErrors(), [])
            self.assertEqual(proto.close_codes, [], "post-auth bad request closed the connection")
            self.assertFalse(proto.transport.disconnecting)
            self.assertEqual(proto._phase, PHASE_OPEN)
            self.assertEqual(proto.sent_after_close, [])
            responses = proto.take()
            ids = {expected_id(frame), "invalid"}
            for response in responses:
                check_response(self, response, ids)
            res = [r for r in responses if r.get("type") == "res"]
            if is_binary or frame is NOT_JSON:
                self.assertEqual(res, [], "binary / non-JSON frames are ignored after auth")
            return res
        finally:
            self.harness.close(proto)

    @fuzz_settings(60)
    @given(payload=binary_payloads)
    def test_binary_frames(self, payload):
        self.send_post_auth(payload, True)

    @fuzz_settings(60)
    @given(payload=text_payloads)
    def test_text_frames(self, payload):
        try:
            frame = decode_frame(payload)
        except RefusedFrame as refused:
            frame = {"id": refused.request_id}  # valid JSON it cannot use: answered, not dropped
        except orjson.JSONDecodeError:
            self.send_post_auth(payload, False, NOT_JSON)  # ignored: no answer
            return
        responses = self.send_post_auth(payload, False, frame)
        assert_answered_once(self, responses)

    @fuzz_settings(80)
    @given(value=json_values)
    def test_json_values(self, value):
        responses = self.send_post_auth(as_text(value), False, value)
        assert_answered_once(self, responses)  # every JSON frame is answered exactly once
        if not isinstance(value, dict):
            self.assertEqual(responses[0]["id"], "invalid")
            self.assertEqual(responses[0]["error"]["code"], INVALID_REQUEST)

    @fuzz_settings(150)
    @given(frame=req_frames())
    def test_req_shaped_frames(self, frame):
        responses = self.send_post_auth(as_text(frame), False, frame)
        assert_answered_once(self, responses)

    @fuzz_settings(100)
    @given(frame=req_frames(), role=st.sampled_from(["operator", "node"]))
    def test_req_shaped_frames_by_either_role(self, frame, role):
        responses = self.send_post_auth(as_text(frame), False, frame, role=role)
        assert_answered_once(self, responses)

    def test_every_method_random_params(self):
        """For every method in METHOD_PARAMS: schema-valid, mutated and arbitrary params."""
        per_method = (EXAMPLES or 0) // len(METHOD_NAMES) or 12

        def check_method(method: str) -> None:
            role = "node" if method in NODE_METHODS else "operator"

            @settings(max_examples=per_method, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(params=params_for(method), request_id=st.text(min_size=1, max_size=20), omit=st.booleans())
            def one(params, request_id, omit):
                frame = {"type": "req", "id": request_id, "method": method}
                if not omit or params != {}:
                    frame["params"] = params
                COUNTERS["test_every_method_random_params:" + method] += 1
                responses = self.send_post_auth(as_text(frame), False, frame, role=role)
                assert_answered_once(self, responses, request_id)

            one()

        for method in METHOD_NAMES:
            check_method(method)

    @fuzz_settings(40)
    @given(frames=st.lists(req_frames(st.sampled_from(METHOD_NAMES)), min_size=2, max_size=8))
    def test_frame_sequences_on_one_connection(self, frames):
        """Several frames on one socket: each answered once, the socket survives them all.

        Role-gate failures are excluded (node-only methods for an operator): more than
        UNAUTHORIZED_ROLE_FLOOD_LIMIT in a row close the socket with 1008 by design.
        """
        COUNTERS[self._testMethodName] += 1
        proto = self.harness.admitted()
        try:
            answered: list[Any] = []
            for frame in frames:
                if isinstance(frame.get("method"), str) and frame["method"] in NODE_METHODS:
                    continue
                proto.onMessage(as_text(frame), False)
                self.harness.clock.advance(0)
                self.harness.clock.advance(LONGEST_TIMEOUT_S)
                self.assertEqual(self.flushLoggedErrors(), [])
                self.assertEqual(proto.close_codes, [])
                responses = proto.take()
                for response in responses:
                    check_response(self, response, {expected_id(frame), "invalid"})
                answered.append([r for r in responses if r.get("type") == "res"])
            for responses in answered:
                assert_answered_once(self, responses)
        finally:
            self.harness.close(proto)


class PreAuthFuzzTests(SynchronousTestCase):
    """Any first frame: an error-shaped res and/or a documented close code, never a traceback."""

    def setUp(self):
        self.harness = Harness(self)

    def send_first(self, payload: bytes, is_binary: bool, frame: Any = None) -> RecordingProtocol:
        COUNTERS[self._testMethodName] += 1
        proto = self.harness.opened()
        try:
            proto.onMessage(payload, is_binary)
            self.harness.clock.advance(0)
            self.assertEqual(self.flushLoggedErrors(), [])
            self.assertEqual(proto.sent_after_close, [])
            self.assertLessEqual(len(proto.close_codes), 1)
            for code in proto.close_codes:
                self.assertIn(code, DOCUMENTED_CLOSE_CODES)
            frames = proto.take()
            events = [f for f in frames if f.get("type") == "event"]
            self.assertTrue(not events or proto._phase == PHASE_OPEN, events)  # events only once admitted
            responses = [f for f in frames if f.get("type") != "event"]
            self.assertLessEqual(len(responses), 1, responses)
            for response in responses:
                self.assertEqual(response.get("type"), "res", response)
                self.assertEqual(response.get("id"), expected_id(frame), response)
                if response["ok"]:  # a well-formed connect was admitted: the socket stays open
                    self.assertEqual(proto._phase, PHASE_OPEN)
                    self.assertEqual(proto.close_codes, [])
                else:
                    check_response(self, response, {expected_id(frame)})
                    self.assertEqual(len(proto.close_codes), 1, "a failed handshake must close")
            if not proto.close_codes and not responses:
                # nothing said yet: only possible while admission is still running
                self.assertEqual(proto._phase, "connecting")
            return proto
        finally:
            self.harness.close(proto)

    @fuzz_settings(60)
    @given(payload=binary_payloads)
    def test_binary_first_frame(self, payload):
        proto = self.send_first(payload, True)
        self.assertEqual(proto.close_codes, [CLOSE_NORMAL])

    @fuzz_settings(60)
    @given(payload=text_payloads)
    def test_text_first_frame(self, payload):
        try:
            frame = decode_frame(payload)
        except RefusedFrame as refused:
            frame = {"id": refused.request_id}
        except orjson.JSONDecodeError:
            frame = None
        proto = self.send_first(payload, False, frame)
        self.assertEqual(len(proto.close_codes), 1)

    @fuzz_settings(60)
    @given(value=json_values)
    def test_json_first_frame(self, value):
        proto = self.send_first(as_text(value), False, value)
        self.assertEqual(len(proto.close_codes), 1)

    @fuzz_settings(80)
    @given(frame=req_frames())
    def test_req_shaped_first_frame(self, frame):
        self.send_first(as_text(frame), False, frame)

    @fuzz_settings(120)
    @given(
        params=st.one_of(
            st.builds(lambda: connect_params()),
            json_values,
        )
        | st.tuples(st.builds(lambda: connect_params()), json_keys, json_values).map(
            lambda t: {**t[0], t[1]: t[2]}
        )
        | st.tuples(
            st.builds(lambda: connect_params()),
            st.sampled_from(["client", "auth", "device"]),
            json_objects,
        ).map(lambda t: {**t[0], t[1]: t[2]}),
        request_id=st.text(min_size=1, max_size=20),
    )
    def test_connect_like_first_frame(self, params, request_id):
        frame = {"type": "req", "id": request_id, "method": "connect", "params": params}
        self.send_first(as_text(frame), False, frame)


class HarnessSelfTests(SynchronousTestCase):
    """The harness really sees what the invariants are about (else the fuzzing proves nothing)."""

    def test_crashing_handler_is_detected(self):
        from openclaw.methods.registry import MethodSpec

        harness = Harness(self)

        def boom(context):
            raise RuntimeError("boom")

        harness.gateway.methods.add(MethodSpec("fuzz.boom", boom, scope=None))
        proto = harness.admitted()
        proto.onMessage(as_text({"type": "req", "id": "b1", "method": "fuzz.boom", "params": {}}), False)
        [response] = [f for f in proto.take() if f.get("type") == "res"]
        self.assertEqual(response["error"], {"code": UNAVAILABLE, "message": "boom"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_valid_params_reach_handlers(self):
        """Schema-valid params pass validation: most methods answer something other than a schema error."""
        harness = Harness(self)
        reached = set()
        def probe(method: str) -> None:
            role = "node" if method in NODE_METHODS else "operator"

            @settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(params=schema_values(METHOD_PARAMS[method], frame_schemas.DEFINITIONS))
            def one(params):
                proto = harness.admitted(role)
                proto.onMessage(as_text({"type": "req", "id": "v", "method": method, "params": params}), False)
                harness.clock.advance(LONGEST_TIMEOUT_S)
                for frame in proto.take():
                    if frame.get("type") == "res" and (
                        frame["ok"] or not frame["error"]["message"].startswith(f"invalid {method} params")
                    ):
                        reached.add(method)
                harness.close(proto)

            one()

        for method in METHOD_NAMES:
            probe(method)
        self.flushLoggedErrors()
        self.assertEqual(sorted(set(METHOD_NAMES) - reached), [])
