"""The arrows of docs/ARCHITECTURE.md, read from the source: every import (lazy ones inside functions too) between
the project's modules. edge never imports trainer or calibration, trainer never imports calibration; inside edge
the foundations (preprocess, modalities, bundle, moving_digits, ...) never import the runtime layers above them
(live, record, bench) and no runtime layer imports the benchmarks; and no module imports itself round a circle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("edge", "trainer", "calibration")
RUNTIME = ("edge.live", "edge.record", "edge.bench", "edge.embed")      # above the foundations; embed: the public API


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from pkg import name` of a submodule counts as that module)."""
    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {owner(f"{node.module}.{a.name}") for a in node.names}   # owner walks up to the module
        graph[name] = {d for d in deps if d and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, deps in graph.items():
        for d in deps:
            if a.startswith("edge") and d.startswith(("trainer", "calibration")) or \
                    a.startswith("trainer") and d.startswith("calibration") or \
                    a.startswith("edge.") and not a.startswith(RUNTIME) and d.startswith(RUNTIME) or \
                    a.startswith(("edge.live", "edge.record")) and d.startswith("edge.bench"):
                bad.append(f"{a} -> {d}")
    return sorted(bad)


def test_the_import_graph_has_no_upward_arrow_and_no_circle():
    graph = import_graph(_modules())
    assert len(graph) > 100 and "edge.live.core" in graph["edge.live.pipeline"]    # it reads real imports
    assert upward_arrows(graph) == []
    assert circles(graph) == []


@pytest.mark.parametrize("edges, found", [
    ({"edge.moving_digits.x": {"edge.live.demo"}, "edge.live.demo": set()}, ["edge.moving_digits.x -> edge.live.demo"]),
    ({"edge.bundle": {"trainer.export"}, "trainer.export": set()}, ["edge.bundle -> trainer.export"]),
    ({"edge.live.cli": {"edge.bench.e2e"}, "edge.bench.e2e": set()}, ["edge.live.cli -> edge.bench.e2e"]),
])
def test_an_upward_arrow_is_found(edges, found):
    assert upward_arrows(edges) == found


def test_a_circle_is_found_even_through_a_lazy_import():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
