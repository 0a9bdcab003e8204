"""pipeline_lib's modules import each other without a cycle, function-level (lazy) imports included: a cycle hidden
behind a lazy import still means two modules that cannot be understood or changed one at a time (sft <-> pack_sft,
merge <-> fingerprint and orchestrate <-> evaluation were such pairs)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline_lib"


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its code (top level or inside a function)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pipeline_lib import sft`` imports the module pipeline_lib.sft
                targets.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_pipeline_lib_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    # lazy imports are edges: sft imports pack_sft only inside functions
    assert "pipeline_lib.pack_sft" in graph["pipeline_lib.sft"] and len(graph) > 40
    assert import_cycles(graph) == []


def test_planted_lazy_cycle_is_found(tmp_path: Path) -> None:
    """Negative control: a copy of pipeline_lib where phases.py imports orchestrate inside a function (orchestrate
    imports phases at the top, as do the modules between them) must report a cycle through both."""
    copy = tmp_path / "pipeline_lib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    phases = copy / "phases.py"
    phases.write_text(phases.read_text() + "\n\ndef _planted() -> None:\n    from pipeline_lib import orchestrate\n")
    cycles = import_cycles(import_graph(copy))
    assert len(cycles) == 1 and {"pipeline_lib.orchestrate", "pipeline_lib.phases"} <= set(cycles[0]), cycles
