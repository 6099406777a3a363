"""Every ``openclaw`` module imports alone, first thing in a fresh interpreter.

An import cycle or a module that leans on another having been imported before it only shows when
that module is the first one loaded; the suite, which imports everything, never notices. One
``python -c`` child process lists the modules and then, for each, forks a grandchild that has
not yet imported any ``openclaw`` module (only the third-party libraries, loaded once before the
forks to keep this to seconds) and imports that one module. It is in the slow group because it
starts a process per module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in the child: no openclaw module is loaded when each grandchild imports its module.
CHILD = r"""
import importlib, json, os, pathlib, sys, traceback

root = pathlib.Path(sys.argv[1])
names = []
for path in sorted((root / "openclaw").rglob("*.py")):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    names.append(".".join(parts))
# Third-party libraries the package uses, loaded once: importing them again per module is what
# would make this slow, and their import order is not what is being checked.
for library in ("attrs", "orjson", "zope.interface", "twisted.internet.defer", "twisted.web.server",
                "twisted.application.service", "autobahn.twisted.websocket", "klein", "treq", "jsonschema",
                "fastjsonschema", "cryptography.x509", "OpenSSL.SSL", "prometheus_client"):
    try:
        importlib.import_module(library)
    except ImportError:
        pass
assert not [name for name in sys.modules if name.split(".")[0] == "openclaw"]
failures = {}
missing = {}
for name in names:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        message = ""
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            top = (error.name or "").split(".")[0]
            message = ("missing:" if top and top != "openclaw" else "error:") + traceback.format_exc()
        except BaseException:
            message = "error:" + traceback.format_exc()
        os.write(write, message.encode()[-20000:])
        os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    message = b"".join(chunks).decode()
    if message.startswith("missing:"):
        missing[name] = message[len("missing:"):].strip().splitlines()[-1]
    elif message:
        failures[name] = message[len("error:"):]
print(json.dumps({"count": len(names), "failures": failures, "missing": missing}))
"""


class ImportAloneTests(SynchronousTestCase):
    def test_every_module_imports_alone(self) -> None:
        # Blocking on the child is fine here: a SynchronousTestCase runs no reactor.
        result = subprocess.run(
            [sys.executable, "-c", CHILD, ROOT], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
        )
        self.assertEqual(result.returncode, 0, result.stderr[-4000:])
        report = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertGreater(report["count"], 100)
        self.assertEqual(report["failures"], {}, "\n\n".join(report["failures"].values())[:8000])
        if report["missing"]:
            # An optional library absent from this venv (the cluster's psycopg/txredisapi in an
            # older one): say which, as the cluster tests do, rather than fail.
            raise self.skipTest(f"not importable here for a missing library: {report['missing']}")
