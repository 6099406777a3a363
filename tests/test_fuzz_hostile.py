"""Fuzzing the frame shapes that once went unanswered (issue 13, item 10).

Deep nesting (anywhere from just over :data:`MAX_FRAME_DEPTH` to far past the parser's own
limit, in arrays or objects, with the id before or after it) and lone surrogates (either half,
as a key or a value, at any depth) in otherwise ordinary requests. Through the in-memory harness
of :mod:`tests.test_fuzz`: after ``hello-ok`` every such frame gets exactly one INVALID_REQUEST,
under its id when it can be found (``"invalid"`` otherwise), and the connection stays; as a
first frame it gets that answer and a documented close.
"""
from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from openclaw.protocol.constants import CLOSE_POLICY_VIOLATION
from openclaw.protocol.errors import INVALID_REQUEST
from openclaw.protocol.frame_decoding import ID_SEARCH_BYTES
from openclaw.protocol.text_checks import MAX_FRAME_DEPTH

from .test_fuzz import METHOD_NAMES, NODE_METHODS, Harness, assert_answered_once, check_response, fuzz_settings

request_ids = st.text(min_size=1, max_size=20).filter(lambda text: text.isprintable())
methods = st.sampled_from([name for name in METHOD_NAMES if name not in NODE_METHODS] + ["connect"])


def _nest(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def deep_frames(draw: Any) -> tuple[str, str]:
    """A request whose params nest too deep; the text and the id the answer must carry."""
    depth = draw(st.integers(min_value=MAX_FRAME_DEPTH + 1, max_value=MAX_FRAME_DEPTH + 40) | st.integers(1000, 20_000))
    inner = _nest(depth - 2, draw(st.sampled_from(["array", "object"])))
    request_id, method = draw(request_ids), draw(methods)
    head = f'"type":"req","id":{json.dumps(request_id)},"method":{json.dumps(method)}'
    if draw(st.booleans()):
        return "{" + head + ',"params":{"x":' + inner + "}}", request_id
    # The id after the deep part: found when the parser took the frame (1,024 levels at most) or
    # when it ends within the first ID_SEARCH_BYTES; "invalid" otherwise.
    text = '{"params":{"x":' + inner + "}," + head + "}"
    id_end = len(text[: text.index('"id":')].encode("utf-8")) + len(('"id":' + json.dumps(request_id)).encode("utf-8"))
    return text, request_id if depth <= 1024 or id_end <= ID_SEARCH_BYTES else "invalid"


@st.composite
def surrogate_frames(draw: Any) -> tuple[str, str]:
    """A request with a lone surrogate escape as a key or a value, possibly nested."""
    half = draw(st.integers(min_value=0xD800, max_value=0xDFFF))
    text = json.dumps(draw(st.text(max_size=5)))[1:-1]
    escape = f'"{text}\\u{half:04x}{text}"'
    value = escape if draw(st.booleans()) else "{" + escape + ":1}"
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        value = draw(st.sampled_from(["[{}]", '{{"k":{}}}'])).format(value)
    request_id, method = draw(request_ids), draw(methods)
    return '{"type":"req","id":' + json.dumps(request_id) + ',"method":"' + method + '","params":{"key":' + value + "}}", request_id


hostile_frames = deep_frames() | surrogate_frames()


class HostileShapeFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = Harness(self)

    def answers(self, proto: Any, text: str, request_id: str) -> list[Any]:
        proto.onMessage(text.encode("utf-8"), False)
        self.harness.clock.advance(0)
        self.assertEqual(self.flushLoggedErrors(), [])
        frames = proto.take()
        for frame in frames:
            check_response(self, frame, {request_id})
        return [frame for frame in frames if frame.get("type") == "res"]

    @fuzz_settings(60)
    @given(shape=hostile_frames)
    def test_after_hello_each_is_refused_under_its_id(self, shape):
        text, request_id = shape
        proto = self.harness.admitted()
        try:
            responses = self.answers(proto, text, request_id)
            assert_answered_once(self, responses, request_id)
            self.assertEqual(responses[0]["error"]["code"], INVALID_REQUEST)
            self.assertTrue(responses[0]["error"]["message"].startswith("invalid request frame: "), responses)
            self.assertEqual(proto.close_codes, [])
        finally:
            self.harness.close(proto)

    @fuzz_settings(30)
    @given(shape=hostile_frames)
    def test_as_a_first_frame_each_is_refused_and_closed(self, shape):
        text, request_id = shape
        proto = self.harness.opened()
        try:
            responses = self.answers(proto, text, request_id)
            assert_answered_once(self, responses, request_id)
            self.assertEqual(responses[0]["error"]["code"], INVALID_REQUEST)
            self.assertEqual(proto.close_codes, [CLOSE_POLICY_VIOLATION])
        finally:
            self.harness.close(proto)
