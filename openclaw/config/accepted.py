"""What a config file may contain: the reference's schema, with this gateway's keys merged in.

A user moving from the reference gateway keeps their ``~/.openclaw/openclaw.json``, so every key
the reference accepts must be accepted here, with the reference's types and enums, and every key
it refuses is refused here too (with its path). The reference's schema is data in
``reference_schema.json``, generated from the reference package by
``tools/refresh_reference_schema.py`` (run it again after upgrading the reference).

:data:`.schema.CONFIG_SCHEMA` holds the keys this gateway acts on; :func:`merge` lays them over
the reference document:

* where both have a node, the reference's rules stand and ours adds its annotations
  (``x-reload``, ``x-sensitive``, ``default``, and a description where the reference has none);
  where both list allowed values, the union is allowed (``gateway.reload.mode`` has ``hot`` and
  ``restart`` here);
* a key only this gateway has (``gateway.metrics``, ``gateway.reload.debounceMs``) is added;
  a key is required only where both documents require it, a ``pattern`` the reference lacks
  is kept (``models.providers.*.baseUrl`` must be an http(s) URL), and a node ours marks
  ``x-widens`` accepts what either accepts (``gateway.bind`` also takes an interface address);
* ``agents.list``, which the reference still reads (it moves it to ``agents.entries``), accepts
  an entry's keys plus ``id``.

:func:`unused_paths` names the keys of a file that this gateway does not act on, for the one
start-up line "accepted, not used here: …".
"""
from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any
from collections.abc import Mapping

from .schema import CONFIG_SCHEMA, Schema

REFERENCE_FILE = "reference_schema.json"
_ANNOTATIONS = ("x-reload", "x-sensitive", "default")
# Rules ours adds where the reference has none: a baseUrl that is not http(s) cannot work here.
_TIGHTENS = ("pattern",)


def reference_schema() -> Schema:
    """The reference's config schema as generated (read from the package on every call)."""
    text = resources.files(__package__).joinpath(REFERENCE_FILE).read_text(encoding="utf-8")
    document: Schema = json.loads(text)
    return document


def _allowed_values(node: Schema) -> list[Any] | None:
    """The values a leaf allows, when it is a closed list (``enum`` or ``anyOf`` of ``const``)."""
    if isinstance(node.get("enum"), list):
        return list(node["enum"])
    options = node.get("anyOf")
    if isinstance(options, list) and options and all(isinstance(o, dict) and "const" in o for o in options):
        return [o["const"] for o in options]
    return None


def merge(reference: Schema | None, ours: Schema | None) -> Schema:
    """One node accepting what either document accepts at this place (see the module text)."""
    if reference is None:
        return copy.deepcopy(ours) if ours is not None else {}
    if ours is None:
        return reference
    if ours.get("x-widens"):
        # Ours accepts more than the reference here (gateway.bind takes an address too).
        bare = {k: v for k, v in ours.items() if k not in _ANNOTATIONS and k not in ("description", "x-widens")}
        return {"anyOf": [reference, bare], **{k: ours[k] for k in (*_ANNOTATIONS, "description") if k in ours}}
    merged = dict(reference)
    if "required" in reference:
        # Required only where both say so: a file this gateway took before keeps working.
        required = [name for name in reference["required"] if name in ours.get("required", ())]
        if required:
            merged["required"] = required
        else:
            merged.pop("required")
    for key in _ANNOTATIONS:
        if key in ours:
            merged[key] = ours[key]
    for key in _TIGHTENS:
        if key in ours and key not in reference:
            merged[key] = ours[key]
    if "description" not in merged and "description" in ours:
        merged["description"] = ours["description"]
    theirs_values, our_values = _allowed_values(reference), _allowed_values(ours)
    if theirs_values is not None and our_values is not None:
        extra = [value for value in our_values if value not in theirs_values]
        if extra:
            merged.pop("anyOf", None)
            merged["enum"] = theirs_values + extra
    if isinstance(reference.get("properties"), dict) and isinstance(ours.get("properties"), dict):
        properties = dict(reference["properties"])
        for name, node in ours["properties"].items():
            properties[name] = merge(properties.get(name), node)
        merged["properties"] = properties
    for key in ("additionalProperties", "items"):
        if isinstance(reference.get(key), dict) and isinstance(ours.get(key), dict):
            merged[key] = merge(reference[key], ours[key])
    return merged


def _with_legacy_agent_list(reference: Schema) -> Schema:
    """``agents.list``: the reference migrates it to ``agents.entries``, so it takes an entry's keys."""
    agents = reference.get("properties", {}).get("agents")
    entry = (agents or {}).get("properties", {}).get("entries", {}).get("additionalProperties")
    if not isinstance(entry, dict) or "list" in agents.get("properties", {}):
        return reference
    item = {**entry, "properties": {"id": {"type": "string", "minLength": 1}, **entry.get("properties", {})}, "required": ["id"]}
    agents = {**agents, "properties": {**agents["properties"], "list": {"type": "array", "items": item}}}
    return {**reference, "properties": {**reference["properties"], "agents": agents}}


def accepted_schema(reference: Schema | None = None, ours: Schema = CONFIG_SCHEMA) -> Schema:
    """The document files are validated against (and ``config.schema`` answers with)."""
    reference = reference_schema() if reference is None else reference
    merged = merge(_with_legacy_agent_list(reference), ours)
    merged.pop("x-reference-version", None)
    merged["x-reference-version"] = reference.get("x-reference-version")
    return merged


@functools.lru_cache(maxsize=1)
def cached_accepted_schema() -> Schema:
    """The accepted schema, built once per process: it depends only on files in the package."""
    return accepted_schema()


def _child(node: Schema, key: str) -> Schema | None:
    properties = node.get("properties")
    if isinstance(properties, dict) and key in properties:
        child: Schema = properties[key]
        return child
    extra = node.get("additionalProperties", True)
    if extra is True:
        return {}  # any key is allowed here (``channels`` takes plugin channels)
    return extra if isinstance(extra, dict) else None


def _takes_anything(node: Schema) -> bool:
    """A free-form object here (``hooks``, ``gateway.remote``): what is under it is passed on."""
    return "properties" not in node and not isinstance(node.get("additionalProperties"), dict) and "items" not in node


def node_for(path: str, ours: Schema = CONFIG_SCHEMA) -> Schema | None:
    """Our node for a dotted path, the nearest free-form ancestor's, or None: not used here."""
    node = ours
    for part in path.split("."):
        if part.endswith("[]"):
            part = part[:-2]
        if node is not ours and (_takes_anything(node) or "anyOf" in node or "oneOf" in node):
            return node
        child = _child(node, part)
        if child is None:
            return None
        node = child
        if isinstance(node.get("items"), dict):
            node = node["items"]
    return node


def is_accepted(path: str) -> bool:
    """Whether a file may hold ``path`` at all (its value's shape aside)."""
    return node_for(path, cached_accepted_schema(), ) is not None


def unused_paths(config: Mapping[str, Any], ours: Schema = CONFIG_SCHEMA) -> list[str]:
    """Dotted paths of the keys in ``config`` this gateway does not act on, outermost only
    (``channels``, not every key under it); list items show as ``agents.list[].workspace``."""
    found: list[str] = []
    _collect(config, ours, "", found)
    return list(dict.fromkeys(found))


def _collect(value: Any, node: Schema, prefix: str, found: list[str]) -> None:
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            _collect(item, node["items"], prefix + "[]", found)
        return
    if not isinstance(value, Mapping) or _takes_anything(node) or "anyOf" in node:
        return
    for key, child_value in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        child = _child(node, str(key))
        if child is None:
            found.append(path)
        else:
            _collect(child_value, child, path, found)
