"""The package's layers point one way: no import cycle, no import upward.

An AST scan of every import of every module of depthq (module level and inside functions, and
modules named by string where the file imports through importlib), held against the layers:

    0  leaves: errors, atomic, tables, terminal, presets, version, results (the results files)
    1  quantize, data, images
    2  models
    3  config, evaluate (the metrics: bits, information, results, anchors, figures, reports as text)
    4  io (weights, their records and digests)
    5  runtime (what both trainers share)
    6  train, prior
    7  codec
    8  runs (a run folder, opened once: eval, prior training, sample, compress)
    9  experiments, demo
    10 cli
    11 depthq itself (the public API's re-exports)

A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    0: (
        "depthq.errors",
        "depthq.atomic",
        "depthq.tables",
        "depthq.terminal",
        "depthq.presets",
        "depthq.version",
        "depthq.results",
        "depthq.limits",
    ),
    1: ("depthq.quantize", "depthq.data", "depthq.images"),
    2: ("depthq.models",),
    3: ("depthq.config", "depthq.evaluate"),
    4: ("depthq.io",),
    5: ("depthq.runtime",),
    6: ("depthq.train", "depthq.prior"),
    7: ("depthq.codec",),
    8: ("depthq.runs",),
    9: ("depthq.experiments", "depthq.demo"),
    10: ("depthq.cli",),
}
TOP = 11  # the package's own __init__: the public API


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "depthq").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> int:
    if module == "depthq":
        return TOP
    for level, prefixes in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the depthq modules it imports (anywhere in the file)."""

    def resolve(module: str, names: list[str | None]) -> set[str]:
        out = set()
        for n in names or [None]:
            if n and f"{module}.{n}" in mods:
                out.add(f"{module}.{n}")
            elif module in mods:
                out.add(module)
        return out

    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        source = path.read_text()
        package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("depthq"):
                    edges |= resolve(target, [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("depthq"):
                        edges |= resolve(alias.name, [])
        if "import_module" in source or "__import__" in source:
            edges |= {s for s in re.findall(r"[\"'](depthq(?:\.\w+)+)[\"']", source) if s in mods}
        edges.discard(module)
        graph[module] = edges
    return graph


def test_every_module_has_a_layer():
    for module in modules():
        layer(module)


def test_no_import_runs_upward():
    graph = imports(modules())
    upward = sorted(
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in graph.items()
        for b in targets
        if layer(b) > layer(a)
    )
    assert not upward, "\n".join(upward)


def test_there_is_no_import_cycle():
    graph = imports(modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_no_module_imports_another_modules_underscore_names():
    mods = modules()
    offences = []
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("depthq"):
                offences += [
                    f"{module}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert not offences, offences
