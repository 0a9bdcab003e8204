"""Cheap lint for the reward's lint term.

Python: pyflakes is not installed and ruff is a dev-only dependency, so a built-in ``ast`` check of the five
findings a one-function fix most often introduces: unused import (F401), local assigned but never read (F841),
a top-level def/class defined twice (F811), bare ``except:`` (E722), ``== None``/``!= None`` (E711). The source is
parsed, never executed. Rust: rustc's own warnings from the test build, counted where they point into the fixed file.
"""

from __future__ import annotations

import ast
import re


def python_lint(source: str) -> list[str]:
    """Findings as ``"CODE name"`` strings (no line numbers, so a fix can be compared with the reference)."""
    tree = ast.parse(source)
    findings: list[str] = []
    loaded = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    exported = _dunder_all(tree)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            for alias in node.names:
                name = (alias.asname or alias.name).split(".")[0]
                if name != "*" and name not in loaded and name not in exported:
                    findings.append(f"F401 {name}")
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in defined:
                findings.append(f"F811 {node.name}")
            defined.add(node.name)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            findings += [f"F841 {name}" for name in _unused_locals(node)]
        elif isinstance(node, ast.ExceptHandler) and node.type is None:
            findings.append("E722 except")
        elif isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.Eq, ast.NotEq)) and isinstance(right, ast.Constant) and right.value is None:
                    findings.append("E711 None")
    return sorted(findings)


def _dunder_all(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                return {e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def _unused_locals(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Plain ``name = ...`` targets in ``func`` (not tuple unpacking, as pyflakes) never read in it or nested code."""
    declared = {name for node in ast.walk(func) if isinstance(node, (ast.Global, ast.Nonlocal)) for name in node.names}
    assigned: list[str] = []
    for node in ast.walk(func):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node is not func:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assigned += [t.id for t in targets if isinstance(t, ast.Name)]
    read = {node.id for node in ast.walk(func) if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store)}
    unused = {name for name in assigned if name not in read and name not in declared}
    return sorted(name for name in unused if not name.startswith("_"))


_WARNING = re.compile(r"^warning: (?!`[^`]*` \(\w+( test)?\) generated)(?!unused manifest key).*\n\s*--> ([^:\n]+):",
                      re.M)


def rust_warnings(build_output: str, path: str) -> int:
    """Number of rustc warnings whose primary span is in ``path`` (cargo's 'generated N warnings' lines excluded)."""
    return sum(1 for match in _WARNING.finditer(build_output) if match.group(2).strip() == path)
