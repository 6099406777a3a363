"""``twistd`` under pyinstrument's sampling profiler: ``profiled_twistd.py OUTPUT.html twistd-args...``.

The suite's ``--profile`` uses it to show where ours spends a scenario's time. The profile is
written at the end of the reactor's shutdown (SIGTERM stops it cleanly), as an HTML flame view; a ``.json``
name gives speedscope's format, ``.txt`` a text tree. Sampling rather than cProfile's tracing, because
the handshake path is made of many small calls whose per-call tracing cost would dominate the view.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.renderers import SpeedscopeRenderer
from twisted.scripts.twistd import run


def main(output: Path, argv: list[str]) -> None:
    from twisted.internet import reactor  # the default reactor, the one twistd would pick

    sys.argv = ["twistd", *argv]
    profiler = Profiler(interval=0.0005)
    # After a SIGTERM, twistd re-raises the signal once the reactor has stopped (so the exit status
    # tells how it ended), which skips any ``finally`` here: write at the end of the shutdown instead.
    reactor.addSystemEventTrigger("after", "shutdown", _write, profiler, output)
    profiler.start()
    run()


def _write(profiler: Profiler, output: Path) -> None:
    profiler.stop()
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".json":
        output.write_text(profiler.output(SpeedscopeRenderer()))
    elif output.suffix == ".txt":
        output.write_text(profiler.output_text(unicode=True, show_all=False))
    else:
        output.write_text(profiler.output_html())


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
