"""Long fuzzing run of the properties in tests/test_fuzz.py (not a test).

    .venv/bin/python bench/fuzz.py --examples 20000

Runs every property of ``tests.test_fuzz`` (post-auth frames, every method's params, pre-auth
first frames) with ``--examples`` examples each (for the per-method property: spread over all
methods), then prints how many inputs were tried per property and whether any invariant failed.
Exit status 1 when one did; hypothesis prints the minimal failing input in the report.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import unittest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples per property (default 20000)")
    parser.add_argument("-k", "--only", default="", help="run only properties whose name contains this")
    args = parser.parse_args(argv)

    # The properties read their budget at import time.
    os.environ["OPENCLAW_FUZZ_EXAMPLES"] = str(args.examples)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    from twisted.trial import runner, reporter

    from tests import test_fuzz

    loader = runner.TestLoader()
    suite = loader.loadByName("tests.test_fuzz")
    if args.only:
        suite = unittest.TestSuite(t for t in _flatten(suite) if args.only in t.id())
    result = reporter.TreeReporter(sys.stdout, realtime=True)
    started = time.monotonic()
    suite.run(result)
    result.done()
    elapsed = time.monotonic() - started

    counters = test_fuzz.COUNTERS
    per_method = {k: v for k, v in counters.items() if ":" in k}
    print()
    print(f"{'property':60} {'inputs':>10}")
    for name, count in sorted((k, v) for k, v in counters.items() if ":" not in k):
        print(f"{name:60} {count:>10}")
    if per_method:
        print(f"  (test_every_method_random_params covered {len(per_method)} methods)")
    print(f"{'total':60} {sum(v for k, v in counters.items() if ':' not in k):>10}")
    failed = not result.wasSuccessful()
    print(f"elapsed {elapsed:.1f}s; invariant failures: {'YES' if failed else 'none'}")
    return 1 if failed else 0


def _flatten(suite):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _flatten(test)
        else:
            yield test


if __name__ == "__main__":
    sys.exit(main())
