"""In-process restart of the real service tree on real loopback sockets (http spec §4 "Restart mechanics").

``tap.makeService`` builds the whole tree (reload service, stores on their worker threads,
WebSocket service, listeners) on the global reactor, on a free port with a config file in a temp
state dir. A restart must say goodbye properly (``shutdown`` then close 1012), come back on the
same or the new port, and leave no thread, timer or socket behind once the root is stopped.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from openclaw import tap
from openclaw.services.runtime import RESTART_EXPECTED_MS

from .support.gateway import TOKEN
from .support.wsclient import connect

CLOSE_SERVICE_RESTART = 1012
THREAD_PREFIXES = ("PoolThread-sqlite:", "PoolThread-config-file", "PoolThread-files")


def free_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
    finally:
        probe.close()


def gateway_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIXES)]


def is_event(name: str) -> Any:
    return lambda frame: isinstance(frame, dict) and frame.get("type") == "event" and frame.get("event") == name


class RestartTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.assertEqual(gateway_threads(), [], "a previous test leaked gateway threads")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "openclaw.json")
        self.port = free_port()
        self.config = {"gateway": {"port": self.port, "auth": {"mode": "token", "token": TOKEN}}}
        with open(self.path, "w", encoding="utf-8") as handle:
            json.dump(self.config, handle)
        self.root = tap.makeService({"state-dir": self.dir}, reactor=reactor, env={})
        self.addCleanup(self._stop_root)
        yield self.root.startService()
        self.reloader = self.root.reloader
        self.assertIsNotNone(self.reloader)
        self.assertEqual(self.reloader.path, self.path)

    @inlineCallbacks
    def _stop_root(self):
        if self.root.running:
            yield self.root.stopService()
        self.assertEqual(gateway_threads(), [])

    def url(self, port: int | None = None) -> str:
        return f"ws://127.0.0.1:{port or self.port}"

    @inlineCallbacks
    def operator(self, port: int | None = None):
        client, hello = yield connect(self, self.url(port))
        self.assertTrue(hello["ok"], hello)
        self.assertEqual(hello["payload"]["type"], "hello-ok")
        return client, hello["payload"]

    def restarted(self) -> Deferred:
        """Fires when the next restart the reload service asks for has completed."""
        done: Deferred = Deferred()
        original = self.reloader._restart

        def restart(reason: str) -> Deferred:
            self.reloader._restart = original
            return original(reason).addBoth(lambda result: (done.callback(reason), result)[1])

        self.reloader._restart = restart
        return done

    @inlineCallbacks
    def assertGoodbye(self, client: Any):
        shutdown = yield client.next_matching(is_event("shutdown"))
        self.assertEqual(shutdown["payload"], {"reason": "gateway restarting", "restartExpectedMs": RESTART_EXPECTED_MS})
        self.assertEqual(shutdown["payload"]["restartExpectedMs"], 1500)
        code, reason = yield client.closed
        self.assertEqual(code, CLOSE_SERVICE_RESTART)
        self.assertEqual(reason, "service restart")

    # -- tests -------------------------------------------------------------------------------

    @inlineCallbacks
    def test_restart_says_goodbye_and_comes_back(self):
        client, first = yield self.operator()
        old_gateway = self.root.gateway
        names = [service.name for service in self.root.tree]
        old_tree = self.root.tree
        before = gateway_threads()
        threads = sorted(thread.name for thread in before)
        # devices, sessions, the config file (at least)
        self.assertTrue(any(name.startswith("PoolThread-config-file") for name in threads), threads)
        self.assertGreaterEqual(len([name for name in threads if name.startswith("PoolThread-sqlite:")]), 2, threads)
        restarting = self.root.restart("test")
        yield self.assertGoodbye(client)
        yield restarting
        self.assertEqual(self.root.restarts, 1)
        self.assertIsNot(self.root.gateway, old_gateway)
        self.assertIs(self.root.gateway.config_control, self.reloader)
        self.assertTrue(self.reloader.running)
        # A new child tree replaced the old one (stopped, with no parent); the reload service stayed.
        self.assertEqual([service.name for service in self.root], ["reload", "gateway"])
        self.assertIsNot(self.root.tree, old_tree)
        self.assertIsNone(old_tree.parent)
        self.assertFalse(any(service.running for service in old_tree))
        self.assertEqual([service.name for service in self.root.tree], names)
        self.assertEqual(names[-2:], ["websocket", "listeners"])
        self.assertTrue(all(service.running for service in self.root))
        self.assertTrue(all(service.running for service in self.root.tree))
        # The old tree's workers were joined (only the reload service's own worker lives on);
        # the new tree has its own store workers. Its file worker starts on first use, so it may
        # not be there yet.
        survivors = [thread.name for thread in before if thread.is_alive()]
        self.assertEqual([name for name in survivors if not name.startswith("PoolThread-config-file")], [])
        after = sorted(thread.name for thread in gateway_threads())
        self.assertEqual(sorted(name for name in after if name.startswith("PoolThread-sqlite:")),
                         sorted(name for name in threads if name.startswith("PoolThread-sqlite:")))
        self.assertLessEqual(set(after), set(threads))
        self.assertFalse(old_gateway.accepting)
        again, second = yield self.operator()
        self.assertNotEqual(second["server"]["connId"], first["server"]["connId"])
        health = yield again.request("health", {})
        self.assertTrue(health["ok"], health)
        self.assertEqual(health["payload"]["configReload"]["path"], self.path)

    @inlineCallbacks
    def test_port_change_restarts_onto_the_new_port(self):
        client, _ = yield self.operator()
        new_port = free_port()
        done = self.restarted()
        text = json.dumps({"gateway": {"port": new_port, "auth": {"mode": "token", "token": TOKEN}}})
        written = yield self.reloader.write(text)
        change = self.reloader.consider(written)
        self.assertTrue(change.restart)
        self.assertEqual(change.restart_reasons, ("gateway.port",))
        yield self.assertGoodbye(client)
        reason = yield done
        self.assertEqual(reason, "config change")
        self.assertEqual(self.root.gateway.settings.port, new_port)
        self.assertEqual(self.reloader.last_decision["decision"], "restart")
        again, _ = yield self.operator(new_port)
        response = yield again.request("config.get", {})
        self.assertTrue(response["ok"], response)
        self.assertEqual(response["payload"]["hash"], written.hash)
        # The old port is closed.
        refused = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), Protocol())
        yield self.assertFailure(refused, ConnectionRefusedError)

    @inlineCallbacks
    def test_busy_port_falls_back_to_the_running_config(self):
        """A new tree that cannot bind must not leave the process with nothing listening."""
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        running_hash = self.reloader.snapshot.hash
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        client, _ = yield self.operator()
        done = self.restarted()
        text = json.dumps({"gateway": {"port": busy, "auth": {"mode": "token", "token": TOKEN}}})
        written = yield self.reloader.write(text)
        change = self.reloader.consider(written)
        self.assertEqual(change.restart_reasons, ("gateway.port",))
        yield self.assertGoodbye(client)
        yield done
        # Back on the old port with the old config; the file's config was not taken.
        self.assertEqual(self.root.gateway.settings.port, self.port)
        self.assertEqual(self.root.settings.port, self.port)
        self.assertEqual(self.reloader.snapshot.hash, running_hash)
        self.assertTrue(all(service.running for service in self.root))
        self.assertTrue(all(service.running for service in self.root.tree))
        decision = self.reloader.last_decision
        self.assertEqual(decision["decision"], "rolled-back")
        self.assertIn("Address already in use", decision["error"])
        self.assertIn("CannotListenError", decision["error"])
        self.assertEqual(decision["attemptedHash"], written.hash)
        self.assertIn(f"running the last good config again on port {self.port}", decision["reason"])
        texts = [(event["log_level"].name, formatEvent(event)) for event in logged]
        self.assertIn("error", [level for level, text in texts if text.startswith("config reload: rolled-back (new config not applied")])
        self.assertFalse([text for level, text in texts if level == "critical"], texts)
        again, _ = yield self.operator()
        status = yield again.request("status", {})
        self.assertTrue(status["ok"], status)
        self.assertEqual(status["payload"]["configReload"]["lastDecision"]["decision"], "rolled-back")
        health = yield again.request("health", {"probe": True})
        self.assertTrue(health["ok"], health)
        state = health["payload"]["configReload"]
        self.assertEqual(state["hash"], running_hash)
        self.assertEqual(state["lastDecision"]["decision"], "rolled-back")
        # Restoring the file to what runs is recorded, with no restart.
        restored = yield self.reloader.write(json.dumps(self.config))
        self.assertIsNone(self.reloader.consider(restored))
        self.assertEqual(self.reloader.last_decision["decision"], "noop")
        self.assertEqual(self.root.restarts, 1)

    @inlineCallbacks
    def test_config_apply_over_the_socket_restarts(self):
        """The whole path: config.apply with a port change, the reply, then the restart."""
        client, _ = yield self.operator()
        current = yield client.request("config.get", {})
        new_port = free_port()
        done = self.restarted()
        raw = json.dumps({"gateway": {"port": new_port, "auth": {"mode": "token", "token": "__OPENCLAW_REDACTED__"}}})
        response = yield client.request("config.apply", {"raw": raw, "baseHash": current["payload"]["hash"]})
        self.assertTrue(response["ok"], response)
        self.assertIs(response["payload"]["restart"], True)
        yield self.assertGoodbye(client)
        yield done
        again, _ = yield self.operator(new_port)  # the token survived the redaction round trip
        self.assertFalse(again.closed.called)

    @inlineCallbacks
    def test_requested_restart_keeps_the_port(self):
        """SIGUSR1 path: a coalesced restart request, same port, same config."""
        client, _ = yield self.operator()
        done = self.restarted()
        self.assertTrue(self.reloader.request_restart("SIGUSR1"))
        self.assertFalse(self.reloader.request_restart("SIGUSR1"))  # coalesced
        yield self.assertGoodbye(client)
        reason = yield done
        self.assertEqual(reason, "SIGUSR1")
        self.assertEqual(self.root.restarts, 1)
        yield self.operator()

    @inlineCallbacks
    def test_stop_after_a_restart_says_stopping_and_leaves_nothing(self):
        yield self.root.restart("test")
        client, _ = yield self.operator()
        yield self.root.stopService()
        shutdown = yield client.next_matching(is_event("shutdown"))
        self.assertEqual(shutdown["payload"]["reason"], "gateway stopping")
        code, _ = yield client.closed
        self.assertEqual(code, CLOSE_SERVICE_RESTART)
        self.assertEqual(gateway_threads(), [])
        self.assertFalse(any(service.running for service in self.root))
