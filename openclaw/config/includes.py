"""``$include``: a config split over several files, as the reference reads it.

``{ agents: { $include: "./agents.json5" } }`` puts that file's object in place of the
directive; a list of files is deep-merged in order; keys beside the directive are merged over
what was included (so ``config.patch`` can write an override next to an include and it wins).
Includes nest up to 10 levels, each file is at most 2 MB, and paths resolve relative to the
including file but must stay inside the config file's directory (or a root listed in
``OPENCLAW_INCLUDE_ROOTS``). Every problem is an :class:`IncludeError` naming the directive's
path, so the snapshot reports it like any other issue.

Reading happens where the config file is read (off the reactor thread once running). The files
read are recorded (``read_files``) so the reload poller watches them beside the main file: an
edit to an included file reloads like an edit to the main file.
"""
from __future__ import annotations

import os
from typing import Any
from collections.abc import Mapping

from .parsing import parse_config_text

DIRECTIVE = "$include"
MAX_DEPTH = 10
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_PATH_CHARS = 4096


class IncludeError(ValueError):
    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


def uses_includes(raw: str) -> bool:
    """A cheap test before walking the document."""
    return DIRECTIVE in raw


def resolve_includes(document: Any, config_path: str, env: Mapping[str, str], read_files: list[str] | None = None) -> Any:
    """``document`` with every ``$include`` replaced by what it names (``document`` is not changed).

    The path of every file opened (or tried: a missing include is watched too, so creating it
    is noticed) is appended to ``read_files`` when given.
    """
    config_dir = os.path.dirname(os.path.realpath(config_path))
    extra = [p for p in env.get("OPENCLAW_INCLUDE_ROOTS", "").replace(",", os.pathsep).split(os.pathsep) if p]
    roots = [config_dir, *(os.path.realpath(p) for p in extra if os.path.isabs(p))]
    resolver = _Resolver(roots, read_files if read_files is not None else [])
    return resolver.node(document, config_dir, "", (os.path.realpath(config_path),))


class _Resolver:
    def __init__(self, roots: list[str], read_files: list[str]):
        self._roots = roots
        self._read_files = read_files

    def node(self, value: Any, base: str, where: str, chain: tuple[str, ...]) -> Any:
        if isinstance(value, list):
            return [self.node(item, base, f"{where}.{index}" if where else str(index), chain) for index, item in enumerate(value)]
        if not isinstance(value, Mapping):
            return value
        here = f"{where}.{DIRECTIVE}" if where else DIRECTIVE
        siblings = {
            key: self.node(item, base, f"{where}.{key}" if where else str(key), chain) for key, item in value.items() if key != DIRECTIVE
        }
        if DIRECTIVE not in value:
            return siblings
        spec = value[DIRECTIVE]
        files = [spec] if isinstance(spec, str) else spec
        if not isinstance(files, list) or not files or not all(isinstance(name, str) for name in files):
            raise IncludeError(here, "must be a file path or a list of file paths")
        included: Any = None
        for name in files:
            loaded = self.file(name, base, here, chain)
            included = loaded if included is None else deep_merge(included, loaded)
        if not siblings:
            return included
        if not isinstance(included, Mapping):
            raise IncludeError(here, "an included file must hold an object when other keys sit beside $include")
        return deep_merge(included, siblings)

    def file(self, name: str, base: str, where: str, chain: tuple[str, ...]) -> Any:
        if "\0" in name or len(name) >= MAX_PATH_CHARS:
            raise IncludeError(where, "invalid include path")
        path = os.path.realpath(os.path.join(base, os.path.expanduser(name)))
        if not any(path == root or path.startswith(root + os.sep) for root in self._roots):
            raise IncludeError(where, f"{name} is outside the config directory (allow more with OPENCLAW_INCLUDE_ROOTS)")
        if path in chain:
            raise IncludeError(where, f"{name} includes itself (circular $include)")
        if len(chain) > MAX_DEPTH:
            raise IncludeError(where, f"includes nest deeper than {MAX_DEPTH} levels")
        if path not in self._read_files:
            self._read_files.append(path)
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                raise IncludeError(where, f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise IncludeError(where, f"cannot read {name}: {reason}") from None
        try:
            document = parse_config_text(text)
        except ValueError as exc:
            raise IncludeError(where, f"{name} is not valid JSON5: {exc}") from None
        return self.node(document, os.path.dirname(path), where.rsplit(".", 1)[0] if "." in where else "", chain + (path,))


def deep_merge(base: Any, over: Any) -> Any:
    """Objects merge key by key (``over`` wins); anything else is replaced by ``over``."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = deep_merge(merged[key], value) if key in merged else value
        return merged
    return over
