"""Cluster-mode benchmarks (issue 17): one process vs two on one port, and what crossing
instances costs. Ratios are computed within one run.

    .venv/bin/python bench/cluster.py [--seconds 5] [--rounds 3] [--base-port 19650]

Needs PostgreSQL (``OPENCLAW_TEST_POSTGRES``, default 127.0.0.1:5432 db ``test``) and Redis
(``OPENCLAW_TEST_REDIS``, default 127.0.0.1:6379). Every run uses a fresh schema and key prefix
and removes them at the end.

- ``health`` req/s at 50 clients x 16 in flight: one cluster instance listening with
  ``--reuse-port``, then two instances on the same port (the kernel spreads connections).
- fan-out latency, one process vs two on the same port: an operator patches a session; the time
  until each of ``--fanout-listeners`` ``sessions.changed`` subscribers (spread over both
  processes by the kernel, so half of them are reached through Redis) has it (median and last).
- cross-instance event latency: an operator on A patches a session; the time until a
  ``sessions.changed`` subscriber on A (same instance) and one on B (relayed through Redis) get it.
- ``node.invoke`` round trip from an operator on A to a node on A, and to a node on B.
"""
from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any

import orjson
from twisted.internet import defer, reactor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.loadclient import ADMIN, READ, Credentials, connect, connect_many  # noqa: E402
from bench.scenarios import _round_trips, sleep  # noqa: E402
from openclaw.security.device_identity import DeviceKeyPair  # noqa: E402

POSTGRES = os.environ.get("OPENCLAW_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")
REDIS = os.environ.get("OPENCLAW_TEST_REDIS", "redis://127.0.0.1:6379/0")
TOKEN = "bench-token"
NODE_CLIENT = {"id": "node-host", "version": "bench", "platform": "linux", "mode": "node"}


class NodeCredentials(Credentials):
    """A node with a device identity that answers ``system.notify``."""

    def __init__(self, token: str):
        super().__init__(token, [], DeviceKeyPair.generate())

    def connect_params(self, nonce: str | None) -> dict[str, Any]:
        auth = {"token": self.token}
        return {
            "minProtocol": 3, "maxProtocol": 4, "client": NODE_CLIENT, "role": "node", "scopes": [],
            "caps": [], "commands": ["system.notify"], "auth": auth,
            "device": self.device.device_block(
                nonce=nonce or "", signed_at_ms=int(time.time() * 1000), client=NODE_CLIENT, role="node", scopes=[], auth=auth
            ),
        }


def start(name: str, port: int, schema: str, state_root: str) -> subprocess.Popen:
    state_dir = os.path.join(state_root, name)
    os.makedirs(state_dir, exist_ok=True)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    args = [
        twistd, "-n", "--pidfile=", "openclaw", "--port", str(port), "--bind", "loopback", "--token", TOKEN,
        "--state-dir", state_dir, "--cluster-postgres", POSTGRES, "--cluster-redis", REDIS,
        "--cluster-schema", schema, "--cluster-instance-id", name, "--reuse-port",
    ]
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@defer.inlineCallbacks
def wait_ready(port: int, limit_s: float = 30.0) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            connection = yield connect(f"ws://127.0.0.1:{port}", Credentials(TOKEN, ADMIN), timeout=2).addTimeout(5, reactor)
        except Exception:
            yield sleep(0.2)
            continue
        connection.close()
        return
    raise RuntimeError(f"no gateway on {port}")


def progress(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@defer.inlineCallbacks
def health_rps(port: int, seconds: float) -> Any:
    target = SimpleNamespace(url=f"ws://127.0.0.1:{port}", token=TOKEN)
    measured = yield _round_trips(target, "health", 50, 16, seconds)
    return measured["rps"]


@defer.inlineCallbacks
def fanout_ms(port: int, listeners_count: int, rounds: int) -> Any:
    """``sessions.patch`` → ``sessions.changed`` at every subscriber: (median arrival, last
    arrival), each the median over ``rounds`` in ms."""
    url = f"ws://127.0.0.1:{port}"
    sender = yield connect(url, Credentials(TOKEN, ADMIN, DeviceKeyPair.generate()))
    reader = Credentials(TOKEN, READ, DeviceKeyPair.generate())
    first = yield connect(url, reader)  # pairs the listeners' device once, before the crowd
    listeners = [first, *(yield connect_many(url, reader, listeners_count - 1))]
    yield defer.gatherResults([listener.request("sessions.subscribe", {}) for listener in listeners])
    yield sleep(0.5)  # the presence churn of the new connections settles
    medians, lasts = [], []
    for n in range(rounds):
        key = f"agent:main:fan-{n}-{secrets.token_hex(3)}"
        arrivals: list[float] = []
        everyone: defer.Deferred = defer.Deferred()

        def arrived(
            frame: dict[str, Any], at: float, connection: Any,
            key: str = key, arrivals: list[float] = arrivals, everyone: defer.Deferred = everyone,
        ) -> None:
            if frame.get("event") == "sessions.changed" and frame["payload"].get("sessionKey") == key and not connection.counted:
                connection.counted = True
                arrivals.append(at)
                if len(arrivals) == len(listeners) and not everyone.called:
                    everyone.callback(None)

        for connection in listeners:
            connection.counted = False
            connection.on_event = lambda frame, at, c=connection: arrived(frame, at, c)
        sent = time.perf_counter()
        sender.request("sessions.patch", {"key": key, "label": key})
        yield everyone.addTimeout(10, reactor)
        delays = sorted(at - sent for at in arrivals)
        medians.append(delays[len(delays) // 2] * 1000)
        lasts.append(delays[-1] * 1000)
        yield sleep(0.05)
    for connection in [sender, *listeners]:
        connection.close()
    yield sleep(0.5)
    return statistics.median(medians), statistics.median(lasts)


@defer.inlineCallbacks
def node_on(port: int) -> Any:
    node = yield connect(f"ws://127.0.0.1:{port}", NodeCredentials(TOKEN))

    def on_event(frame: dict[str, Any], at: float) -> None:
        if frame.get("event") == "node.invoke.request":
            payload = frame["payload"]
            node.request("node.invoke.result", {"id": payload["id"], "nodeId": payload["nodeId"], "ok": True, "payloadJSON": "1"})

    node.on_event = on_event
    return node


@defer.inlineCallbacks
def approve_all(operator: Any) -> Any:
    """Approve the nodes' command surfaces (both requests reach A: B's over the bus)."""
    for _ in range(100):
        listed = yield operator.request("node.pair.list", {})
        pending = listed["payload"]["pending"]
        if len(pending) >= 2:
            break
        yield sleep(0.1)
    for request in pending:
        answer = yield operator.request("node.pair.approve", {"requestId": request["requestId"]})
        if not answer.get("ok"):
            raise RuntimeError(f"node.pair.approve failed: {answer}")
    yield sleep(0.5)


@defer.inlineCallbacks
def invoke_rtts(operator: Any, node_id: str, count: int) -> Any:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = yield operator.request("node.invoke", {"nodeId": node_id, "command": "system.notify", "idempotencyKey": secrets.token_hex(8)})
        if not answer.get("ok"):
            raise RuntimeError(f"node.invoke failed: {answer}")
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


@defer.inlineCallbacks
def event_latencies(writer: Any, same: Any, other: Any, count: int) -> Any:
    """``sessions.patch`` through ``writer`` → its ``sessions.changed`` at a subscriber on the
    same instance and at one on another instance (relayed through Redis)."""
    for listener in (same, other):
        yield listener.request("sessions.subscribe", {})
    same_ms, other_ms = [], []
    for n in range(count):
        label = f"bench-{n}-{secrets.token_hex(3)}"
        arrivals: dict[str, float] = {}
        both: defer.Deferred = defer.Deferred()

        def watcher(name: str, label: str, arrivals: dict[str, float], both: defer.Deferred) -> Any:
            def on_event(frame: dict[str, Any], at: float) -> None:
                if frame.get("event") == "sessions.changed" and frame["payload"].get("sessionKey") == f"agent:main:{label}":
                    arrivals.setdefault(name, at)
                    if len(arrivals) == 2 and not both.called:
                        both.callback(None)

            return on_event

        same.on_event, other.on_event = watcher("same", label, arrivals, both), watcher("other", label, arrivals, both)
        sent = time.perf_counter()
        writer.request("sessions.patch", {"key": f"agent:main:{label}", "label": label})
        yield both.addTimeout(10, reactor)
        same_ms.append((arrivals["same"] - sent) * 1000)
        other_ms.append((arrivals["other"] - sent) * 1000)
    return statistics.median(same_ms), statistics.median(other_ms)


@defer.inlineCallbacks
def run(options: argparse.Namespace) -> Any:
    schema = f"bench_{secrets.token_hex(4)}"
    state_root = tempfile.mkdtemp(prefix="openclaw-cluster-bench-")
    port = options.base_port
    rows: list[dict[str, float]] = []
    try:
        for round_number in range(options.rounds):
            row: dict[str, float] = {}
            one = [start("solo", port, schema, state_root)]
            yield wait_ready(port)
            progress("one process ready")
            row["health_rps_1proc"] = yield health_rps(port, options.seconds)
            progress(f"one process: {row['health_rps_1proc']:.0f} health/s")
            row["fanout_p50_ms_1proc"], row["fanout_last_ms_1proc"] = yield fanout_ms(port, options.fanout_listeners, options.fanout_rounds)
            progress(f"one process: fan-out last {row['fanout_last_ms_1proc']:.1f} ms")
            stop(one)
            two = [start("a", port, schema, state_root), start("b", port, schema, state_root)]
            yield wait_ready(port)
            yield sleep(1.0)
            row["health_rps_2proc"] = yield health_rps(port, options.seconds)
            progress(f"two processes: {row['health_rps_2proc']:.0f} health/s")
            row["fanout_p50_ms_2proc"], row["fanout_last_ms_2proc"] = yield fanout_ms(port, options.fanout_listeners, options.fanout_rounds)
            progress(f"two processes: fan-out last {row['fanout_last_ms_2proc']:.1f} ms")
            stop(two)
            row["ratio_2proc_over_1proc"] = row["health_rps_2proc"] / row["health_rps_1proc"]
            row["fanout_p50_2proc_over_1proc"] = row["fanout_p50_ms_2proc"] / row["fanout_p50_ms_1proc"]
            row["fanout_last_2proc_over_1proc"] = row["fanout_last_ms_2proc"] / row["fanout_last_ms_1proc"]
            a_port, b_port = port + 1, port + 2
            pair = [start("A", a_port, schema, state_root), start("B", b_port, schema, state_root)]
            yield wait_ready(a_port)
            yield wait_ready(b_port)
            progress("A and B ready")
            operator_a = yield connect(f"ws://127.0.0.1:{a_port}", Credentials(TOKEN, ADMIN, DeviceKeyPair.generate()))
            operator_b = yield connect(f"ws://127.0.0.1:{b_port}", Credentials(TOKEN, ADMIN, DeviceKeyPair.generate()))
            node_a = yield node_on(a_port)
            node_b = yield node_on(b_port)
            progress("operators and nodes connected")
            yield approve_all(operator_a)
            progress("node surfaces approved")
            a_id, b_id = node_a.factory.credentials.device.device_id, node_b.factory.credentials.device.device_id
            row["invoke_same_ms"] = yield invoke_rtts(operator_a, a_id, options.invokes)
            row["invoke_cross_ms"] = yield invoke_rtts(operator_a, b_id, options.invokes)
            row["invoke_cross_over_same"] = row["invoke_cross_ms"] / row["invoke_same_ms"]
            progress("invokes measured")
            same, other = yield event_latencies(operator_a, operator_a, operator_b, options.events)
            row["event_same_ms"], row["event_cross_ms"] = same, other
            row["event_cross_over_same"] = other / same
            for connection in (operator_a, operator_b, node_a, node_b):
                connection.close()
            stop(pair)
            rows.append(row)
            print(orjson.dumps({"round": round_number, **row}).decode(), flush=True)
    finally:
        cleanup(schema)
    report(rows)


def report(rows: list[dict[str, float]]) -> None:
    print("\n| figure | median | min–max |\n|---|---|---|")
    for key in rows[0]:
        values = sorted(row[key] for row in rows)
        print(f"| {key} | {statistics.median(values):.2f} | {values[0]:.2f}–{values[-1]:.2f} |")


def cleanup(schema: str) -> None:
    import psycopg

    from openclaw.cluster.schema import drop_schema

    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        drop_schema(connection, schema)
    subprocess.run(
        ["sh", "-c", f"redis-cli --scan --pattern '{schema}:*' | xargs -r redis-cli del"], stdout=subprocess.DEVNULL, check=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--invokes", type=int, default=200)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--fanout-listeners", type=int, default=200)
    parser.add_argument("--fanout-rounds", type=int, default=30)
    parser.add_argument("--base-port", type=int, default=19650)
    options = parser.parse_args()
    failures: list[Any] = []

    def go() -> None:
        d = run(options)
        d.addErrback(lambda failure: (failures.append(failure), failure.printTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
