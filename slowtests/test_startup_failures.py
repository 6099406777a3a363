"""A gateway that cannot start exits non-zero, with a message naming the cause (issue 13, item 8).

Supervisors (``Restart=on-failure``) only see the exit status: a corrupt ``sessions.sqlite`` or an
unwritable state directory used to log the cause and then exit 0. Each case runs the real
``twistd -n openclaw`` and waits for it to end.
"""
from __future__ import annotations

import os
import sqlite3

from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ProcessTerminated
from twisted.trial.unittest import SkipTest, TestCase

from tests.support.twistd import TwistdGateway, free_port


class FailedStartTests(TestCase):
    timeout = 60

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    @inlineCallbacks
    def exit_of(self, state_dir: str, **kwargs):
        """Run twistd on ``state_dir`` (config outside it); its exit status and output."""
        config = os.path.join(self.dir, "config", "openclaw.json")
        os.makedirs(os.path.dirname(config), exist_ok=True)
        args = ["--port", str(free_port()), "--token", "t", "--state-dir", state_dir, "--config", config]
        process = TwistdGateway(self, args, **kwargs)
        reason = yield process.ended
        status = reason.exitCode if isinstance(reason, ProcessTerminated) else 0
        return status, "\n".join(process.lines)

    @inlineCallbacks
    def test_corrupt_session_database(self):
        state = os.path.join(self.dir, "state")
        os.makedirs(state)
        path = os.path.join(state, "sessions.sqlite")
        with open(path, "wb") as handle:
            handle.write(b"this is not an SQLite file, it is garbage " * 200)
        status, output = yield self.exit_of(state)
        self.assertEqual(status, 1, output)
        self.assertIn(f"could not open the session store at {path}: file is not a database", output)

    @inlineCallbacks
    def test_session_database_from_another_version(self):
        """An SQLite file whose schema is not ours: it opens, but its tables cannot be read."""
        state = os.path.join(self.dir, "state")
        os.makedirs(state)
        path = os.path.join(state, "sessions.sqlite")
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA user_version=999")
        connection.close()
        status, output = yield self.exit_of(state)
        self.assertEqual(status, 1, output)
        self.assertIn(f"could not open the session store at {path}: no such table", output)

    @inlineCallbacks
    def test_store_path_that_is_a_directory(self):
        state = os.path.join(self.dir, "state")
        os.makedirs(os.path.join(state, "devices.sqlite"))
        status, output = yield self.exit_of(state)
        self.assertEqual(status, 1, output)
        self.assertIn(f"could not open the device store at {state}/devices.sqlite", output)

    @inlineCallbacks
    def test_state_directory_that_cannot_be_created(self):
        blocker = os.path.join(self.dir, "a-file")
        open(blocker, "w").close()
        state = os.path.join(blocker, "state")
        status, output = yield self.exit_of(state)
        self.assertEqual(status, 1, output)
        self.assertIn(f"the state directory {state} cannot be used: Not a directory", output)
        self.assertNotIn("Traceback", output)

    @inlineCallbacks
    def test_read_only_state_directory(self):
        state = self.read_only_directory()
        status, output = yield self.exit_of(state)
        self.assertEqual(status, 1, output)
        self.assertIn(f"the state directory {state} cannot be used: ", output)
        self.assertNotIn("Traceback", output)

    def read_only_directory(self) -> str:
        """A directory this process cannot create files in.

        Root ignores modes, so as root it is sysfs's top, where no one creates files.
        """
        if os.getuid() != 0:
            state = os.path.join(self.dir, "state")
            os.makedirs(state)
            sqlite3.connect(os.path.join(state, "sessions.sqlite")).close()
            os.chmod(state, 0o555)
            self.addCleanup(os.chmod, state, 0o755)
            return state
        probe = "/sys/openclaw-write-probe"
        try:
            os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError:
            return "/sys"
        os.unlink(probe)
        raise SkipTest("running as root and /sys is writable: no directory here is read-only to root")
