"""The import graph of the dlrun package is a DAG, and the entry points stay light (no torch for --help)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dlrun

PACKAGE = Path(dlrun.__file__).parent


def module_names() -> dict[str, Path]:
    """dlrun.x.y -> its file (a package is its __init__.py)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("dlrun", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def ancestors(name: str) -> list[str]:
    """dlrun.a.b.c -> [dlrun, dlrun.a, dlrun.a.b]: the packages Python imports before it."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported(name: str, source: str, modules: set[str], is_package: bool = False) -> list[tuple[str, int]]:
    """(module, line) for each dlrun module that importing `name` runs, at module level or in a function.

    `import a.b.c` runs a, a.b and a.b.c; `from P import x` runs P and, when x is a submodule, P.x. A package
    that encloses `name` is already under way when `name` runs, so it counts only for `from P import attr`.
    """
    enclosing = set(ancestors(name)) | {name}
    edges = []

    def add(target: str, line: int, attribute: bool = False) -> None:
        for t in [*ancestors(target), target]:
            if t in modules and t != name and (t not in enclosing or (attribute and t == target)):
                edges.append((t, line))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    add(source, node.lineno)
                    add(f"{source}.{alias.name}", node.lineno)
                else:
                    add(source, node.lineno, attribute=True)
    return edges


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """module -> {imported module: first line}, over every module of the dlrun package."""
    files = module_names()
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        graph[name] = {}
        for target, line in imported(name, path.read_text(), set(files), path.name == "__init__.py"):
            graph[name].setdefault(target, line)
    return graph, files


def components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module: each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    return found


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """A shortest cycle through each component."""
    return [shortest_cycle(graph, component) for component in components(graph)]


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle from the component's first module back to it (breadth first)."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    for v in queue:
        if start in graph[v]:
            return [*paths[v], start]
        for w in sorted(graph[v]):
            if w in inside and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def describe(component: list[str], graph: dict[str, dict[str, int]], files: dict[str, Path]) -> str:
    """A cycle of the component on one line, each import on it with its file and line, then the whole component."""
    cycle = shortest_cycle(graph, component)
    steps = [
        f"    {a} -> {b}  ({files[a].relative_to(PACKAGE.parent)}:{graph[a][b]})"
        for a, b in zip(cycle, cycle[1:], strict=False)
    ]
    rest = sorted(set(component) - set(cycle))
    more = [f"    also in this group: {', '.join(rest)}"] if rest else []
    return "\n".join([" -> ".join(cycle), *steps, *more])


def test_every_kind_of_import_is_an_edge():
    modules = {"dlrun", "dlrun.a", "dlrun.a.sub", "dlrun.a.other", "dlrun.b", "dlrun.b.deep", "dlrun.c"}
    source = (
        "from dlrun.a import Thing\n"  # an attribute of the package: dlrun/a/__init__.py
        "from dlrun.a import sub\n"  # a submodule
        "import dlrun.b.deep\n"  # runs dlrun/b/__init__.py, then deep
        "from . import other\n"  # relative
        "from .. import c\n"
        "import os\n"
        "def f():\n"
        "    from dlrun import b\n"  # inside a function
    )
    edges = imported("dlrun.a.mod", source, modules)
    assert edges == [
        ("dlrun.a", 1),
        ("dlrun.a.sub", 2),
        ("dlrun.b", 3),
        ("dlrun.b.deep", 3),
        ("dlrun.a.other", 4),
        ("dlrun.c", 5),
        ("dlrun.b", 8),
    ]
    # a package's own __init__: `from . import sub` is its submodule; enclosing packages are already running
    assert imported("dlrun.a", "from . import sub\nfrom dlrun.a.other import x\n", modules, is_package=True) == [
        ("dlrun.a.sub", 1),
        ("dlrun.a.other", 2),
    ]


def test_cycle_finder():
    graph = {"a": {"b": 1}, "b": {"c": 1, "a": 2}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "a"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_import_graph_is_a_dag():
    graph, files = import_graph()
    found = components(graph)
    if found:
        pytest.fail(
            f"import cycles in dlrun: {len(found)} group(s) of modules that import each other\n"
            + "\n".join(describe(component, graph, files) for component in found),
            pytrace=False,
        )


def test_help_and_version_import_neither_torch_nor_hydra():
    code = (
        "import sys\n"
        "import dlrun\n"
        "from dlrun.cli import main\n"
        "for args in (['--help'], ['--version'], ['train', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'hydra', 'optuna') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_compose_and_train_import_lazily_from_the_package():
    code = (
        "import sys\n"
        "import dlrun\n"
        "light = 'torch' not in sys.modules\n"
        "from dlrun import compose, train\n"
        "import dlrun.config, dlrun.train.loop\n"
        "assert compose is dlrun.config.compose and train is dlrun.train and callable(train)\n"
        "assert dlrun.train.train is dlrun.train.loop.train\n"
        "print('LIGHT' if light else 'TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "LIGHT"
