"""Control UI load time: navigation to the first rendered session list, ours vs the reference.

    .venv/bin/python bench/ui_load.py --target ours=http://127.0.0.1:18789#SECRET \\
        --target reference=http://127.0.0.1:18790#reference-token --runs 5

Each run starts a fresh headless Chromium (empty profile: a first visit, nothing cached), opens
``<url>/sessions#token=…`` and stops the clock when the sessions table shows its row count and
the main session's key (both gateways need a main session: send it one message first). Targets
alternate run by run so machine noise hits both alike. Prints per-target medians, spreads and
the ours ÷ reference ratio; ``--json FILE`` writes them too. Needs Chromium (tests/support/cdp.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import inlineCallbacks  # noqa: E402

from tests.support.cdp import Browser  # noqa: E402
from tests.support.reference import find_clients  # noqa: E402

RENDERED = """(() => {
  const parts = [document.body ? document.body.innerText : ''];
  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { parts.push(el.shadowRoot.textContent || ''); walk(el.shadowRoot); } } };
  walk(document);
  const text = parts.join('\\n');
  return /of \\d+ rows/.test(text) && text.includes('agent:main:main');
})()"""


@inlineCallbacks
def one_load(chromium: str, url: str, token: str, timeout_s: float) -> float:
    browser = Browser(reactor, chromium)
    yield browser.start()
    try:
        started = time.perf_counter()
        yield browser.navigate(f"{url.rstrip('/')}/sessions#token={token}")
        yield browser.wait_for(RENDERED, timeout_s=timeout_s, tick_s=0.02)
        return time.perf_counter() - started
    finally:
        yield browser.stop()


@inlineCallbacks
def main(options: argparse.Namespace) -> None:
    chromium = options.chromium or (str(find_clients().chromium) if find_clients().chromium else None)
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)")
        return
    targets = []
    for spec in options.target:
        name, _, rest = spec.partition("=")
        url, _, token = rest.partition("#")
        targets.append((name, url, token))
    times: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    for run in range(options.runs):
        for name, url, token in targets if run % 2 == 0 else list(reversed(targets)):
            seconds = yield one_load(chromium, url, token, options.timeout)
            times[name].append(seconds)
            print(f"run {run + 1} {name}: {seconds:.2f} s", flush=True)
    summary = {
        name: {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3), "max_s": round(max(values), 3), "runs": len(values)}
        for name, values in times.items()
    }
    print("\n| target | median | min | max | runs |\n|---|---|---|---|---|")
    for name, row in summary.items():
        print(f"| {name} | {row['median_s']:.2f} s | {row['min_s']:.2f} s | {row['max_s']:.2f} s | {row['runs']} |")
    if "ours" in summary and "reference" in summary:
        ratio = summary["ours"]["median_s"] / summary["reference"]["median_s"]
        summary["ours_over_reference"] = round(ratio, 3)
        print(f"\nours ÷ reference (median): {ratio:.2f}")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(summary, handle, indent=2)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", required=True, help="NAME=URL#TOKEN (name 'ours' and 'reference' get a ratio)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--chromium", default=None)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])

    def run() -> None:
        d = main(arguments)
        d.addErrback(lambda failure: print(failure.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
