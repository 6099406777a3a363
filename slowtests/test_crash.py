"""SIGKILL the gateway process in the middle of session and pairing writes; nothing acknowledged is lost.

The gateway runs as a real ``twistd`` child process. Clients keep writing (session patches, new
devices pairing silently on loopback) and record what the gateway acknowledged; the process is
killed without warning while writes are in flight, started again on the same state directory,
and every acknowledged write must be there.
"""
from __future__ import annotations

import os
import signal
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol, ProcessProtocol, Factory
from twisted.trial.unittest import TestCase

from openclaw.client import ClientOptions, GatewayCallError, GatewayClient
from openclaw.security.device_identity import DeviceKeyPair

from tests.support.loopback import settle_autobahn_timers

TOKEN = "crash-token"
SCOPES = ("operator.admin", "operator.read", "operator.write", "operator.pairing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Exit(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred = Deferred()

    def processEnded(self, reason) -> None:  # noqa: N802 (Twisted's name)
        self.ended.callback(reason.value)


class CrashTests(TestCase):
    timeout = 60

    def setUp(self):
        self.state = os.path.abspath(self.mktemp())
        os.makedirs(self.state)
        self.port = free_port()

    def start_gateway(self):
        exit_watch = _Exit()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        args = [twistd, "-n", "--pidfile=", "openclaw", "--port", str(self.port), "--token", TOKEN, "--state-dir", self.state]
        process = reactor.spawnProcess(exit_watch, twistd, args, env={**os.environ, "PYTHONUNBUFFERED": "1"})

        def kill_if_running():
            if exit_watch.ended.called:
                return None
            process.signalProcess("KILL")
            return exit_watch.ended.addErrback(lambda _: None)

        self.addCleanup(kill_if_running)
        return process, exit_watch

    @inlineCallbacks
    def wait_for_port(self):
        """Retry a TCP connect on each failure (bounded): the child needs a moment to start."""
        for _ in range(300):
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=1)
            try:
                protocol = yield endpoint.connect(Factory.forProtocol(Protocol))
            except Exception:
                pause: Deferred = Deferred()
                reactor.callLater(0.05, pause.callback, None)
                yield pause
                continue
            protocol.transport.loseConnection()
            return
        raise AssertionError("the gateway never started listening")

    def client(self, device=None):
        client = GatewayClient(
            ClientOptions(url=f"ws://127.0.0.1:{self.port}", token=TOKEN, scopes=SCOPES, device=device, reconnect=False)
        )
        self.addCleanup(settle_autobahn_timers)  # runs after client.close (cleanups are LIFO)
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def connected_when_ready(self):
        """Connect, retrying while the gateway says it is still starting (its stores loading)."""
        for _ in range(200):
            client = self.client()
            try:
                yield client.connect()
                return client
            except GatewayCallError as exc:
                if "starting" not in exc.message:
                    raise
            pause: Deferred = Deferred()
            reactor.callLater(0.05, pause.callback, None)
            yield pause
        raise AssertionError("the gateway never finished starting")

    @inlineCallbacks
    def test_acknowledged_writes_survive_sigkill(self):
        process, exited = self.start_gateway()
        yield self.wait_for_port()
        writer = yield self.connected_when_ready()
        acknowledged_labels: list[str] = []
        paired_devices: list[str] = []

        @inlineCallbacks
        def write_sessions():
            for index in range(10_000):
                label = f"label-{index}"
                try:
                    yield writer.call("sessions.patch", {"key": f"crash-{index}", "label": label})
                except GatewayCallError:
                    return
                acknowledged_labels.append(label)

        @inlineCallbacks
        def pair_devices():
            for _ in range(10_000):
                device = DeviceKeyPair.generate()
                client = GatewayClient(
                    ClientOptions(url=f"ws://127.0.0.1:{self.port}", token=TOKEN, scopes=("operator.read",), device=device, reconnect=False)
                )
                try:
                    yield client.connect()  # hello-ok: silently paired and the token stored
                except GatewayCallError:
                    return
                paired_devices.append(device.device_id)
                yield client.close()

        writes = DeferredList([write_sessions(), pair_devices()], consumeErrors=True)
        while len(acknowledged_labels) < 40 or len(paired_devices) < 5:
            pause: Deferred = Deferred()
            reactor.callLater(0.01, pause.callback, None)
            yield pause
        process.signalProcess(signal.SIGKILL)
        yield exited.ended.addErrback(lambda _: None)
        yield writes
        self.assertGreaterEqual(len(acknowledged_labels), 40)

        self.start_gateway()
        yield self.wait_for_port()
        reader = yield self.connected_when_ready()
        listing = yield reader.call("sessions.list", {"limit": 100_000})
        stored = {row.get("label") for row in listing["sessions"]}
        missing = [label for label in acknowledged_labels if label not in stored]
        self.assertEqual(missing, [], "acknowledged session writes were lost")
        devices = yield reader.call("device.pair.list", {})
        paired = {device["deviceId"] for device in devices["paired"]}
        self.assertEqual([d for d in paired_devices if d not in paired], [], "acknowledged pairings were lost")
        health = yield reader.call("health", {"probe": True})
        self.assertIs(health["ok"], True)
