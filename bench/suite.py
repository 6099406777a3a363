"""The gateway benchmark suite: every scenario of issue 8, against ours, the reference and the floor.

    .venv/bin/python bench/suite.py                      # 3 rounds: each round starts every target in turn
    .venv/bin/python bench/suite.py --quick              # smaller counts, one round, a smoke run
    .venv/bin/python bench/suite.py --rounds 5 --pin both   # unpinned rounds, then server/client on separate cores
    .venv/bin/python bench/suite.py --url ws://127.0.0.1:18789 --token SECRET [--pid PID]   # any running gateway

Targets are measured one after another with the same load client in this process. A round runs
every target back to back; ratios are taken inside a round and reported as the median over the
rounds with their spread (bench/rounds.py), because single passes moved by up to 30%.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402

import loadclient  # noqa: E402
import scenarios  # noqa: E402
import targets  # noqa: E402
import rounds  # noqa: E402
import upstream  # noqa: E402
from report import summarise_machine  # noqa: E402

ORDER = ["startup", "idle", "handshakes", "rpc", "chat", "fanout", "memory"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="ours,reference,floor",
                        help="which targets the suite starts itself; NAME@PATH is the gateway of another checkout "
                             "(e.g. before@../before at the commit before a change), compared like ours")
    parser.add_argument("--url", help="measure one already-running gateway instead")
    parser.add_argument("--token", default="bench-token")
    parser.add_argument("--pid", type=int, help="pid of the --url gateway, for memory figures")
    parser.add_argument("--name", default="external", help="label for the --url gateway")
    parser.add_argument("--scenarios", default=",".join(ORDER))
    parser.add_argument("--base-port", type=int, default=18941)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"),
                        help="the shared folder holding reference/start-gateway.sh")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not a measurement")
    parser.add_argument("--rounds", type=int, help="rounds, each running every target back to back [3, quick 1]")
    parser.add_argument("--pin", choices=["none", "split", "both"], default="none",
                        help="split: servers on CPU 0, this load client on CPU 1; both: unpinned rounds, then split")
    parser.add_argument("--profile", help="run ours under pyinstrument and write its HTML flame view to this file")
    parser.add_argument("--max-spread", type=float, default=rounds.DEFAULT_MAX_SPREAD,
                        help="a ratio whose rounds spread wider than this fraction of its median is inconclusive")
    parser.add_argument("--seconds", type=float, help="seconds per RPC measurement [5, quick 1]")
    parser.add_argument("--methods", help="RPC methods for the rpc scenario [health,status]")
    parser.add_argument("--clients", help="client counts for the rpc scenario [1,10,50; quick 1,10]")
    parser.add_argument("--in-flight", help="requests in flight per client for the rpc scenario [1,16]")
    options = parser.parse_args(argv)
    quick = options.quick
    options.seconds = options.seconds or (1.0 if quick else 5.0)
    options.rounds = options.rounds or (1 if quick else 3)
    options.startup_runs = 1 if quick else 3
    options.settle = 0.5 if quick else 2.0
    options.idle_connections = [200, 500] if quick else [1000, 5000]
    options.connect_concurrency = 16
    options.handshakes = 50 if quick else 300
    options.new_devices = 10 if quick else 60
    options.methods = options.methods.split(",") if options.methods else ["health", "status"]
    options.clients = _numbers(options.clients) or ([1, 10] if quick else [1, 10, 50])
    options.in_flight = _numbers(options.in_flight) or [1, 16]
    options.listeners = [10, 100] if quick else [10, 100, 500, 1000]
    options.fanout_rounds = 5 if quick else 20
    options.chat_deltas = 200
    options.chat_rounds = 3 if quick else 7
    options.upstream_url = None
    return options


def _numbers(text: str | None) -> list[int]:
    return [int(part) for part in text.split(",")] if text else []


@defer.inlineCallbacks
def wait_until_ready(target: targets.Target, deadline_s: float = 120.0) -> Any:
    """A challenge is not readiness: both gateways answer ``UNAVAILABLE`` (1013) while starting."""
    from twisted.internet import reactor

    stop_at = reactor.seconds() + deadline_s
    while True:
        try:
            connection = yield loadclient.connect(target.url, loadclient.Credentials(target.token))
        except Exception:
            if reactor.seconds() > stop_at:
                raise
            yield scenarios.sleep(0.25)
            continue
        connection.close()
        return


@defer.inlineCallbacks
def measure(target: targets.Target, chosen: list[str], options: argparse.Namespace) -> Any:
    # The machine's 1-minute load when this target began: a shared machine says here how shared it was.
    results: dict[str, Any] = {"load_1m_at_start": round(os.getloadavg()[0], 2)}
    if "startup" in chosen:
        print(f"[{target.name}] startup", flush=True)
        results.update((yield scenarios.startup(target, options)))
    if target.can_start:
        yield target.start()
    try:
        yield wait_until_ready(target)
        for name in chosen:
            if name == "startup":
                continue
            print(f"[{target.name}] {name}", flush=True)
            try:
                results.update((yield scenarios.SCENARIOS[name](target, options)))
            except Exception as exc:  # one broken scenario must not cost the whole run
                results[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
                print(f"[{target.name}] {name} failed: {exc}", flush=True)
    finally:
        if target.can_start:
            yield target.stop()
    return {key: value for key, value in results.items() if key != "skipped"}


def build_targets(options: argparse.Namespace) -> list[targets.Target]:
    if options.url:
        return [targets.Target(options.name, options.url, options.token, pid=options.pid,
                               has_model=options.upstream_url is not None)]
    measured = []
    for offset, name in enumerate(options.targets.split(",")):
        port = options.base_port + offset
        if "@" in name:
            label, root = name.split("@", 1)
            measured.append(targets.ours(port, options.token, options.upstream_url, name=label,
                                         root=Path(root).resolve()))
        elif name == "ours":
            measured.append(targets.ours(port, options.token, options.upstream_url,
                                         Path(options.profile) if options.profile else None))
        elif name == "floor":
            measured.append(targets.floor(port))
        elif name == "reference":
            found = targets.reference(port, options.token, options.upstream_url, Path(options.shared))
            if found is None:
                print("reference not installed (run ../shared/reference/setup.sh); skipping it", flush=True)
            else:
                measured.append(found)
    return measured


def pin(measured: list[targets.Target], split: bool) -> None:
    """Servers on CPU 0 and this process (load client, upstream) on CPU 1, or everything anywhere."""
    cpus = os.cpu_count() or 1
    if split and cpus < 2:
        print("--pin split needs two CPUs; running unpinned", flush=True)
        split = False
    os.sched_setaffinity(0, {1} if split else set(range(cpus)))
    for target in measured:
        target.cpus = "0" if split else None


@defer.inlineCallbacks
def run_rounds(measured: list[targets.Target], chosen: list[str], options: argparse.Namespace) -> Any:
    done: list[rounds.Round] = []
    for index in range(options.rounds):
        one: rounds.Round = {}
        for target in rounds.rotated(measured, index):
            print(f"round {index + 1}/{options.rounds}: {target.name}", flush=True)
            one[target.name] = yield measure(target, chosen, options)
            print(json.dumps({"round": index + 1, "target": target.name, "figures": one[target.name]}), flush=True)
        done.append({target.name: one[target.name] for target in measured})
    return done


@defer.inlineCallbacks
def main(reactor: Any, argv: list[str]) -> Any:
    options = parse_args(argv)
    chosen = [name for name in ORDER if name in options.scenarios.split(",")]
    if "chat" in chosen:
        options.upstream_url = upstream.listen(options.chat_deltas)
    measured = build_targets(options)
    if options.url:
        chosen = [name for name in chosen if name != "startup"]
    layouts = {"none": [False], "split": [True], "both": [False, True]}[options.pin]
    document: dict[str, Any] = {"machine": summarise_machine(), "quick": options.quick, "runs": []}
    for split in layouts:
        pin(measured, split)
        done = yield run_rounds(measured, chosen, options)
        label = "server on CPU 0, load client on CPU 1" if split else "unpinned (load client and server share the cores)"
        document["runs"].append({"pinned": split, "rounds": done})
        print(f"\n### {label}\n")
        print(rounds.render_rounds(done, options.max_spread))
    print()
    print(json.dumps(document))
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    task.react(main, [sys.argv[1:]])
