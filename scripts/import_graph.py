"""Print the import graph between condsynth's packages and check that it points one way.

    python scripts/import_graph.py [--repo DIR]

Layers, top to bottom: run.py -> tasks -> lightning_modules, datamodules -> networks, losses. A package may import
its own layer or a lower one; anything else is printed as an upward import and the exit code is 1. Import loops
between modules (module-level imports, type-only ones included) are printed as cycles, also exit code 1.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

LAYERS = {"run": 0, "tasks": 1, "lightning_modules": 2, "datamodules": 2, "networks": 3, "losses": 3}
#: shared tasks that are packages, not papers: part of the shared ``tasks`` node (a paper's studio panel uses them)
SHARED_TASK_PACKAGES = ("studio",)


def node_of(path: Path, repo: Path) -> str:
    """The graph node of a file: its top-level package (``tasks/<paper>`` kept apart)."""
    parts = path.relative_to(repo).with_suffix("").parts
    if parts[0] == "tasks" and len(parts) > 2 and parts[1] not in SHARED_TASK_PACKAGES:
        return f"tasks/{parts[1]}"
    return parts[0]


def imported_nodes(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    out = set()
    for name in names:
        parts = name.split(".")
        if parts[0] not in LAYERS:
            continue
        paper = parts[0] == "tasks" and len(parts) > 2 and parts[1] not in SHARED_TASK_PACKAGES
        out.add(f"tasks/{parts[1]}" if paper else parts[0])
    return out


def import_graph(repo: Path) -> dict[str, set[str]]:
    files = [repo / "run.py", *(p for pkg in LAYERS if pkg != "run" for p in (repo / pkg).rglob("*.py"))]
    graph: dict[str, set[str]] = defaultdict(set)
    for path in files:
        if path.is_file():
            src = node_of(path, repo)
            graph[src] |= {dst for dst in imported_nodes(path) if dst != src}
    return graph


def layer(node: str) -> int:
    return LAYERS[node.split("/")[0]]


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges that go up a layer, or from one paper's tasks into another's."""
    bad = []
    for src, dsts in graph.items():
        for dst in dsts:
            if layer(dst) < layer(src) or (src.startswith("tasks/") and dst.startswith("tasks/")):
                bad.append((src, dst))
            elif src == "tasks" and dst.startswith("tasks/"):
                bad.append((src, dst))  # shared tasks do not reach into a paper's
    return sorted(bad)


def module_name(path: Path, repo: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports at module level (``if TYPE_CHECKING:`` blocks included: they are what
    a type-only loop is made of); imports inside functions run later and close no loop at import time."""
    out: set[str] = set()
    stack = list(ast.parse(path.read_text()).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.If, ast.Try)):
            stack.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
    return out


def module_cycles(repo: Path) -> list[list[str]]:
    """Import loops between the project's modules (strongly connected components of more than one module)."""
    files = [repo / "run.py", *(p for pkg in LAYERS if pkg != "run" for p in (repo / pkg).rglob("*.py"))]
    names = {module_name(p, repo): p for p in files if p.is_file()}
    graph = {name: module_imports(path, set(names)) - {name} for name, path in names.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
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

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(cycles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    graph = import_graph(args.repo.resolve())
    for src in sorted(graph, key=lambda n: (layer(n), n)):
        print(f"{src:22s} -> {', '.join(sorted(graph[src], key=lambda n: (layer(n), n))) or '-'}")
    bad = upward_edges(graph)
    for src, dst in bad:
        print(f"UPWARD: {src} imports {dst}")
    print("imports point one way" if not bad else f"{len(bad)} upward imports")
    cycles = module_cycles(args.repo.resolve())
    for cycle in cycles:
        print(f"CYCLE: {' <-> '.join(cycle)}")
    print(f"module import cycles: {len(cycles)}")
    return 1 if bad or cycles else 0


if __name__ == "__main__":
    sys.exit(main())
