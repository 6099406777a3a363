"""The incremental SSE decoder: line endings, fields, chunking anywhere, and the line bound."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from openclaw.providers.sse import SSEDecoder, SSEError, SSEEvent


def decode_whole(data: bytes, **kwargs) -> list[SSEEvent]:
    decoder = SSEDecoder(**kwargs)
    return decoder.feed(data) + decoder.finish()


def decode_chunks(chunks, **kwargs) -> list[SSEEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events + decoder.finish()


class LineEndingTests(TestCase):
    def test_lf(self):
        self.assertEqual(decode_whole(b"data: a\n\ndata: b\n\n"), [SSEEvent("message", "a"), SSEEvent("message", "b")])

    def test_crlf(self):
        self.assertEqual(decode_whole(b"data: a\r\n\r\ndata: b\r\n\r\n"), [SSEEvent("message", "a"), SSEEvent("message", "b")])

    def test_cr(self):
        self.assertEqual(decode_whole(b"data: a\r\rdata: b\r\r"), [SSEEvent("message", "a"), SSEEvent("message", "b")])

    def test_mixed_endings(self):
        self.assertEqual(
            decode_whole(b"data: a\r\ndata: b\rdata: c\n\r\n"),
            [SSEEvent("message", "a\nb\nc")],
        )

    def test_crlf_split_across_chunks_is_one_line_end(self):
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        # The \n completes the \r\n; it must not count as a second (blank) line.
        self.assertEqual(decoder.feed(b"\n"), [])
        self.assertEqual(decoder.feed(b"data: b\r\n"), [])
        self.assertEqual(decoder.feed(b"\r\n"), [SSEEvent("message", "a\nb")])

    def test_cr_then_blank_line_in_next_chunk(self):
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        # \r\n then \r\n: the first \n belongs to the first \r, the second pair is the blank line.
        self.assertEqual(decoder.feed(b"\n\r\n"), [SSEEvent("message", "a")])

    def test_cr_followed_by_blank_cr_dispatches(self):
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\r"), [])
        self.assertEqual(decoder.feed(b"\r"), [SSEEvent("message", "a")])

    def test_empty_chunk_between_cr_and_lf(self):
        decoder = SSEDecoder()
        decoder.feed(b"data: a\r")
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.feed(b"\ndata: b\n"), [])
        self.assertEqual(decoder.finish(), [SSEEvent("message", "a\nb")])


class FieldTests(TestCase):
    def test_comments_are_ignored(self):
        self.assertEqual(
            decode_whole(b": keep-alive\n\n:another\ndata: x\n: mid-event comment\n\n"),
            [SSEEvent("message", "x")],
        )

    def test_comment_only_block_dispatches_nothing(self):
        self.assertEqual(decode_whole(b": ping\n\n: ping\n\n"), [])

    def test_multi_line_data_joined_with_newline(self):
        self.assertEqual(decode_whole(b"data: one\ndata: two\ndata:three\n\n"), [SSEEvent("message", "one\ntwo\nthree")])

    def test_only_one_leading_space_is_stripped(self):
        self.assertEqual(decode_whole(b"data:  two spaces \n\n"), [SSEEvent("message", " two spaces ")])

    def test_data_without_colon_is_empty_line_of_data(self):
        self.assertEqual(decode_whole(b"data\ndata\n\n"), [SSEEvent("message", "\n")])

    def test_value_keeps_later_colons(self):
        self.assertEqual(decode_whole(b'data: {"a": "b:c"}\n\n'), [SSEEvent("message", '{"a": "b:c"}')])

    def test_event_names(self):
        events = decode_whole(b"event: response.output_text.delta\ndata: 1\n\ndata: 2\n\nevent: done\ndata: 3\n\n")
        self.assertEqual(
            events,
            [SSEEvent("response.output_text.delta", "1"), SSEEvent("message", "2"), SSEEvent("done", "3")],
        )

    def test_event_name_without_data_does_not_leak_to_next_event(self):
        self.assertEqual(decode_whole(b"event: lonely\n\ndata: x\n\n"), [SSEEvent("message", "x")])

    def test_id_field_persists(self):
        events = decode_whole(b"id: 7\ndata: a\n\ndata: b\n\nid: bad\0id\ndata: c\n\n")
        self.assertEqual([e.id for e in events], ["7", "7", "7"])

    def test_unknown_fields_ignored(self):
        self.assertEqual(decode_whole(b"retry: 1000\nfoo: bar\ndata: x\n\n"), [SSEEvent("message", "x")])

    def test_utf8_split_inside_a_character(self):
        data = "data: héllo ✓\n\n".encode()
        cut = data.index("✓".encode()) + 1
        self.assertEqual(decode_chunks([data[:cut], data[cut:]]), [SSEEvent("message", "héllo ✓")])

    def test_invalid_utf8_is_replaced_not_fatal(self):
        self.assertEqual(decode_whole(b"data: \xff\n\n"), [SSEEvent("message", "\ufffd")])

    def test_events_returned_by_the_feed_that_completes_them(self):
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\n"), [])
        self.assertEqual(decoder.feed(b"\ndata: b"), [SSEEvent("message", "a")])
        self.assertEqual(decoder.feed(b"\n\n"), [SSEEvent("message", "b")])


class FinishTests(TestCase):
    def test_final_event_without_blank_line(self):
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"data: a\n\ndata: last\n"), [SSEEvent("message", "a")])
        self.assertEqual(decoder.finish(), [SSEEvent("message", "last")])

    def test_final_event_without_any_line_end(self):
        decoder = SSEDecoder()
        self.assertEqual(decoder.feed(b"event: e\ndata: [DONE]"), [])
        self.assertEqual(decoder.finish(), [SSEEvent("e", "[DONE]")])

    def test_finish_after_clean_end_yields_nothing(self):
        decoder = SSEDecoder()
        decoder.feed(b"data: a\n\n")
        self.assertEqual(decoder.finish(), [])

    def test_finish_with_only_partial_comment(self):
        decoder = SSEDecoder()
        decoder.feed(b": partial comm")
        self.assertEqual(decoder.finish(), [])


class LineBoundTests(TestCase):
    def test_unterminated_line_over_bound_raises(self):
        decoder = SSEDecoder(max_line_bytes=16)
        decoder.feed(b"data: 0123456789")  # exactly 16 bytes: allowed
        self.assertRaises(SSEError, decoder.feed, b"a")

    def test_bound_is_on_the_unfinished_tail_not_the_total(self):
        decoder = SSEDecoder(max_line_bytes=16)
        events = []
        for _ in range(50):
            events += decoder.feed(b"data: short\n\n")
        self.assertEqual(len(events), 50)

    def test_long_line_split_over_many_chunks(self):
        decoder = SSEDecoder(max_line_bytes=64)
        with self.assertRaises(SSEError):
            for _ in range(100):
                decoder.feed(b"data: xxxxxxxx")

    def test_line_within_bound_split_over_chunks_is_fine(self):
        decoder = SSEDecoder(max_line_bytes=64)
        for piece in (b"data: ", b"x" * 20, b"y" * 20, b"\n\n"):
            events = decoder.feed(piece)
        self.assertEqual(events, [SSEEvent("message", "x" * 20 + "y" * 20)])


_field_lines = st.one_of(
    st.builds(lambda v: b"data: " + v, st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=12).map(str.encode)),
    st.builds(lambda v: b"data:" + v, st.sampled_from([b"", b"x", b" y", b"\xc3\xa9"])),
    st.builds(lambda v: b"event: " + v, st.sampled_from([b"delta", b"done", b"response.completed"])),
    st.builds(lambda v: b"id: " + v, st.sampled_from([b"1", b"abc"])),
    st.builds(lambda v: b": " + v, st.sampled_from([b"", b"ping", b"keep-alive"])),
    st.just(b""),  # blank line: dispatch
)
_line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def sse_streams(draw):
    lines = draw(st.lists(st.tuples(_field_lines, _line_ends), max_size=30))
    data = b"".join(line + end for line, end in lines)
    if draw(st.booleans()):
        data += draw(_field_lines)  # an unterminated last line
    return data


@st.composite
def stream_and_cuts(draw):
    data = draw(sse_streams())
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=12)))
    chunks = []
    previous = 0
    for cut in cuts + [len(data)]:
        chunks.append(data[previous:cut])  # repeated cuts give empty chunks, which must be harmless
        previous = cut
    return data, chunks


class ChunkingPropertyTests(TestCase):
    @settings(max_examples=300, deadline=None)
    @given(stream_and_cuts())
    def test_any_chunking_yields_the_same_events(self, stream):
        data, chunks = stream
        self.assertEqual(b"".join(chunks), data)
        self.assertEqual(decode_chunks(chunks), decode_whole(data))

    @settings(max_examples=100, deadline=None)
    @given(sse_streams())
    def test_byte_at_a_time_matches_whole(self, data):
        self.assertEqual(decode_chunks([data[i : i + 1] for i in range(len(data))]), decode_whole(data))
