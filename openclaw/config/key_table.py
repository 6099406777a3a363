"""The key table of ``docs/configuration.md``: every key of the schema and what a change does.

``python -m openclaw.config.key_table`` prints it, and a test keeps the document in step. It lives
apart from :mod:`.schema` because its "on change" column comes from :mod:`.reload_plan`, which
reads the schema (through :mod:`.accepted`): inside the schema module the three would form an
import cycle.
"""
from __future__ import annotations

import json
import sys

from .reload_plan import classify
from .schema import walk


def markdown() -> str:
    """The key table for docs/configuration.md."""
    lines = ["| key | type | default | on change | meaning |", "|---|---|---|---|---|"]
    for path, node in walk():
        if path == "$schema":
            continue
        kind = node.get("type") or ("one of " + ", ".join(f"`{v}`" for v in node["enum"]) if "enum" in node else "see text")
        if isinstance(kind, list):
            kind = " or ".join(kind)
        value = node.get("default")
        # As written in the file: `true`, not Python's `True`.
        default = "" if "default" not in node else f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"
        lines.append(f"| `{path}` | {kind} | {default} | {classify(path)} | {node.get('description', '')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown())
