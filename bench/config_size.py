"""CPU seconds of the config pipeline by config size and syntax (issue 13, item 7).

    .venv/bin/python bench/config_size.py [--sizes 65536,262144,1048576,5242880] [--json5-max 1048576]

Each config is valid: the usual gateway keys plus ``channels`` entries (accepted and ignored),
each with a secret-looking ``botToken`` so that redaction has work to do. ``json`` is written as
plain JSON (what ``config.patch`` writes); ``json5`` is the same document with unquoted keys and
a comment per entry. Columns:

* ``json5.loads``: the pure-Python parser alone, what every step used to cost;
* ``parse``: ``snapshot.parse`` (parser, ``${VAR}``, schema);
* ``get (cold)`` / ``get (again)``: ``config.get``'s work for text not seen / already parsed;
* ``set``: ``config.set``'s work after the size check (parse, secrets put back, the check
  before writing); the cap refuses anything over 256 KiB before this runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any
from collections.abc import Callable

import json5

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from openclaw.config import snapshot as config_snapshot  # noqa: E402
from openclaw.methods.config import _redacted_view, _replacement  # noqa: E402

BASE = {"gateway": {"port": 18789, "auth": {"mode": "token", "token": "bench-token-123"}}, "channels": {}}


def document(size: int) -> dict[str, Any]:
    config = json.loads(json.dumps(BASE))
    entry = len(json.dumps({"c000000": {"botToken": "bt-000000", "name": "x" * 100}}))
    for index in range(max(1, size // entry)):
        config["channels"][f"c{index:06d}"] = {"botToken": f"bt-{index:06d}", "name": "x" * 100}
    return config


def as_json5(config: dict[str, Any]) -> str:
    lines = ["{", f"  gateway: {json.dumps(config['gateway'])},", "  channels: {"]
    for key, value in config["channels"].items():
        lines.append(f"    // channel {key}")
        lines.append(f"    {key}: {{ botToken: '{value['botToken']}', name: \"{value['name']}\" }},")
    lines += ["  },", "}", ""]
    return "\n".join(lines)


def cpu(work: Callable[[], Any]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def measure(raw: str, path: str, with_json5: bool) -> dict[str, float]:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(raw)
    row = {"json5.loads": cpu(lambda: json5.loads(raw)) if with_json5 else float("nan")}
    row["parse"] = cpu(lambda: config_snapshot.parse(raw, path, {}))
    cold: list[Any] = []
    row["get (cold)"] = cpu(lambda: cold.append(_redacted_view(config_snapshot.read(path, {}))))
    known = (config_snapshot.read(path, {}),)
    row["get (again)"] = cpu(lambda: _redacted_view(config_snapshot.read(path, {}, known)))
    redacted = cold[0]["raw"]

    def set_work() -> None:
        text, parsed = _replacement(redacted, "config.set", known[0])
        config_snapshot.parse(text, path, {}, parsed)

    row["set"] = cpu(set_work)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="65536,262144,1048576,5242880")
    parser.add_argument("--json5-max", type=int, default=1048576, help="skip JSON5 text above this size (it is slow)")
    args = parser.parse_args()
    columns = ["json5.loads", "parse", "get (cold)", "get (again)", "set"]
    print("| size | syntax | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "openclaw.json")
        for size in (int(value) for value in args.sizes.split(",")):
            config = document(size)
            for syntax, raw in (("json", json.dumps(config, indent=2)), ("json5", as_json5(config))):
                if syntax == "json5" and len(raw) > args.json5_max:
                    continue
                row = measure(raw, path, with_json5=len(raw) <= args.json5_max)
                cells = " | ".join("-" if value != value else f"{value:.3f}" for value in (row[name] for name in columns))
                print(f"| {len(raw.encode()) / 1024:.0f} KiB | {syntax} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
