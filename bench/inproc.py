"""Server CPU per operation, in process, without sockets: ours and the floor, op by op.

    .venv/bin/python bench/inproc.py                                  # both targets, every scenario
    .venv/bin/python bench/inproc.py --targets ours --profile-dir /tmp/prof --count 2000

The suite (``suite.py``) measures over real sockets, where a busy machine moves every figure.
This drives the same server objects through in-memory transports instead: ours is the real
service tree (``openclaw.tap.makeService``, its Site, Autobahn, its logging to a file as under
``twistd -n``), the floor is ``echo_floor.py``'s protocol; the bench plays the client (upgrade,
masked frames, a v3-signed connect) and only the server's calls are timed, with the thread's CPU
clock (``time.thread_time_ns``). What is left out on both sides is the kernel: socket reads,
writes and epoll. Each figure is the best of ``--repeats`` runs (the least disturbed one), in
µs per operation; ``floor ÷ ours`` is then the share of the floor's speed ours reaches on CPU.

``--profile-dir`` also runs each scenario of ours under pyinstrument and writes a text tree per
scenario (``inproc-<scenario>.txt``): where the server's time goes, client work included but
in frames of its own (``_Client.*``).
"""
from __future__ import annotations

import argparse
import itertools
import os
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any
from collections.abc import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from autobahn.twisted.websocket import WebSocketServerFactory  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.error import ConnectionDone  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

import echo_floor  # noqa: E402
from loadclient import ADMIN, READ, Credentials  # noqa: E402
from openclaw.security.device_identity import DeviceKeyPair  # noqa: E402

TOKEN = "bench-token"
MASK = b"\x01\x02\x03\x04"
_ports = itertools.count(20000)
_ids = itertools.count()


class _Transport(StringTransport):
    """A StringTransport with what Autobahn asks of a TCP transport."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def abortConnection(self) -> None:
        self.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streaming = producer, streaming  # a TCP transport replaces, never raises

    def unregisterProducer(self) -> None:
        self.producer = None


def mask_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    repeated = (MASK * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big") if size else b""
    return header + MASK + masked


def server_frames(data: bytes) -> list[bytes]:
    """Payloads of the unmasked server frames in ``data`` (the HTTP 101 head already cut off)."""
    frames, at = [], 0
    while at + 2 <= len(data):
        size = data[at + 1] & 0x7F
        at += 2
        if size == 126:
            (size,) = struct.unpack_from("!H", data, at)
            at += 2
        elif size == 127:
            (size,) = struct.unpack_from("!Q", data, at)
            at += 8
        frames.append(data[at : at + size])
        at += size
    return frames


def request_frame(method: str, params: Any) -> bytes:
    return mask_frame(orjson.dumps({"type": "req", "id": f"r{next(_ids)}", "method": method, "params": params}))


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18789\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
CLOSE = mask_frame(struct.pack("!H", 1000), opcode=0x8)


class CpuClock:
    """Adds up the thread's CPU time of the server's calls only."""

    def __init__(self) -> None:
        self.ns = 0

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        started = time.thread_time_ns()
        try:
            return function(*args)
        finally:
            self.ns += time.thread_time_ns() - started


class _Client:
    """One in-memory client connection: the bench's side of the wire."""

    def __init__(self, factory: Any, clock: CpuClock):
        self.transport = _Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", next(_ports)))
        self.clock = clock
        channel = clock.call(factory.buildProtocol, self.transport.getPeer())
        self.transport.protocol = channel  # as a TCP transport has; Autobahn's resource replaces it
        clock.call(channel.makeConnection, self.transport)
        clock.call(channel.dataReceived, UPGRADE)
        self.protocol = self.transport.protocol
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"upgrade refused: {head[:80]!r}")
        self.transport.clear()
        self.challenge = orjson.loads(server_frames(rest)[0])

    def send(self, frame: bytes) -> list[dict[str, Any]]:
        self.clock.call(self.protocol.dataReceived, frame)
        return self.read()

    def read(self) -> list[dict[str, Any]]:
        data = self.transport.value()
        self.transport.clear()
        return [orjson.loads(payload) for payload in server_frames(data) if payload[:1] == b"{"]

    def connect(self, credentials: Credentials) -> dict[str, Any]:
        params = credentials.connect_params(self.challenge["payload"]["nonce"])
        answer = self.send(request_frame("connect", params))
        if not answer or not answer[0].get("ok"):
            raise RuntimeError(f"connect refused: {answer}")
        return answer[0]

    def close(self) -> None:
        self.clock.call(self.protocol.dataReceived, CLOSE)
        self.clock.call(self.protocol.connectionLost, Failure(ConnectionDone()))
        self.transport.clear()


# -- targets ---------------------------------------------------------------------------------


@defer.inlineCallbacks
def start_ours(reactor: Any, state_dir: str, port: int) -> Any:
    """The real tree from ``makeService``, logging to a file as twistd does to stdout."""
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from openclaw.http.site import GatewaySite
    from openclaw.tap import Options, makeService

    stdout = open(os.path.join(state_dir, "twistd-stdout.log"), "w")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(stdout)], redirectStandardIO=False)
    options = Options()
    options.parseOptions(["--port", str(port), "--token", TOKEN, "--state-dir", state_dir])
    root = makeService(options, reactor=reactor)
    yield root.startService()
    gateway = root.gateway
    while not (gateway.pairing.loaded and gateway.sessions_loaded):
        yield task.deferLater(reactor, 0.05, lambda: None)
    site = next(service.factory for service in _walk(root) if isinstance(getattr(service, "factory", None), GatewaySite))
    return root, site


def _walk(service: Any):
    yield service
    for child in getattr(service, "services", []):
        yield from _walk(child)


def floor_factory() -> Any:
    factory = WebSocketServerFactory("ws://127.0.0.1:18799")
    factory.protocol = echo_floor.FloorProtocol
    factory.sockets = set()
    return factory


# -- scenarios -------------------------------------------------------------------------------


def handshakes(factory: Any, count: int, credentials: Credentials) -> float:
    """Upgrade, challenge, connect, hello-ok, close: µs of server CPU per handshake."""
    clock = CpuClock()
    for _ in range(count):
        client = _Client(factory, clock)
        client.connect(credentials)
        client.close()
    return clock.ns / count / 1000


def rpc(factory: Any, count: int, method: str) -> float:
    """One connection, ``count`` requests one after another: µs of server CPU per request."""
    setup = CpuClock()
    client = _Client(factory, setup)
    client.connect(Credentials(TOKEN, READ))
    frames = [request_frame(method, {}) for _ in range(count)]
    clock = CpuClock()
    client.clock = clock
    for frame in frames:
        answer = client.send(frame)
        if not answer or not answer[0].get("ok"):
            raise RuntimeError(f"{method} failed: {answer}")
    client.clock = setup
    client.close()
    return clock.ns / count / 1000


def fanout(factory: Any, listeners: int, rounds: int) -> float:
    """An admin's ``system-event`` to ``listeners`` read-scoped sockets: µs of server CPU per event."""
    setup = CpuClock()
    sender = _Client(factory, setup)
    sender.connect(Credentials(TOKEN, ADMIN))
    readers = []
    for _ in range(listeners):
        reader = _Client(factory, setup)
        reader.connect(Credentials(TOKEN, READ))
        readers.append(reader)
    params = {"text": "bench fan-out", "instanceId": "bench-fan-out"}
    frames = [request_frame("system-event", params) for _ in range(rounds)]
    clock = CpuClock()
    sender.clock = clock
    for frame in frames:
        sender.send(frame)
        for reader in readers:
            if b'"presence"' not in reader.transport.value():
                raise RuntimeError("a listener got no presence event")
            reader.transport.clear()
    for client in [sender, *readers]:
        client.clock = setup
        client.close()
    return clock.ns / rounds / 1000


def idle_memory(factory: Any, count: int, top: int = 0) -> float:
    """Bytes the server allocates (tracemalloc) per idle authenticated connection, ``count`` held.

    The suite's ``memory`` scenario reads RSS over real sockets, where the kernel's and the
    allocator's slack blur the figure; this counts the Python objects a connection keeps: the
    protocol, its parser state, queues, timers and registry entries (the in-memory transport's
    own bytes are counted on both sides alike). ``top`` prints the largest allocation sites.
    """
    import gc
    import tracemalloc

    setup = CpuClock()
    warm = [_Client(factory, setup) for _ in range(20)]  # first-use caches are not per connection
    for client in warm:
        client.connect(Credentials(TOKEN, READ))
    gc.collect()
    tracemalloc.start(25 if top else 1)
    before = tracemalloc.take_snapshot()
    held = []
    for _ in range(count):
        client = _Client(factory, setup)
        client.connect(Credentials(TOKEN, READ))
        client.transport.clear()
        held.append(client)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # The bench's own side of the wire (its client objects and the in-memory transports) is not the server's.
    bench_side = [tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, "*/twisted/internet/testing.py")]
    before, after = before.filter_traces(bench_side), after.filter_traces(bench_side)
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    if top:
        for stat in after.compare_to(before, "lineno")[:top]:
            print(f"{stat.size_diff / count:8.1f} B/conn  {stat.traceback.format()[-1].strip()}")
    for client in [*warm, *held]:
        client.close()
    return growth / count


def best(repeats: int, run: Callable[[], float]) -> float:
    return round(min(run() for _ in range(repeats)), 1)


def measure(factory: Any, options: argparse.Namespace, device: DeviceKeyPair | None) -> dict[str, float]:
    results: dict[str, float] = {}
    chosen = options.scenarios
    if "handshakes" in chosen:
        paired = Credentials(TOKEN, READ, device)
        results["handshake_paired_v3_us"] = best(options.repeats, lambda: handshakes(factory, options.count // 4, paired))
        results["handshake_token_us"] = best(options.repeats, lambda: handshakes(factory, options.count // 4, Credentials(TOKEN, READ)))
    for method in ("health", "status"):
        if method in chosen:
            results[f"{method}_us"] = best(options.repeats, lambda method=method: rpc(factory, options.count, method))
    if "memory" in chosen:
        results["idle_connection_bytes"] = round(idle_memory(factory, options.idle, options.top))
    if "fanout" in chosen:
        for listeners in options.listeners:
            results[f"fanout_{listeners}_us"] = best(options.repeats, lambda listeners=listeners: fanout(factory, listeners, options.fanout_rounds))
    return results


def profile(factory: Any, options: argparse.Namespace, device: DeviceKeyPair, directory: Path) -> None:
    from pyinstrument import Profiler

    directory.mkdir(parents=True, exist_ok=True)
    runs = {
        "handshakes": lambda: handshakes(factory, options.count, Credentials(TOKEN, READ, device)),
        "health": lambda: rpc(factory, options.count * 4, "health"),
        "status": lambda: rpc(factory, options.count * 4, "status"),
        "fanout": lambda: fanout(factory, max(options.listeners), options.fanout_rounds * 4),
    }
    for name, run in runs.items():
        if name not in options.scenarios:
            continue
        profiler = Profiler(interval=0.0001)
        profiler.start()
        run()
        profiler.stop()
        (directory / f"inproc-{name}.txt").write_text(profiler.output_text(unicode=True, show_all=False))


@defer.inlineCallbacks
def main(reactor: Any, argv: list[str]) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="ours,floor")
    parser.add_argument("--scenarios", default="handshakes,health,status,fanout")
    parser.add_argument("--count", type=int, default=2000, help="requests per run (handshakes: a quarter)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--listeners", default="100,500,1000")
    parser.add_argument("--fanout-rounds", type=int, default=20)
    parser.add_argument("--idle", type=int, default=500, help="connections held by the memory scenario")
    parser.add_argument("--top", type=int, default=0, help="memory: print the N largest allocation sites")
    parser.add_argument("--port", type=int, default=19790, help="ours listens here too (unused by the bench)")
    parser.add_argument("--profile-dir", help="write pyinstrument text trees of ours here")
    options = parser.parse_args(argv)
    options.scenarios = options.scenarios.split(",")
    options.listeners = [int(part) for part in options.listeners.split(",")]
    device = DeviceKeyPair.generate()
    table: dict[str, dict[str, float]] = {}
    if "floor" in options.targets.split(","):
        table["floor"] = measure(floor_factory(), options, device)
    if "ours" in options.targets.split(","):
        root, site = yield start_ours(reactor, tempfile.mkdtemp(prefix="openclaw-inproc-"), options.port)
        first = _Client(site, CpuClock())  # pairs the device (store writes run on their thread)
        params = Credentials(TOKEN, READ, device).connect_params(first.challenge["payload"]["nonce"])
        first.clock.call(first.protocol.dataReceived, request_frame("connect", params))
        for _ in range(100):
            yield task.deferLater(reactor, 0.02, lambda: None)
            if first.read():
                break
        first.close()
        try:
            table["ours"] = measure(site, options, device)
            if options.profile_dir:
                profile(site, options, device, Path(options.profile_dir))
        except Exception:
            traceback.print_exc()  # twistd's log observer has stdout's place: say it here
            raise
        finally:
            yield root.stopService()
    keys = list(dict.fromkeys(key for figures in table.values() for key in figures))
    print("| server CPU per operation (µs) | " + " | ".join(table) + " | floor ÷ ours |")
    print("|---|" + "---|" * (len(table) + 1))
    for key in keys:
        cells = [str(table[name].get(key, "-")) for name in table]
        ours, floor = table.get("ours", {}).get(key), table.get("floor", {}).get(key)
        ratio = f"{floor / ours:.2f}" if ours and floor else "-"
        print(f"| {key} | " + " | ".join(cells) + f" | {ratio} |")
    print(orjson.dumps(table).decode())


if __name__ == "__main__":
    task.react(main, [sys.argv[1:]])
