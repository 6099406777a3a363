"""``status`` answers from bytes encoded once per change of what it shows (state.status_cache):
the same answer as building it afresh, every change seen by the very next ``status``, and only
the clock's parts (``uptimeMs``, each recent session's ``age``) filled in per request."""
from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from openclaw.methods.registry import RequestContext
from openclaw.security.scopes import READ
from openclaw.state.clients import ConnectedClient
from openclaw.state.status_cache import Marks, StatusCache, compile_template

from .support.gateway import make_gateway


class _Sink:
    def deliver_frame(self, frame: bytes, *, droppable: bool) -> bool:
        return True

    def close_with(self, code: int, reason: str) -> None:
        pass


def _client(conn_id: str, role: str = "operator") -> ConnectedClient:
    return ConnectedClient(conn_id, role, frozenset({READ}), {"id": "cli", "mode": "cli"}, _Sink(), 0)


class StatusCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.gateway = make_gateway(self, clock=self.clock)
        self.reader = _client("reader")
        self.gateway.clients.add(self.reader)

    def status(self, params: Any = None) -> dict[str, Any]:
        """What goes on the wire, decoded."""
        context = RequestContext(self.gateway, self.reader, "r1", "status", {} if params is None else params)
        answer: dict[str, Any] = orjson.loads(orjson.dumps(self.gateway.methods.run(context)))
        return answer

    def fresh(self) -> dict[str, Any]:
        """The answer built from scratch, as before the cache (and as ``includeCliProjection`` still is)."""
        answer = self.status({"includeCliProjection": True})
        del answer["cliProjection"]
        return answer

    def add_session(self, key: str) -> None:
        self.gateway.sessions.ensure(key, self.gateway.now_ms())

    def test_the_cached_answer_is_the_fresh_one(self) -> None:
        self.add_session("agent:main:one")
        self.clock.advance(0.25)
        self.add_session("agent:main:two")
        self.clock.advance(0.5)
        cached = self.status()
        self.assertEqual(cached, self.fresh())
        self.assertEqual([entry["age"] for entry in cached["sessions"]["recent"]], [500, 750])
        self.assertEqual(cached["sessions"]["byAgent"][0]["recent"], cached["sessions"]["recent"])
        self.assertEqual(cached["uptimeMs"], 750)

    def test_unchanged_state_is_not_built_again_but_the_clock_moves(self) -> None:
        self.add_session("agent:main:one")
        first = self.status()
        builds = self.gateway.status_cache.builds
        self.clock.advance(0.4)
        second = self.status()
        self.assertEqual(self.gateway.status_cache.builds, builds)
        self.assertEqual(second["uptimeMs"] - first["uptimeMs"], 400)
        self.assertEqual(second["sessions"]["recent"][0]["age"] - first["sessions"]["recent"][0]["age"], 400)
        self.assertEqual(second, self.fresh())

    def test_a_system_event_is_seen_by_the_next_status(self) -> None:
        self.assertEqual(self.status()["queuedSystemEvents"], [])
        self.gateway.presence.system_event({"text": "deployed", "instanceId": "ci"})
        self.assertEqual(self.status()["queuedSystemEvents"], ["deployed"])
        self.gateway.presence.take_queued_system_events()
        self.assertEqual(self.status()["queuedSystemEvents"], [])

    def test_a_connection_is_counted_by_the_next_status(self) -> None:
        self.assertEqual(self.status()["connections"], {"total": 1, "operators": 1, "nodes": 0})
        self.gateway.clients.add(_client("node-1", role="node"))
        self.assertEqual(self.status()["connections"], {"total": 2, "operators": 1, "nodes": 1})
        self.gateway.clients.remove("node-1")
        self.assertEqual(self.status()["connections"], {"total": 1, "operators": 1, "nodes": 0})

    def test_a_session_is_counted_by_the_next_status(self) -> None:
        self.assertEqual(self.status()["sessions"]["count"], 0)
        self.add_session("agent:main:new")
        sessions = self.status()["sessions"]
        self.assertEqual((sessions["count"], [entry["key"] for entry in sessions["recent"]]), (1, ["agent:main:new"]))
        self.assertEqual(sessions["byAgent"][0]["count"], 1)

    def test_reload_event_loop_and_memory_changes_are_seen(self) -> None:
        self.status()
        original = self.gateway.config_reload_state
        self.gateway.config_reload_state = lambda: {**original(), "lastDecision": {"decision": "applied"}}  # type: ignore[method-assign]
        self.assertEqual(self.status()["configReload"]["lastDecision"], {"decision": "applied"})
        readings = iter([{"rssBytes": 1}, {"rssBytes": 2}])
        self.gateway.process_memory._read = lambda: next(readings)
        self.clock.advance(1)
        self.assertEqual(self.status()["processMemory"], {"rssBytes": 1})
        self.clock.advance(1)
        self.assertEqual(self.status()["processMemory"], {"rssBytes": 2})
        self.gateway.event_loop._delays.append(300.0)  # what the next one-second sample does
        self.gateway.event_loop._summary = None
        self.assertEqual(self.status()["eventLoop"]["delayMaxMs"], 300.0)

    def test_a_key_that_looks_like_a_placeholder_is_data(self) -> None:
        foreign = "0123456789abcdef0123456789abcdef"
        self.add_session(f"{foreign}:u")
        self.assertEqual(self.status(), self.fresh())


class TemplateTests(SynchronousTestCase):
    def test_placeholders_of_another_token_refuse_the_template(self) -> None:
        marks = Marks()
        encoded = orjson.dumps({"a": marks.uptime(), "b": "0123456789abcdef0123456789abcdef:u"})
        self.assertIsNone(compile_template(encoded, marks))

    def test_fallback_answers_plain_data(self) -> None:
        cache = StatusCache()

        def build(marks: Marks | None) -> dict[str, Any]:
            return {"uptimeMs": marks.uptime() if marks is not None else 5, "x": "0123456789abcdef0123456789abcdef:u"}

        self.assertEqual(cache.answer((1,), build, 10, 5), {"uptimeMs": 5, "x": "0123456789abcdef0123456789abcdef:u"})

    def test_one_entry_only(self) -> None:
        cache = StatusCache()

        def build(marks: Marks | None) -> dict[str, Any]:
            assert marks is not None
            return {"uptimeMs": marks.uptime()}

        self.assertEqual(orjson.loads(orjson.dumps(cache.answer((1,), build, 0, 7))), {"uptimeMs": 7})
        cache.answer((2,), build, 0, 8)
        cache.answer((1,), build, 0, 9)
        self.assertEqual(cache.builds, 3)
