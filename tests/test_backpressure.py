"""Outbound backpressure: the bounded queue, seq gaps from dropped events, slow-consumer closes,
and the producer registration behind ``WebSocketResource`` (ecosystem.md pitfalls 1 and 2; §1.5, §6.3).

The queue itself is pure and tested synchronously. The protocol-level tests use real sockets,
because what matters is that the transport's producer signals actually reach the queue.
"""
from __future__ import annotations

import orjson
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IPushProducer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from openclaw.connection.outbound import DROPPED, OVERFLOW, QUEUED, SENT, OutboundQueue
from openclaw.methods.registry import MethodSpec
from openclaw.state.clients import ClientRegistry, ConnectedClient, event_frame

from .support.gateway import start_gateway
from .support.wsclient import connect


class OutboundQueueTests(SynchronousTestCase):
    """The per-connection queue: write-through, bounded buffering, drop or overflow, ordered drain."""

    def setUp(self):
        self.written = []
        self.queue = OutboundQueue(self.written.append, max_bytes=10)

    def test_sent_while_not_paused(self):
        self.assertEqual(self.queue.offer(b"abc", droppable=False), SENT)
        self.assertEqual(self.queue.offer(b"x" * 100, droppable=False), SENT)  # the bound only applies to queued bytes
        self.assertEqual(self.written, [b"abc", b"x" * 100])
        self.assertEqual((len(self.queue), self.queue.queued_bytes), (0, 0))

    def test_an_idle_queue_holds_no_buffer(self):
        """Memory per idle connection: the deque exists only while frames wait, and ordering holds
        across a drain that gives it back."""
        self.assertIsNone(self.queue._frames)
        self.queue.offer(b"a", droppable=False)
        self.assertIsNone(self.queue._frames)
        self.queue.pause()
        self.queue.offer(b"b", droppable=False)
        self.queue.offer(b"c", droppable=False)
        self.assertEqual(len(self.queue), 2)
        self.queue.resume()
        self.assertIsNone(self.queue._frames)
        self.queue.pause()
        self.queue.offer(b"d", droppable=False)
        self.queue.resume()
        self.assertEqual(self.written, [b"a", b"b", b"c", b"d"])
        self.assertFalse(hasattr(self.queue, "__dict__"))

    def test_queued_while_paused(self):
        self.queue.pause()
        self.assertEqual(self.queue.offer(b"abcd", droppable=False), QUEUED)
        self.assertEqual(self.queue.offer(b"efgh", droppable=True), QUEUED)
        self.assertEqual(self.written, [])
        self.assertEqual((len(self.queue), self.queue.queued_bytes), (2, 8))

    def test_exactly_full_fits(self):
        self.queue.pause()
        self.assertEqual(self.queue.offer(b"x" * 10, droppable=False), QUEUED)
        self.assertEqual(self.queue.queued_bytes, 10)

    def test_droppable_dropped_when_over_bound(self):
        self.queue.pause()
        self.queue.offer(b"x" * 8, droppable=False)
        self.assertEqual(self.queue.offer(b"yyy", droppable=True), DROPPED)
        self.assertEqual(self.queue.dropped, 1)
        self.assertEqual((len(self.queue), self.queue.queued_bytes), (1, 8))
        # a smaller droppable frame that still fits is kept
        self.assertEqual(self.queue.offer(b"zz", droppable=True), QUEUED)

    def test_non_droppable_overflows(self):
        self.queue.pause()
        self.queue.offer(b"x" * 8, droppable=True)
        self.assertEqual(self.queue.offer(b"yyy", droppable=False), OVERFLOW)
        self.assertEqual(self.queue.dropped, 0)
        self.assertEqual((len(self.queue), self.queue.queued_bytes), (1, 8))

    def test_resume_drains_in_order(self):
        self.queue.pause()
        for frame in (b"a", b"bb", b"ccc"):
            self.queue.offer(frame, droppable=False)
        self.queue.resume()
        self.assertEqual(self.written, [b"a", b"bb", b"ccc"])
        self.assertEqual((len(self.queue), self.queue.queued_bytes, self.queue.paused), (0, 0, False))
        self.assertEqual(self.queue.offer(b"d", droppable=False), SENT)

    def test_pause_mid_drain_stops_draining(self):
        """The transport may pause us again from inside a write; draining must stop right there."""

        def write(frame):
            self.written.append(frame)
            if frame == b"bb":
                queue.pause()

        queue = OutboundQueue(write, max_bytes=100)
        queue.pause()
        for frame in (b"a", b"bb", b"ccc", b"dddd"):
            queue.offer(frame, droppable=False)
        queue.resume()
        self.assertEqual(self.written, [b"a", b"bb"])
        self.assertEqual((len(queue), queue.queued_bytes, queue.paused), (2, 7, True))
        # new frames keep their place behind the queued ones
        self.assertEqual(queue.offer(b"e", droppable=False), QUEUED)
        queue.resume()
        self.assertEqual(self.written, [b"a", b"bb", b"ccc", b"dddd", b"e"])

    def test_queue_not_bypassed_while_frames_wait(self):
        """Unpaused but non-empty (re-entrant write during a drain): a new frame must not jump the line."""
        order = []

        def write(frame):
            order.append(frame)
            if frame == b"first":
                self.assertEqual(queue.offer(b"third", droppable=False), QUEUED)

        queue = OutboundQueue(write, max_bytes=100)
        queue.pause()
        queue.offer(b"first", droppable=False)
        queue.offer(b"second", droppable=False)
        queue.resume()
        self.assertEqual(order, [b"first", b"second", b"third"])

    def test_flush_ignores_pause(self):
        self.queue.pause()
        self.queue.offer(b"ab", droppable=False)
        self.queue.offer(b"cd", droppable=False)
        self.queue.flush()
        self.assertEqual(self.written, [b"ab", b"cd"])
        self.assertEqual((len(self.queue), self.queue.queued_bytes), (0, 0))

    def test_clear(self):
        self.queue.pause()
        self.queue.offer(b"ab", droppable=False)
        self.queue.clear()
        self.queue.resume()
        self.assertEqual(self.written, [])
        self.assertEqual(self.queue.queued_bytes, 0)


class QueueSink:
    """A connection stand-in that owns an OutboundQueue, as the real protocol does."""

    def __init__(self, max_bytes):
        self.written = []
        self.queue = OutboundQueue(self.written.append, max_bytes)
        self.closed = None

    def deliver_frame(self, frame, *, droppable):
        return self.queue.offer(frame, droppable=droppable) not in (DROPPED, OVERFLOW)

    def close_with(self, code, reason):
        self.closed = (code, reason)


class DroppedEventSeqTests(SynchronousTestCase):
    """A dropped dropIfSlow event still consumes its seq, so the client can see the gap (fact 13)."""

    def test_gap_after_drops(self):
        registry = ClientRegistry()
        sink = QueueSink(max_bytes=200)
        registry.add(
            ConnectedClient(conn_id="c", role="operator", scopes=frozenset(), client={"id": "cli"}, sink=sink, connected_at_ms=0)
        )
        sink.queue.pause()
        for n in range(10):
            registry.broadcast("tick", {"ts": n}, drop_if_slow=True)
        kept = len(sink.queue)
        self.assertGreater(kept, 0)
        self.assertLess(kept, 10)
        self.assertEqual(sink.queue.dropped, 10 - kept)
        sink.queue.resume()
        registry.broadcast("tick", {"ts": 99}, drop_if_slow=True)
        seqs = [orjson.loads(frame)["seq"] for frame in sink.written]
        self.assertEqual(seqs, list(range(1, kept + 1)) + [11])


def server_protocol(running, conn_id):
    """The gateway-side protocol instance serving the connection ``conn_id``."""
    matches = [proto for proto in running.factory.connections if proto.conn_id == conn_id]
    assert len(matches) == 1, matches
    return matches[0]


@inlineCallbacks
def connected(testcase, running):
    """A scope-less operator (it gets only ungated events, so the seq is easy to predict)."""
    client, hello = yield connect(testcase, running.url, scopes=[])
    testcase.assertTrue(hello["ok"], hello)
    return (client, server_protocol(running, hello["payload"]["server"]["connId"]))


@inlineCallbacks
def events_until_seq(client, last_seq):
    frames = []
    while True:
        frame = yield client.next_frame()
        frames.append(frame)
        if frame.get("seq") == last_seq:
            return frames


class ProducerRegistrationTests(TestCase):
    """Pitfall 2: after the upgrade the protocol, not the HTTPChannel, is the transport's producer."""

    @inlineCallbacks
    def test_protocol_is_the_streaming_producer(self):
        running = yield start_gateway(self)
        _, proto = yield connected(self, running)
        self.assertTrue(IPushProducer.providedBy(proto))
        self.assertIs(proto.transport.producer, proto)
        self.assertTrue(proto.transport.streamingProducer)


class SlowConsumerTests(TestCase):
    """A paused connection buffers up to maxBufferedBytes, then drops droppable events or closes."""

    @inlineCallbacks
    def test_dropped_events_leave_a_seq_gap(self):
        running = yield start_gateway(self, max_buffered_bytes=1000)
        gateway = running.gateway
        client, proto = yield connected(self, running)
        proto.pauseProducing()
        for _ in range(40):
            gateway.broadcast_tick()  # tick is dropIfSlow
        proto.resumeProducing()
        gateway.broadcast_tick()
        frames = yield events_until_seq(client, 41)
        seqs = [frame["seq"] for frame in frames]
        kept = len(seqs) - 1
        self.assertTrue(0 < kept < 40, seqs)
        self.assertEqual(seqs, list(range(1, kept + 1)) + [41])
        self.assertEqual({frame["event"] for frame in frames}, {"tick"})
        self.assertFalse(client.closed.called)
        response = yield client.request("health", {})
        self.assertTrue(response["ok"])

    @inlineCallbacks
    def test_non_droppable_event_that_does_not_fit_closes(self):
        running = yield start_gateway(self, max_buffered_bytes=1000)
        gateway = running.gateway
        client, proto = yield connected(self, running)
        proto.pauseProducing()
        for _ in range(40):
            gateway.broadcast_tick()
        gateway.broadcast_health()  # not droppable, and the queue is full
        code, reason = yield client.closed
        self.assertEqual((code, reason), (1008, "slow consumer"))

    @inlineCallbacks
    def test_response_that_does_not_fit_closes(self):
        """Responses are never dropped: one that cannot be buffered means a slow consumer."""
        running = yield start_gateway(self, max_buffered_bytes=64)
        client, proto = yield connected(self, running)
        proto.pauseProducing()
        client.send({"type": "req", "id": "h1", "method": "health", "params": {}})
        code, reason = yield client.closed
        self.assertEqual((code, reason), (1008, "slow consumer"))
        self.assertEqual([frame for frame in client.frames if frame.get("id") == "h1"], [])

    @inlineCallbacks
    def test_paused_responses_are_delivered_on_resume(self):
        """Below the bound nothing is lost: a response queued while paused arrives after resume."""
        running = yield start_gateway(self)
        client, proto = yield connected(self, running)
        queued_at_resume = []

        def resume():
            queued_at_resume.append(len(proto._outbound))
            proto.resumeProducing()

        def handler(ctx):
            reactor.callLater(0, resume)  # runs after this response has been handed to the queue
            return {"done": True}

        running.gateway.methods.add(MethodSpec("test.paused", handler, scope=None))
        proto.pauseProducing()
        response = yield client.request("test.paused", {})
        self.assertEqual(response["payload"], {"done": True})
        self.assertEqual(queued_at_resume, [1])


class TransportDrivenBackpressureTests(TestCase):
    """The real TCP transport pauses the protocol once its write buffer passes 64 KiB (pitfall 1)."""

    @inlineCallbacks
    def test_big_frames_pause_queue_and_drop(self):
        # Each frame is ~100 KB: the first goes to the transport and trips its pause; two more fit in
        # the 250 KB queue; the rest are dropped. All of this happens before the reactor runs again.
        running = yield start_gateway(self, max_buffered_bytes=250_000)
        gateway = running.gateway
        client, proto = yield connected(self, running)
        pad = "x" * 100_000
        for n in range(20):
            gateway.clients.broadcast("heartbeat", {"ts": n, "pad": pad}, drop_if_slow=True)
        frames = yield events_until_seq(client, 3)
        self.assertEqual([(frame["seq"], frame["payload"]["ts"]) for frame in frames], [(1, 0), (2, 1), (3, 2)])
        gateway.clients.broadcast("heartbeat", {"ts": 20}, drop_if_slow=True)
        frame = yield client.next_frame()
        self.assertEqual((frame["seq"], frame["payload"]), (21, {"ts": 20}))


class FrameEncodingTests(TestCase):
    """The direct frame writer at every RFC 6455 length encoding, read by a real Autobahn client."""

    @inlineCallbacks
    def test_every_length_encoding_arrives_intact(self):
        running = yield start_gateway(self)
        client, hello = yield connect(self, running.url, scopes=["operator.read"])
        self.assertTrue(hello["ok"], hello)
        [registered] = list(running.gateway.clients)
        envelope = len(event_frame(b'"tick"', orjson.dumps({"p": ""}), registered.seq + 1, None))
        # Whole frame lengths: 7-bit (<=125), 16-bit (126..65535) and 64-bit (>65535) encodings.
        for frame_length in (envelope, 125, 126, 127, 65535, 65536, 70000):
            padding = "x" * (frame_length - envelope)
            expected = event_frame(b'"tick"', orjson.dumps({"p": padding}), registered.seq + 1, None)
            self.assertEqual(len(expected), frame_length)
            running.gateway.clients.broadcast("tick", {"p": padding})
            frame = yield client.next_frame()
            self.assertEqual((frame["event"], len(frame["payload"]["p"])), ("tick", len(padding)))
