"""A full disk during device pairing: a retryable error in the protocol's shape (issue 13, item 9).

It used to close the socket with 1011 "gateway message handler unavailable", the cause only in
the log. Over a real loopback WebSocket, with the device store's database made to fail the way a
full disk fails (SQLite's "database or disk is full", or ENOSPC from the file system): the client
gets UNAVAILABLE naming the cause, ``retryable``, then close 1013 (try again later); the gateway
keeps serving; and once the disk has room the same device pairs, on disk as well as in memory.
"""
from __future__ import annotations

import errno
import os
import sqlite3

from twisted.internet.defer import fail, inlineCallbacks
from twisted.trial.unittest import TestCase

from openclaw.security.device_identity import DeviceKeyPair
from openclaw.stores import devices
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase

from .support.gateway import start_gateway
from .support.wsclient import OPERATOR_SCOPES, connect

REMOTE = {"X-Forwarded-For": "203.0.113.7"}


class StorageFullTests(TestCase):
    timeout = 15

    @inlineCallbacks
    def setUp(self):
        self.running = yield start_gateway(self)
        self.store = self.running.gateway.pairing.store
        self.logged: list = []

    def fill_the_disk(self, error: Exception) -> None:
        self.patch(self.store._db, "run", lambda *args: fail(error))

    def free_the_disk(self) -> None:
        del self.store._db.run  # the patched instance attribute: back to the class's method

    @inlineCallbacks
    def assert_refused_for_storage(self, key: DeviceKeyPair, cause: str):
        client, response = yield connect(self, self.running.url, device=key)
        self.assertFalse(response["ok"], response)
        error = response["error"]
        self.assertEqual(error["code"], "UNAVAILABLE")
        self.assertIs(error["retryable"], True)
        self.assertEqual(error["message"], f"storage full: the gateway could not save to disk ({cause}); retry once space is freed")
        self.assertGreater(error["retryAfterMs"], 0)
        code, reason = yield client.closed
        self.assertEqual((code, reason), (1013, "gateway storage unavailable"))
        self.flushLoggedErrors()

    @inlineCallbacks
    def assert_still_serving(self):
        operator, hello = yield connect(self, self.running.url, scopes=list(OPERATOR_SCOPES))
        self.assertTrue(hello["ok"], hello)
        health = yield operator.request("health", {})
        self.assertTrue(health["ok"], health)
        return operator

    @inlineCallbacks
    def test_sqlite_disk_full_while_pairing(self):
        key = DeviceKeyPair.generate()
        self.fill_the_disk(sqlite3.OperationalError("database or disk is full"))
        yield self.assert_refused_for_storage(key, "database or disk is full")
        yield self.assert_still_serving()
        self.assertIsNone(self.store.paired(key.device_id))  # memory did not run ahead of the disk

        self.free_the_disk()
        client, response = yield connect(self, self.running.url, device=key)
        self.assertTrue(response["ok"], response)
        on_disk = devices.DeviceStore(SQLiteDatabase(self.store.path, devices.MIGRATIONS, InlineExecutor()))
        self.successResultOf(on_disk.load())
        self.addCleanup(on_disk.close)
        self.assertEqual(on_disk.paired(key.device_id).public_key, key.public_key)

    @inlineCallbacks
    def test_file_system_out_of_space_while_pairing(self):
        self.fill_the_disk(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        yield self.assert_refused_for_storage(DeviceKeyPair.generate(), "No space left on device")
        yield self.assert_still_serving()

    @inlineCallbacks
    def test_approving_on_a_full_disk_answers_and_keeps_the_socket(self):
        key = DeviceKeyPair.generate()
        client, response = yield connect(self, self.running.url, device=key, headers=REMOTE)
        request_id = response["error"]["details"]["requestId"]
        operator = yield self.assert_still_serving()
        self.fill_the_disk(sqlite3.OperationalError("database or disk is full"))
        answer = yield operator.request("device.pair.approve", {"requestId": request_id})
        self.assertEqual(answer["error"]["code"], "UNAVAILABLE")
        self.assertIs(answer["error"]["retryable"], True)
        self.assertIn("storage full", answer["error"]["message"])
        self.flushLoggedErrors()
        self.assertIsNone(self.store.paired(key.device_id))  # not paired in memory while not on disk
        self.free_the_disk()
        self.assertEqual([r.request_id for r in self.store.all_pending()], [request_id])  # still approvable
        approved = yield operator.request("device.pair.approve", {"requestId": request_id})
        self.assertTrue(approved["ok"], approved)
