"""The gateway log file (JSON lines, size rotation) and ``logs.tail`` (protocol §9.7)."""
from __future__ import annotations

import json
import os
import tempfile
from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from openclaw.methods import logs
from openclaw.methods.registry import MethodRegistry, RequestContext
from openclaw.protocol.errors import GatewayError
from openclaw.protocol.schema.methods import METHOD_PARAMS
from openclaw.protocol.schema.operations import OPERATION_METHOD_PARAMS
from openclaw.protocol.validation import ProtocolValidators
from openclaw.security.scopes import READ
from openclaw.services.log_file import FLUSH_INTERVAL_S, MAX_QUEUED_BYTES, GatewayLogFile, default_log_path
from openclaw.stores.sqlite import InlineExecutor

from .support.gateway import make_gateway


def read_records(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


class LogFileTests(SynchronousTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="openclaw-logs-")
        self.path = default_log_path(self.dir)
        self.publisher = LogPublisher()
        self.log = Logger(namespace="openclaw.test", observer=self.publisher)

    def start(self, **options):
        service = GatewayLogFile(self.path, publisher=self.publisher, **options)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    def test_default_path_is_under_the_state_dir(self):
        self.assertEqual(default_log_path("/s"), "/s/logs/gateway.log")

    def test_one_json_line_per_event(self):
        self.start()
        self.log.info("paired {device}", device="abc")
        self.log.warn("slow {what}", what="disk")
        records = read_records(self.path)
        self.assertEqual(len(records), 2)
        first = records[0]
        self.assertEqual(set(first), {"time", "level", "subsystem", "message"})
        self.assertEqual((first["level"], first["subsystem"], first["message"]), ("info", "test", "paired abc"))
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(records[1]["level"], "warn")

    def test_failures_carry_the_traceback(self):
        self.start()
        try:
            1 / 0  # noqa: B018 (the ZeroDivisionError is the point)
        except ZeroDivisionError:
            self.log.failure("while {action}", action="dividing")
        (record,) = read_records(self.path)
        self.assertEqual((record["level"], record["message"]), ("critical", "while dividing"))
        self.assertIn("ZeroDivisionError", record["failure"])

    def test_text_with_newlines_stays_on_one_line(self):
        self.start()
        self.log.info("a\nb \u00e9")
        with open(self.path, "rb") as handle:
            raw = handle.read()
        self.assertEqual(raw.count(b"\n"), 1)
        self.assertEqual(read_records(self.path)[0]["message"], "a\nb \u00e9")

    def test_level_filter(self):
        service = self.start()
        self.log.debug("hidden")
        service.set_level("debug")
        self.log.debug("shown")
        service.set_level("error")
        self.log.warn("hidden too")
        self.log.error("loud")
        service.set_level("nonsense")  # ignored
        self.assertEqual([r["message"] for r in read_records(self.path)], ["shown", "loud"])

    def test_stop_removes_the_observer_and_closes_the_file(self):
        service = self.start()
        self.log.info("before")
        service.stopService()
        self.log.info("after")
        self.assertEqual([r["message"] for r in read_records(self.path)], ["before"])
        self.assertIsNone(service._file)

    def test_the_observer_never_raises(self):
        service = self.start()
        service._file._file.close()  # a file that fails every write, like a full disk
        self.log.info("lost")
        self.assertEqual(service.dropped, 1)
        service.observe({"log_level": object()})  # not even a level
        self.assertEqual(service.dropped, 2)

    def test_rotation_by_size_keeps_max_files(self):
        self.start(max_bytes=300, max_files=2)
        for index in range(40):
            self.log.info("line {index}", index=index)
        self.assertTrue(os.path.exists(self.path + ".1"))
        self.assertTrue(os.path.exists(self.path + ".2"))
        self.assertFalse(os.path.exists(self.path + ".3"))
        for name in (self.path, self.path + ".1", self.path + ".2"):
            self.assertLessEqual(os.path.getsize(name), 300 + 200)
            for record in read_records(name):  # every line is whole JSON
                self.assertTrue(record["message"].startswith("line "))
        self.assertEqual(read_records(self.path)[-1]["message"], "line 39")
        older = read_records(self.path + ".1")
        newest = read_records(self.path)
        self.assertEqual(int(older[-1]["message"].split()[1]) + 1, int(newest[0]["message"].split()[1]))

    def test_the_global_publisher_by_default(self):
        service = GatewayLogFile(self.path)
        service.startService()
        try:
            Logger(namespace="openclaw.global-test").info("global marker")
        finally:
            service.stopService()
        texts = [r["message"] for r in read_records(self.path) if r["subsystem"] == "global-test"]
        self.assertEqual(texts, ["global marker"])
        self.assertNotIn(service.observe, globalLogPublisher._observers)


class ReadLogSliceTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(tempfile.mkdtemp(prefix="openclaw-tail-"), "gateway.log")

    def write(self, data, mode="ab"):
        with open(self.path, mode) as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        return os.path.getsize(self.path)

    def lines(self, count, first=0):
        return "".join(f"line {i}\n" for i in range(first, first + count))

    def test_missing_file(self):
        self.assertEqual(
            logs.read_log_slice(self.path),
            {"cursor": 0, "size": 0, "lines": [], "truncated": False, "reset": False},
        )

    def test_empty_file(self):
        self.write("")
        self.assertEqual(logs.read_log_slice(self.path), {"cursor": 0, "size": 0, "lines": [], "truncated": False, "reset": False})

    def test_no_cursor_returns_the_tail(self):
        size = self.write(self.lines(10))
        result = logs.read_log_slice(self.path)
        self.assertEqual(result, {"cursor": size, "size": size, "lines": [f"line {i}" for i in range(10)], "truncated": False, "reset": False})

    def test_limit_keeps_the_last_lines(self):
        size = self.write(self.lines(10))
        result = logs.read_log_slice(self.path, limit=3)
        self.assertEqual(result["lines"], ["line 7", "line 8", "line 9"])
        self.assertIs(result["truncated"], True)
        self.assertEqual(result["cursor"], size)

    def test_max_bytes_drops_the_partial_first_line(self):
        size = self.write(self.lines(10))  # "line N\n" is 7 bytes
        result = logs.read_log_slice(self.path, max_bytes=10)
        self.assertEqual(result["lines"], ["line 9"])
        self.assertIs(result["truncated"], True)
        self.assertEqual(result["cursor"], size)
        # Starting exactly on a line boundary keeps that line.
        self.assertEqual(logs.read_log_slice(self.path, max_bytes=14)["lines"], ["line 8", "line 9"])

    def test_cursor_returns_only_what_was_appended(self):
        first = self.write(self.lines(3))
        result = logs.read_log_slice(self.path, cursor=first)
        self.assertEqual((result["lines"], result["cursor"]), ([], first))
        second = self.write(self.lines(2, first=3))
        result = logs.read_log_slice(self.path, cursor=first)
        self.assertEqual(result["lines"], ["line 3", "line 4"])
        self.assertEqual((result["cursor"], result["size"], result["reset"], result["truncated"]), (second, second, False, False))

    def test_cursor_with_limit(self):
        first = self.write(self.lines(3))
        self.write(self.lines(5, first=3))
        result = logs.read_log_slice(self.path, cursor=first, limit=2)
        self.assertEqual(result["lines"], ["line 6", "line 7"])
        self.assertIs(result["truncated"], True)

    def test_a_line_being_written_waits_for_its_newline(self):
        first = self.write("done\npart")
        result = logs.read_log_slice(self.path)
        self.assertEqual((result["lines"], result["cursor"], result["size"]), (["done"], 5, first))
        self.write("ial\n")
        result = logs.read_log_slice(self.path, cursor=result["cursor"])
        self.assertEqual(result["lines"], ["partial"])

    def test_cursor_past_the_end_resets(self):
        self.write(self.lines(50))
        self.write(self.lines(2), mode="wb")  # rotated: a new, shorter file
        result = logs.read_log_slice(self.path, cursor=350)
        self.assertEqual(result["lines"], ["line 0", "line 1"])
        self.assertIs(result["reset"], True)
        self.assertIs(result["truncated"], False)
        self.assertEqual(result["cursor"], 14)

    def test_cursor_too_far_behind_skips_to_the_tail(self):
        self.write(self.lines(10))
        result = logs.read_log_slice(self.path, cursor=7, max_bytes=14)
        self.assertEqual(result["lines"], ["line 8", "line 9"])
        self.assertEqual((result["reset"], result["truncated"], result["skippedBytes"]), (True, True, 49))

    def test_cursor_counts_bytes_not_characters(self):
        first = self.write("\u00e9t\u00e9\n")
        self.assertEqual(first, 6)
        self.write("caf\u00e9\n")
        result = logs.read_log_slice(self.path, cursor=first)
        self.assertEqual(result["lines"], ["caf\u00e9"])
        self.assertEqual(result["cursor"], 12)

    def test_out_of_range_arguments_are_clamped(self):
        self.write(self.lines(3))
        self.assertEqual(len(logs.read_log_slice(self.path, limit=0)["lines"]), 1)
        self.assertEqual(len(logs.read_log_slice(self.path, limit=10**9)["lines"]), 3)
        self.assertEqual(logs.read_log_slice(self.path, cursor=-5)["lines"], ["line 0", "line 1", "line 2"])


class HeldExecutor:
    """Runs submitted work only when the test says so: shows the handler does not read inline."""

    def __init__(self):
        self.pending = []

    def submit(self, work):
        d = Deferred()
        self.pending.append((work, d))
        return d

    def run_all(self):
        while self.pending:
            work, d = self.pending.pop(0)
            d.callback(work())


class QueuedLogFileTests(SynchronousTestCase):
    """With an executor, logging never touches the disk on the calling thread."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="openclaw-logs-")
        self.path = default_log_path(self.dir)
        self.publisher = LogPublisher()
        self.log = Logger(namespace="openclaw.test", observer=self.publisher)
        self.clock = Clock()
        self.executor = HeldExecutor()
        self.service = GatewayLogFile(self.path, publisher=self.publisher, executor=self.executor, clock=self.clock)
        self.service.startService()
        self.addCleanup(lambda: (self.service.stopService(), self.executor.run_all()) if self.service.running else None)

    def texts(self):
        return [record["message"] for record in read_records(self.path)] if os.path.exists(self.path) else []

    def test_lines_are_written_on_the_executor_in_batches(self):
        self.log.info("one")
        self.log.info("two")
        self.assertEqual(self.texts(), [])  # queued, not written by the logging call
        self.clock.advance(FLUSH_INTERVAL_S)
        self.assertEqual(self.texts(), [])  # handed to the executor, which has not run yet
        self.executor.run_all()
        self.assertEqual(self.texts(), ["one", "two"])

    def test_queue_is_bounded(self):
        line = "x" * 1000
        for _ in range(MAX_QUEUED_BYTES // 1000 + 50):
            self.log.info(line)
        self.assertGreater(self.service.dropped, 0)
        self.clock.advance(FLUSH_INTERVAL_S)
        self.executor.run_all()
        self.assertLessEqual(os.path.getsize(self.path), MAX_QUEUED_BYTES)

    def test_stop_writes_what_is_queued_then_closes(self):
        self.log.info("last words")
        stopped = self.service.stopService()
        self.executor.run_all()
        self.successResultOf(stopped)
        self.assertEqual(self.texts(), ["last words"])
        self.log.info("after stop")
        self.assertEqual(self.executor.pending, [])


class LogsTailMethodTests(SynchronousTestCase):
    def setUp(self):
        self.gateway = make_gateway(self)
        self.gateway.validators = ProtocolValidators({**METHOD_PARAMS, **OPERATION_METHOD_PARAMS})
        self.path = default_log_path(self.gateway.settings.state_dir)
        self.gateway.log_file_path = self.path
        # A registry of its own: the method under test, bound to this test's executor.
        self.gateway.methods = MethodRegistry()
        self.gateway.methods.add_all(logs.methods(InlineExecutor()))
        self.publisher = LogPublisher()
        self.log_file = GatewayLogFile(self.path, publisher=self.publisher)
        self.log_file.startService()
        self.addCleanup(lambda: self.log_file.stopService() if self.log_file.running else None)
        self.log = Logger(namespace="openclaw.test", observer=self.publisher)

    def call(self, params, scopes=(READ,)):
        client = SimpleNamespace(role="operator", scopes=frozenset(scopes))
        ctx = RequestContext(gateway=self.gateway, client=client, request_id="1", method="logs.tail", params=params)
        return self.gateway.methods.dispatch(ctx)

    def test_tail_of_the_gateway_log(self):
        for index in range(5):
            self.log.info("event {index}", index=index)
        result = self.successResultOf(self.call({}))
        self.assertEqual(result["file"], self.path)
        self.assertEqual(result["size"], os.path.getsize(self.path))
        self.assertEqual(result["cursor"], result["size"])
        self.assertEqual([json.loads(line)["message"] for line in result["lines"]], [f"event {i}" for i in range(5)])
        self.assertEqual((result["truncated"], result["reset"]), (False, False))

    def test_tail_sees_lines_still_queued(self):
        """logs.tail flushes the queue onto the same (ordered) executor before reading."""
        self.log_file.stopService()
        self.log_file = self.gateway.log_file = GatewayLogFile(
            self.path, publisher=self.publisher, executor=InlineExecutor(), clock=Clock()
        )
        self.log_file.startService()
        self.log.info("just now")
        result = self.successResultOf(self.call({}))
        self.assertEqual([json.loads(line)["message"] for line in result["lines"]][-1:], ["just now"])

    def test_follow_with_the_cursor(self):
        self.log.info("one")
        first = self.successResultOf(self.call({}))
        self.log.info("two")
        self.log.info("three")
        second = self.successResultOf(self.call({"cursor": first["cursor"], "limit": 1}))
        self.assertEqual([json.loads(line)["message"] for line in second["lines"]], ["three"])
        self.assertIs(second["truncated"], True)

    def test_max_bytes(self):
        for index in range(20):
            self.log.info("event {index}", index=index)
        result = self.successResultOf(self.call({"maxBytes": 300}))
        self.assertIs(result["truncated"], True)
        texts = [json.loads(line)["message"] for line in result["lines"]]
        self.assertTrue(0 < len(texts) < 20)
        self.assertEqual(texts[-1], "event 19")

    def test_rotation_resets_the_cursor(self):
        self.log_file.stopService()
        self.log_file = GatewayLogFile(self.path, max_bytes=400, publisher=self.publisher)
        self.log_file.startService()
        for index in range(3):
            self.log.info("before {index}", index=index)
        cursor = self.successResultOf(self.call({}))["cursor"]
        for index in range(4):  # rotates at the third; the new file stays shorter than the cursor
            self.log.info("after {index}", index=index)
        self.assertTrue(os.path.exists(self.path + ".1"))
        self.assertLess(os.path.getsize(self.path), cursor)
        result = self.successResultOf(self.call({"cursor": cursor}))
        self.assertIs(result["reset"], True)
        self.assertEqual(result["lines"][-1], json.dumps(read_records(self.path)[-1], ensure_ascii=False))

    def test_reads_go_through_the_executor(self):
        held = HeldExecutor()
        self.gateway.methods = MethodRegistry()
        self.gateway.methods.add_all(logs.methods(held))
        self.log.info("queued")
        d = self.call({})
        self.assertNoResult(d)
        self.assertEqual(len(held.pending), 1)
        held.run_all()
        self.assertEqual(len(self.successResultOf(d)["lines"]), 1)

    def test_params_are_checked(self):
        for params in ({"limit": 0}, {"limit": 5001}, {"maxBytes": 0}, {"maxBytes": 1_000_001}, {"cursor": -1}, {"cursor": "0"}, {"follow": True}):
            with self.subTest(params=params):
                failure = self.failureResultOf(self.call(params), GatewayError)
                self.assertEqual(failure.value.code, "INVALID_REQUEST")
                self.assertTrue(failure.value.message.startswith("invalid logs.tail params: "), failure.value.message)
        self.successResultOf(self.call({"cursor": 0, "limit": 5000, "maxBytes": 1_000_000}))

    def test_needs_operator_read(self):
        failure = self.failureResultOf(self.call({}, scopes=()), GatewayError)
        self.assertEqual(failure.value.code, "FORBIDDEN")

    def test_without_a_log_file(self):
        self.gateway.log_file_path = None
        failure = self.failureResultOf(self.call({}), GatewayError)
        self.assertEqual(failure.value.code, "UNAVAILABLE")

    def test_an_unreadable_file_is_unavailable(self):
        os.remove(self.path)
        os.mkdir(self.path)  # open() on a directory fails with an OSError other than "missing"
        failure = self.failureResultOf(self.call({}), GatewayError)
        self.assertEqual(failure.value.code, "UNAVAILABLE")
        self.assertIn("could not read the log file", failure.value.message)
