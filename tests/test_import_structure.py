"""The package's shape, read from its source with ``ast`` (issue 16's "done when").

- no import cycle among ``openclaw`` modules, imports under ``TYPE_CHECKING`` and inside
  functions counted too (a cycle in the design is one whether or not Python trips over it);
- only the composition root (``tap.py``, ``wiring.py``) imports ``openclaw.gateway``: everything
  else works through ``openclaw.hub.GatewayHub``;
- no function in ``openclaw/`` is longer than 60 lines;
- no ``returnValue``: ``inlineCallbacks`` generators end with a plain ``return``.

That every module imports alone in a fresh interpreter is checked in
``slowtests/test_import_alone.py`` (one child process per module).
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "openclaw"
MAX_FUNCTION_LINES = 60
COMPOSITION_ROOT = {"openclaw.tap", "openclaw.wiring"}


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _absolute(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (``from ..x import y`` resolved against ``name``)."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if node.level > 1:
        package = package[: -(node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``name`` imports anywhere in its source (TYPE_CHECKING blocks, functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, path, node)
            found.add(base)
            # ``from . import x`` imports the module ``x``; ``from .m import f`` only ``m``.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def long_functions(modules: dict[str, Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    too_long = []
    for path in modules.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return too_long


def uses_of(name: str, files: list[Path]) -> list[str]:
    """Where an identifier ``name`` is used or imported in ``files``."""
    uses = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            named = (
                (isinstance(node, ast.Name) and node.id == name)
                or (isinstance(node, ast.Attribute) and node.attr == name)
                or (isinstance(node, ast.alias) and node.name == name)
            )
            if named:
                uses.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")
    return uses


def python_files(*directories: str) -> list[Path]:
    return [path for directory in directories for path in sorted((ROOT / directory).rglob("*.py"))]


class ImportGraphTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.modules = module_files()
        self.graph = import_graph(self.modules)

    def test_package_is_found(self) -> None:
        self.assertIn("openclaw.gateway", self.modules)
        self.assertIn("openclaw.gateway", self.graph["openclaw.wiring"])

    def test_no_import_cycle(self) -> None:
        self.assertEqual(cycles(self.graph), [], "import cycles (TYPE_CHECKING and function-level imports count)")

    def test_only_the_composition_root_imports_the_gateway(self) -> None:
        importers = sorted(name for name, imports in self.graph.items() if "openclaw.gateway" in imports)
        self.assertEqual(set(importers) - COMPOSITION_ROOT, set(), "modules importing openclaw.gateway")


class CycleFinderTests(SynchronousTestCase):
    """The checker itself notices what it is there to notice."""

    def test_finds_a_cycle_and_ignores_a_chain(self) -> None:
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": set()}), [])

    def test_type_checking_and_relative_imports_count(self) -> None:
        directory = Path(self.mktemp())
        package = directory / "pkg"
        (package / "sub").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "sub" / "__init__.py").write_text("")
        (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\n")
        (package / "sub" / "b.py").write_text("def f():\n    from ..a import x\n")
        graph = import_graph(module_files(package))
        self.assertEqual(graph["pkg.a"], {"pkg.sub", "pkg.sub.b"})
        self.assertEqual(graph["pkg.sub.b"], {"pkg.a"})
        self.assertEqual(cycles(graph), [["pkg.a", "pkg.sub.b"]])


class SourceRulesTests(SynchronousTestCase):
    def test_no_function_over_60_lines(self) -> None:
        self.assertEqual(long_functions(module_files()), [])

    def test_no_return_value(self) -> None:
        directories = [name for name in ("openclaw", "tests", "slowtests", "bench", "tools") if os.path.isdir(ROOT / name)]
        self.assertEqual(uses_of("returnValue", python_files(*directories)), [])
