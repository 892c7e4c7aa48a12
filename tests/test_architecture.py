"""The package's shape: folders by stage, a layered import graph with no circles.

The layers, bottom to top (a module may import its own layer and the ones below it, never one
above): shared primitives -> what a stage reads and turns into tokens (``read``, ``text``,
``pack``) -> the recipe and the built dataset's format -> the tasks -> building a dataset
(``build``) -> what reads a built dataset (``validate``, ``look``, ``train``) -> the CLI.
Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy
import hides a circle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dataprep"

LAYERS = [
    {"dataprep._version", "dataprep.errors", "dataprep.columns", "dataprep.storage", "dataprep.schema"},
    {"dataprep.read", "dataprep.text", "dataprep.pack"},
    {"dataprep.recipe", "dataprep.dataset"},
    {"dataprep.tasks"},
    {"dataprep.build"},
    {"dataprep.validate", "dataprep.look", "dataprep.train", "dataprep.export"},
    {"dataprep.cli", "dataprep.__main__", "dataprep.api"},
]
# The package itself (``import dataprep``) offers the Python API, so it sits on top: nothing in the
# package imports it (the version lives in dataprep._version).
TOP = {"dataprep": len(LAYERS) - 1}
MAX_MODULE_LINES = 400  # the "about 400"; modules over it are listed in OVERSIZED below
MAX_FUNCTION_LINES = 80
# Modules and functions allowed over the limits, at most their recorded size (none since issue 15
# split the last of them): a module or function that passes a limit fails the test.
OVERSIZED: dict[str, int] = {}
LONG_FUNCTIONS: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The dataprep modules ``name`` imports (a package import counts as its ``__init__``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                          for alias in node.names]
        else:
            continue
        for target in candidates:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    if module in TOP:
        return TOP[module]
    best, rank = "", None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, index
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add its folder to LAYERS in {__file__}")
    return rank


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_climbs_a_layer():
    climbs = sorted(f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
                    for module, targets in GRAPH.items() for target in targets
                    if layer_of(target) > layer_of(module))
    assert climbs == []


# The readers of a built dataset check it through what its manifest states, not through the code
# that built it (an oracle that shares code with what it checks cannot catch that code's bugs).
# These modules run the producer's code on purpose, each for the reason given:
RUNS_THE_PRODUCER = {
    "dataprep.validate.check_recipe": "validate --recipe reports what `run` would drop: it must be run's own readers and worker",
    "dataprep.validate.check_inputs": "validate --inputs reads raw files with run's field rules (tasks.sft.records.fields_for)",
    "dataprep.validate.recheck_remake": "--recheck-sources re-makes rows from the sources (an independent re-derivation is still to do)",
    "dataprep.look.preview": "inspect --recipe shows records as run would render them",
    "dataprep.train.objectives": "dynamic MLM masking at training time is the producer's masker (the same operation, not a check)",
    "dataprep.train.proofs": "the task check's response marker comes from the pair template's text",
    "dataprep.train.reference": "a named pair template's text (not its rendering code) comes from the producer's table",
}
READERS = ("dataprep.validate", "dataprep.look", "dataprep.train", "dataprep.export")
PRODUCERS = ("dataprep.tasks", "dataprep.build")


def test_readers_of_a_dataset_do_not_import_the_code_that_built_it():
    found = sorted(f"{module} imports {target}" for module, targets in GRAPH.items()
                   if module.startswith(READERS) and module not in RUNS_THE_PRODUCER
                   for target in targets if target.startswith(PRODUCERS))
    assert found == []
    stale = sorted(m for m in RUNS_THE_PRODUCER
                   if m not in GRAPH or not any(t.startswith(PRODUCERS) for t in GRAPH[m]))
    assert stale == [], "listed as running the producer but no longer does: remove from RUNS_THE_PRODUCER"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    # a package's __init__ that only holds its docstring is not an edge; a submodule importing a
    # sibling through its package (`from dataprep.read import x`) is one edge to the __init__
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles():
    """The check above can fail: a made-up graph with a circle and a chain."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert layer_of("dataprep.build.run") > layer_of("dataprep.tasks.sft.task") > layer_of("dataprep.text.tokenizer")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("dataprep_other.x")


def test_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    grown = {name: (lines, OVERSIZED.get(name)) for name, lines in sizes.items()
             if lines > OVERSIZED.get(name, MAX_MODULE_LINES)}
    assert grown == {}, "modules over the limit (lines, recorded): split them"


def _function_sizes() -> dict[str, int]:
    sizes = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes[f"{name}.{node.name}"] = max(sizes.get(f"{name}.{node.name}", 0), node.end_lineno - node.lineno + 1)
    return sizes


def test_functions_stay_short():
    grown = {name: (lines, LONG_FUNCTIONS.get(name)) for name, lines in _function_sizes().items()
             if lines > LONG_FUNCTIONS.get(name, MAX_FUNCTION_LINES)}
    assert grown == {}, "functions over the limit (lines, recorded): split them"


def test_every_folder_says_what_it_owns():
    for path in PACKAGE.rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no docstring"
