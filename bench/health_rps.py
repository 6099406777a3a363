"""Round trips per second for one RPC against any gateway URL (ours or the reference).

    python bench/health_rps.py --url ws://127.0.0.1:18789 --token SECRET --clients 10 --seconds 5

Each client connects as the local CLI does (device-less, token auth), then keeps exactly one
request in flight for the duration; the script prints requests/s and p50/p99 latency as a table
line and as JSON. It is a first, single-scenario benchmark; the full suite belongs in bench/.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, reactor, task


class BenchProtocol(WebSocketClientProtocol):
    def onMessage(self, payload, isBinary):
        frame = json.loads(payload)
        bench = self.factory.bench
        if frame.get("event") == "connect.challenge":
            self._send("connect", bench.connect_params)
            return
        if frame.get("type") != "res":
            return
        if frame["id"].startswith("connect"):
            if not frame["ok"]:
                bench.failed(frame["error"])
                return
            self.factory.ready.callback(self)
            return
        bench.latencies.append(time.perf_counter() - self._sent_at)
        if bench.running:
            self.call()

    def _send(self, method, params):
        rid = f"{method}-{uuid.uuid4().hex}"
        self._sent_at = time.perf_counter()
        self.sendMessage(json.dumps({"type": "req", "id": rid, "method": method, "params": params}).encode())

    def call(self):
        self._send(self.factory.bench.method, {})


class Bench:
    def __init__(self, args):
        self.method = args.method
        self.running = False
        self.latencies: list[float] = []
        self.connect_params = {
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"},
            "role": "operator",
            "scopes": ["operator.read"],
            "auth": {"token": args.token},
        }

    def failed(self, error):
        print("connect failed:", error)
        reactor.stop()


@defer.inlineCallbacks
def main(reactor, args):
    bench = Bench(args)
    protocols = []
    for _ in range(args.clients):
        factory = WebSocketClientFactory(args.url)
        factory.protocol = BenchProtocol
        factory.bench = bench
        factory.ready = defer.Deferred()
        connectWS(factory)
        protocols.append((yield factory.ready))
    bench.running = True
    started = time.perf_counter()
    for protocol in protocols:
        protocol.call()
    yield task.deferLater(reactor, args.seconds, lambda: None)
    bench.running = False
    elapsed = time.perf_counter() - started
    ordered = sorted(bench.latencies)
    result = {
        "method": args.method,
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "requests": len(ordered),
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2) if ordered else None,
    }
    print(f"{args.method:>10} {args.clients:>3} clients  {result['rps']:>9} req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms")
    print(json.dumps(result))
    for protocol in protocols:
        protocol.sendClose(1000)
    yield task.deferLater(reactor, 0.2, lambda: None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:18789")
    parser.add_argument("--token", required=True)
    parser.add_argument("--method", default="health")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    task.react(main, [parser.parse_args()])
