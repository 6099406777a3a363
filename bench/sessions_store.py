"""Session store latency at scale: 100,000 sessions and 1,000,000 transcript lines.

    python bench/sessions_store.py                      # fill (once) and measure
    python bench/sessions_store.py --refill --requests 300

Fills ``<state-dir>/sessions.sqlite`` through the store's own row encoding (skipped when the file
already has the rows), starts ``twistd -n openclaw`` on it in a child process, and measures over a
real WebSocket, one request in flight:

* ``sessions.list {limit: 50, search: …}`` with searches matching one session, about 100, a
  tenth and all of them, plus a plain ``sessions.list {limit: 50}``;
* ``chat.history {limit: 200}`` on sessions with 1,000 lines.

Prints p50/p99 per scenario and the store's size on disk (database plus WAL), as a table and as
JSON. Targets on a 2-core machine: p50 under 20 ms, p99 under 100 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from openclaw.stores.sessions import MIGRATIONS, SessionStore  # noqa: E402
from openclaw.stores.sqlite import InlineExecutor, SQLiteDatabase  # noqa: E402

TOKEN = "bench-token"
SESSIONS = 100_000
LINES = 1_000_000
BIG_SESSIONS = 100
BIG_SESSION_LINES = 1_000
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def fill(state_dir: str) -> None:
    """Write the rows with executemany in large transactions; minutes, not hours."""
    path = os.path.join(state_dir, "sessions.sqlite")
    database = SQLiteDatabase(path, MIGRATIONS, InlineExecutor())
    database.run(lambda connection: None)  # create and migrate
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    (count,) = connection.execute("SELECT count(*) FROM sessions").fetchone()
    if count >= SESSIONS:
        connection.close()
        database.close()
        return
    started = time.perf_counter()
    now = int(time.time() * 1000)
    small_lines = (LINES - BIG_SESSIONS * BIG_SESSION_LINES) // (SESSIONS - BIG_SESSIONS)
    random.seed(7)
    connection.execute("BEGIN")
    for index in range(SESSIONS):
        key = f"agent:main:bench-{index}"
        session_id = str(uuid.uuid4())
        entry = {
            "sessionId": session_id,
            "updatedAt": now - random.randrange(0, 90 * 86_400_000),
            "agentId": "main",
            "label": f"{WORDS[index % 10]} project {index}",
            "displayName": f"Bench {index}",
            "model": "m1",
            "modelProvider": "fake",
        }
        SessionStore._put(connection, key, entry)
        lines = BIG_SESSION_LINES if index < BIG_SESSIONS else small_lines
        rows = []
        for line in range(lines):
            role = "user" if line % 2 == 0 else "assistant"
            text = f"message {line} in session {index}: " + "lorem ipsum dolor sit amet " * 4
            message = {"role": role, "content": text if role == "user" else [{"type": "text", "text": text}], "timestamp": now}
            rows.append((session_id, orjson.dumps({"type": "message", "id": uuid.uuid4().hex, "timestamp": now, "message": message}).decode()))
        connection.executemany("INSERT INTO transcript (session_id, entry) VALUES (?, ?)", rows)
        connection.execute(
            "UPDATE sessions SET first_user_text = ?, last_message_preview = ? WHERE key = ?",
            (f"message 0 in session {index}", f"message {lines - 1} in session {index}", key),
        )
        if index % 5000 == 4999:
            connection.execute("COMMIT")
            connection.execute("BEGIN")
            print(f"  filled {index + 1} sessions ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    database.close()
    print(f"filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def store_size(state_dir: str) -> int:
    base = os.path.join(state_dir, "sessions.sqlite")
    return sum(os.path.getsize(base + suffix) for suffix in ("", "-wal", "-shm") if os.path.exists(base + suffix))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BenchProtocol(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.pending: dict[str, defer.Deferred] = {}

    def onMessage(self, payload, isBinary):
        frame = json.loads(payload)
        if frame.get("event") == "connect.challenge":
            params = {
                "minProtocol": 4,
                "maxProtocol": 4,
                "client": {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"},
                "role": "operator",
                "scopes": ["operator.read"],
                "auth": {"token": TOKEN},
            }
            self.call("connect", params).addCallback(lambda _: self.factory.ready.callback(self))
            return
        if frame.get("type") == "res" and frame["id"] in self.pending:
            self.pending.pop(frame["id"]).callback(frame)

    def call(self, method, params):
        request_id = uuid.uuid4().hex
        d = self.pending[request_id] = defer.Deferred()
        self.sendMessage(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}).encode())
        return d


def percentile(ordered: list[float], fraction: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 2)


@defer.inlineCallbacks
def measure(protocol, name, method, make_params, requests):
    latencies = []
    for index in range(requests):
        started = time.perf_counter()
        response = yield protocol.call(method, make_params(index))
        latencies.append(time.perf_counter() - started)
        if not response["ok"]:
            raise RuntimeError(f"{name}: {response['error']}")
    ordered = sorted(latencies)
    result = {"scenario": name, "requests": requests, "p50_ms": percentile(ordered, 0.5), "p99_ms": percentile(ordered, 0.99)}
    print(f"{name:<40} p50 {result['p50_ms']:>8} ms   p99 {result['p99_ms']:>8} ms", flush=True)
    return result


@defer.inlineCallbacks
def main(reactor, args):
    os.makedirs(args.state_dir, exist_ok=True)
    if args.refill and os.path.exists(os.path.join(args.state_dir, "sessions.sqlite")):
        for suffix in ("", "-wal", "-shm"):
            path = os.path.join(args.state_dir, "sessions.sqlite" + suffix)
            if os.path.exists(path):
                os.unlink(path)
    fill(args.state_dir)
    port = free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    server = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "openclaw", "--port", str(port), "--token", TOKEN, "--state-dir", args.state_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            yield task.deferLater(reactor, 0.1, lambda: None)
        else:
            raise RuntimeError("gateway did not start listening")
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}")
        factory.protocol = BenchProtocol
        factory.ready = defer.Deferred()
        connectWS(factory)
        protocol = yield factory.ready
        yield measure(protocol, "warm-up", "sessions.list", lambda i: {"limit": 50}, 20)
        rng = random.Random(11)
        scenarios = [
            ("sessions.list limit 50", "sessions.list", lambda i: {"limit": 50}),
            (
                "sessions.list limit 50 search (1 match)",
                "sessions.list",
                lambda i: {"limit": 50, "search": f"bench-{rng.randrange(10_000, SESSIONS)}"},
            ),
            ("sessions.list limit 50 search (~100)", "sessions.list", lambda i: {"limit": 50, "search": f"project {rng.randrange(1000)}"}),
            ("sessions.list limit 50 search (10%)", "sessions.list", lambda i: {"limit": 50, "search": WORDS[i % 10]}),
            ("sessions.list limit 50 search (all)", "sessions.list", lambda i: {"limit": 50, "search": "bench"}),
            (
                "chat.history limit 200",
                "chat.history",
                lambda i: {"sessionKey": f"agent:main:bench-{rng.randrange(BIG_SESSIONS)}", "limit": 200},
            ),
        ]
        results = []
        for name, method, make_params in scenarios:
            results.append((yield measure(protocol, name, method, make_params, args.requests)))
        size = store_size(args.state_dir)
        print(f"store size on disk: {size / 1_000_000:.1f} MB ({SESSIONS} sessions, {LINES} transcript lines)")
        print(json.dumps({"results": results, "storeBytes": size}))
        protocol.sendClose(1000)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default="/tmp/openclaw-bench-sessions")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--refill", action="store_true")
    task.react(main, [parser.parse_args()])
