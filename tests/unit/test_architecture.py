"""The package layering holds, no module imports itself back, and modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

from musicrec.config import KIND_SPECS, KINDS

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC = REPO_ROOT / "src" / "musicrec"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def import_cycles(package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module in ``package``'s import graph."""
    graph = grimp.build_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle_anywhere() -> None:
    assert import_cycles("musicrec") == []


def test_layers_are_kept() -> None:
    """import-linter's contracts from pyproject.toml (also run by `make lint`)."""
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(linter), "--config", str(REPO_ROOT / "pyproject.toml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_every_kind_is_registered_once_with_a_class_path() -> None:
    assert set(KINDS) <= set(KIND_SPECS)
    assert all(":" in spec.target for spec in KIND_SPECS.values())


def test_no_module_or_function_is_too_long() -> None:
    """Size limits for src/: modules of at most 450 lines, functions of at most 80 (AST)."""
    long_modules, long_functions = [], []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(SRC.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_rule_chain_is_pure() -> None:
    """Serving and evaluation share the rule chain: it needs numpy, scipy and errors, nothing
    that loads models, data or settings."""
    graph = grimp.build_graph("musicrec", include_external_packages=True)
    imported: set[str] = set()
    for module in graph.find_children("musicrec.rules") | {"musicrec.rules"}:
        imported |= graph.find_modules_directly_imported_by(module)
    outside = {
        m
        for m in imported
        if not m.startswith("musicrec.rules") and m not in sys.stdlib_module_names
    }
    allowed = {"numpy", "scipy", "musicrec.errors"}
    assert outside <= allowed, sorted(outside - allowed)
