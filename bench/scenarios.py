"""The benchmark scenarios of issue 8, each a function of (target, options) returning plain numbers.

Every scenario talks to the gateway only through :mod:`loadclient`, so the same code measures
ours, the reference and the raw Autobahn floor. Latencies are wall-clock from the load client's
point of view (``time.perf_counter``), which is what a user of the gateway sees.
"""
from __future__ import annotations

import gc
import statistics
import time
import uuid
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.web.client import Agent, readBody

from loadclient import ADMIN, READ, Credentials, close_all, connect, connect_many, percentile, run_pool
from openclaw.security.device_identity import DeviceKeyPair


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def rate(count: int, elapsed: float) -> float:
    return round(count / elapsed, 1) if elapsed > 0 else 0.0


# -- start-up --------------------------------------------------------------------------------


@defer.inlineCallbacks
def startup(target, options) -> Any:
    """Process start to the first ``connect.challenge`` frame, over separate cold starts."""
    if not target.can_start:
        return {"skipped": "no start command (pass a target the suite starts itself)"}
    seconds = []
    for _ in range(options.startup_runs):
        seconds.append((yield target.start()))
        yield target.stop()
    return {"startup_s": round(statistics.median(seconds), 3), "startup_runs_s": [round(s, 3) for s in seconds]}


# -- memory ----------------------------------------------------------------------------------


@defer.inlineCallbacks
def idle(target, options) -> Any:
    """Resident memory of the freshly started gateway, before any scenario has loaded it."""
    if target.pid is None:
        return {"skipped": "no pid to read memory from (pass --pid)"}
    yield sleep(options.settle)
    result: dict[str, Any] = {"idle_rss_mb": target.rss_mb()}
    tree = target.tree_rss_mb()
    if tree != result["idle_rss_mb"]:
        result["idle_tree_rss_mb"] = tree
    return result


@defer.inlineCallbacks
def memory(target, options) -> Any:
    """Resident memory holding 1,000 and then 5,000 idle authenticated connections.

    Runs last: the per-connection figure is the growth from just before the first connection,
    and the load client's 5,000 sockets would otherwise weigh on every later scenario.
    """
    if target.pid is None:
        return {"skipped": "no pid to read memory from (pass --pid)"}
    yield sleep(options.settle)
    before = target.rss_mb()
    result: dict[str, Any] = {"rss_before_connections_mb": before}
    held: list = []
    credentials = Credentials(target.token, READ)
    for count in options.idle_connections:
        started = time.perf_counter()
        held += yield connect_many(target.url, credentials, count - len(held), options.connect_concurrency)
        result[f"open_{count}_s"] = round(time.perf_counter() - started, 1)
        yield sleep(options.settle)
        result[f"rss_{count}_mb"] = target.rss_mb()
    largest = options.idle_connections[-1]
    result["kb_per_idle_connection"] = round((result[f"rss_{largest}_mb"] - before) * 1024 / largest, 1)
    yield close_and_settle(held)
    return result


@defer.inlineCallbacks
def close_and_settle(connections: list, limit_s: float = 30.0) -> Any:
    """Close and wait until every socket is really gone, then collect: leave the client clean."""
    close_all(connections)
    deadline = time.monotonic() + limit_s
    while any(connection.transport is not None and connection.transport.connected for connection in connections):
        if time.monotonic() > deadline:
            break
        yield sleep(0.1)
    del connections[:]
    gc.collect()


# -- handshakes ------------------------------------------------------------------------------


@defer.inlineCallbacks
def _handshakes(url: str, credentials_for, count: int, concurrency: int) -> Any:
    latencies: list[float] = []

    @defer.inlineCallbacks
    def one_handshake():
        credentials = credentials_for()
        started = time.perf_counter()
        connection = yield connect(url, credentials)
        latencies.append(time.perf_counter() - started)
        connection.close()

    started = time.perf_counter()
    yield run_pool(count, concurrency, one_handshake)
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return rate(len(ordered), elapsed), ms(percentile(ordered, 0.5)), ms(percentile(ordered, 0.99))


@defer.inlineCallbacks
def handshakes(target, options) -> Any:
    """Full connects: TCP, upgrade, challenge, v3-signed ``connect``, ``hello-ok``.

    "paired" reuses one device the gateway has already paired (its signature is still verified on
    every connect); "new device" generates a fresh key each time, so the gateway pairs it silently.
    """
    device = DeviceKeyPair.generate()
    paired = Credentials(target.token, READ, device)
    first = yield connect(target.url, paired)  # silent local pairing happens here, untimed
    first.close()
    result: dict[str, Any] = {}
    cpu_before = target.cpu_seconds()
    per_second, p50, p99 = yield _handshakes(target.url, lambda: paired, options.handshakes, 1)
    result.update(paired_seq_per_s=per_second, paired_seq_p50_ms=p50, paired_seq_p99_ms=p99)
    result.update(_server_cpu("paired_seq_server_cpu_ms", target, cpu_before, options.handshakes, 1000))
    per_second, p50, p99 = yield _handshakes(target.url, lambda: paired, options.handshakes, 10)
    result.update(paired_conc10_per_s=per_second, paired_conc10_p50_ms=p50, paired_conc10_p99_ms=p99)
    fresh_keys = [DeviceKeyPair.generate() for _ in range(options.new_devices)]  # key generation untimed
    per_second, p50, p99 = yield _handshakes(
        target.url, lambda: Credentials(target.token, READ, fresh_keys.pop()), options.new_devices, 1
    )
    result.update(new_device_seq_per_s=per_second, new_device_seq_p50_ms=p50)
    return result


def _server_cpu(key: str, target, before: float | None, count: int, unit: float) -> dict[str, float]:
    """Server CPU per operation: unlike wall time, it hardly changes when the machine is busy."""
    after = target.cpu_seconds()
    if before is None or after is None or not count:
        return {}
    return {key: round((after - before) / count * unit, 3)}


# -- RPC round trips -------------------------------------------------------------------------


@defer.inlineCallbacks
def _round_trips(target, method: str, clients: int, in_flight: int, seconds: float) -> Any:
    connections = yield connect_many(target.url, Credentials(target.token, READ), clients)
    latencies: list[float] = []
    counts = {"errors": 0, "outstanding": 0, "answered": 0}
    state = {"running": True, "recording": False}

    def fire(connection) -> None:
        sent = time.perf_counter()
        counts["outstanding"] += 1

        def answered(frame: dict[str, Any]) -> None:
            counts["outstanding"] -= 1
            counts["answered"] += 1
            if state["recording"]:
                if frame.get("ok"):
                    latencies.append(time.perf_counter() - sent)
                else:
                    counts["errors"] += 1
            if state["running"]:
                fire(connection)

        def lost(failure) -> None:
            counts["outstanding"] -= 1
            counts["errors"] += 1

        connection.request(method).addCallbacks(answered, lost)

    for connection in connections:
        for _ in range(in_flight):
            fire(connection)
    yield sleep(min(1.0, seconds / 5))  # warm-up, not recorded
    state["recording"] = True
    started = time.perf_counter()
    yield sleep(seconds)
    state["recording"] = False
    elapsed = time.perf_counter() - started
    state["running"] = False
    for _ in range(200):
        if counts["outstanding"] <= 0:
            break
        yield sleep(0.05)
    yield close_and_settle(connections)
    ordered = sorted(latencies)
    return {
        "rps": rate(len(ordered), elapsed),
        "p50_ms": ms(percentile(ordered, 0.5)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "errors": counts["errors"],
        "answered": counts["answered"],  # warm-up included: what the server's CPU time is divided by
    }


@defer.inlineCallbacks
def rpc(target, options) -> Any:
    """``health`` and ``status`` at 1/10/50 clients x 1/16 requests in flight each."""
    result: dict[str, Any] = {}
    for method in options.methods:
        for clients in options.clients:
            for in_flight in options.in_flight:
                cpu_before = target.cpu_seconds()
                measured = yield _round_trips(target, method, clients, in_flight, options.seconds)
                answered = measured.get("answered", 0)
                measured.update(_server_cpu("server_cpu_us", target, cpu_before, answered, 1_000_000))
                measured.pop("answered", None)
                for key, value in measured.items():
                    result[f"{method}_{clients}x{in_flight}_{key}"] = value
                yield sleep(0.3)
    return result


# -- event fan-out ---------------------------------------------------------------------------


@defer.inlineCallbacks
def fanout(target, options) -> Any:
    """One ``system-event`` → the ``presence`` event at every listener; last and median arrival."""
    result: dict[str, Any] = {}
    sender = yield connect(target.url, Credentials(target.token, ADMIN))
    listeners: list = []
    for count in options.listeners:
        listeners += yield connect_many(target.url, Credentials(target.token, READ), count - len(listeners))
        yield sleep(0.5)  # let the presence churn of the new connections settle
        lasts, medians, missing = [], [], 0
        for _ in range(options.fanout_rounds):
            arrivals: list[float] = []
            everyone = defer.Deferred()

            def arrived(frame: dict[str, Any], at: float, connection, arrivals=arrivals, everyone=everyone, listeners=listeners) -> None:
                if frame.get("event") == "presence" and not connection.counted:
                    connection.counted = True
                    arrivals.append(at)
                    if len(arrivals) == len(listeners) and not everyone.called:
                        everyone.callback(None)

            for connection in listeners:
                connection.counted = False
                connection.on_event = lambda frame, at, c=connection: arrived(frame, at, c)
            sent = time.perf_counter()
            sender.request("system-event", {"text": "bench fan-out", "instanceId": "bench-fan-out"})
            timeout = reactor.callLater(10, lambda everyone=everyone: everyone.called or everyone.callback(None))
            yield everyone
            if timeout.active():
                timeout.cancel()
            missing += len(listeners) - len(arrivals)
            if arrivals:
                delays = sorted(at - sent for at in arrivals)
                lasts.append(delays[-1])
                medians.append(delays[len(delays) // 2])
            yield sleep(0.05)
        for connection in listeners:
            connection.on_event = None
        result[f"fanout_{count}_last_ms"] = ms(statistics.median(lasts)) if lasts else None
        result[f"fanout_{count}_p50_ms"] = ms(statistics.median(medians)) if medians else None
        if missing:
            result[f"fanout_{count}_missing"] = missing
    yield close_and_settle(listeners + [sender])
    return result


# -- chat.send streaming overhead ------------------------------------------------------------


@defer.inlineCallbacks
def _direct_stream(upstream_url: str) -> Any:
    """The upstream alone, read by a plain HTTP client: the baseline the gateway adds to."""
    started = time.perf_counter()
    response = yield Agent(reactor).request(b"POST", f"{upstream_url}/chat/completions".encode())
    yield readBody(response)
    return time.perf_counter() - started


@defer.inlineCallbacks
def chat(target, options) -> Any:
    """``chat.send`` streaming N deltas from a local upstream, against reading that upstream directly.

    Overhead per delta = (time to the final ``chat`` event - time to read the stream directly) / N.
    """
    if options.upstream_url is None or not target.has_model:
        return {"skipped": "target has no model provider pointing at the bench upstream"}
    connection = yield connect(target.url, Credentials(target.token, ADMIN))
    directs, totals, firsts = [], [], []
    for _ in range(options.chat_rounds):
        directs.append((yield _direct_stream(options.upstream_url)))
        done = defer.Deferred()
        first: list[float] = []

        def on_event(frame: dict[str, Any], at: float, first: list[float] = first, done: defer.Deferred = done) -> None:
            payload = frame.get("payload") or {}
            if frame.get("event") == "agent" and payload.get("stream") == "assistant" and not first:
                first.append(at)
            if frame.get("event") == "chat" and payload.get("state") in ("final", "error", "aborted"):
                if not done.called:
                    done.callback(payload.get("state"))

        connection.on_event = on_event
        started = time.perf_counter()
        answer = yield connection.request(
            "chat.send",
            {"sessionKey": f"bench-{uuid.uuid4().hex[:8]}", "message": "stream please", "idempotencyKey": uuid.uuid4().hex},
        )
        if not answer.get("ok"):
            connection.close()
            return {"skipped": f"chat.send failed: {answer.get('error')}"}
        timeout = reactor.callLater(60, lambda done=done: done.called or done.callback("timeout"))
        state = yield done
        if timeout.active():
            timeout.cancel()
        if state != "final":
            connection.close()
            return {"skipped": f"run ended {state}"}
        totals.append(time.perf_counter() - started)
        if first:
            firsts.append(first[0] - started)
    connection.close()
    direct, total = statistics.median(directs), statistics.median(totals)
    return {
        "chat_deltas": options.chat_deltas,
        "chat_direct_ms": ms(direct),
        "chat_total_ms": ms(total),
        "chat_first_delta_ms": ms(statistics.median(firsts)) if firsts else None,
        "chat_overhead_per_delta_us": round((total - direct) / options.chat_deltas * 1e6, 1),
    }


SCENARIOS = {
    "startup": startup,
    "idle": idle,
    "memory": memory,
    "handshakes": handshakes,
    "rpc": rpc,
    "fanout": fanout,
    "chat": chat,
}
