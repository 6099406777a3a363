"""The Autobahn shortcuts in openclaw/connection/_autobahn.py still match Autobahn's own behaviour.

These tests exist to fail when an Autobahn release changes the internals the shortcuts rely on:
the frames written directly must be the bytes ``sendMessage`` would write, and the debug-only
``pformat`` must still be the name Autobahn's per-connection setup looks up.
"""
from __future__ import annotations

import autobahn.websocket.protocol as autobahn_protocol
import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from openclaw.connection import _autobahn


def _open_protocol() -> WebSocketServerProtocol:
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    # No opening-handshake, closing or ping timers: they would be left on the real reactor.
    factory.setProtocolOptions(autoFragmentSize=0, perMessageCompressionAccept=lambda offers: None,
                               openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol.state = protocol.STATE_OPEN
    protocol.websocket_version = 13
    return protocol


class FrameBytesTests(SynchronousTestCase):
    sizes = (0, 1, 125, 126, 127, 65535, 65536, 200_000)

    def test_direct_frames_equal_send_message(self) -> None:
        for size in self.sizes:
            payload = b"x" * size
            ours, theirs = _open_protocol(), _open_protocol()
            _autobahn.write_text_frame(ours, payload)
            theirs.sendMessage(payload, isBinary=False)
            self.assertEqual(ours.transport.value(), theirs.transport.value(), f"payload of {size} bytes")

    def test_falls_back_to_send_message_when_autobahn_has_queued_data(self) -> None:
        protocol = _open_protocol()
        protocol.send_queue.append((b"queued", False))
        sent = []
        protocol.sendMessage = lambda payload, isBinary: sent.append(payload)
        _autobahn.write_text_frame(protocol, b"later")
        self.assertEqual(sent, [b"later"])
        self.assertEqual(protocol.transport.value(), b"")

    def test_over_the_limit_goes_through_send_message_which_refuses(self) -> None:
        protocol = _open_protocol()
        protocol.maxMessagePayloadSize = 10
        self.assertFalse(_autobahn.can_write_directly(protocol, 11))
        self.assertTrue(_autobahn.can_write_directly(protocol, 10))


class DebugFormattingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.level = txaio.get_global_log_level()
        self.addCleanup(txaio.set_global_log_level, self.level)

    def test_autobahn_still_looks_up_pformat_when_a_connection_is_made(self) -> None:
        code = autobahn_protocol.WebSocketProtocol._connectionMade.__code__
        self.assertIn("pformat", code.co_names, "Autobahn changed _connectionMade: review _autobahn.py")
        _autobahn.defer_debug_formatting()
        self.assertIs(autobahn_protocol.pformat, _autobahn.format_debug_only)

    def test_formats_only_when_debug_is_logged(self) -> None:
        txaio.set_global_log_level("info")
        self.assertEqual(_autobahn.format_debug_only([("a", 1)]), _autobahn.NOT_FORMATTED)
        txaio.set_global_log_level("debug")
        self.assertEqual(_autobahn.format_debug_only([("a", 1)]), "[('a', 1)]")

    def test_connections_still_get_their_options(self) -> None:
        _autobahn.defer_debug_formatting()
        protocol = _open_protocol()
        self.assertEqual(protocol.autoFragmentSize, 0)
