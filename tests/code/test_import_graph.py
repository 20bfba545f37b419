"""The package's import graph: no arrow from an earlier stage to a later one, nothing below the CLI imports it.

Layers, bottom up: foundation (settings, errors, files, paths, what is printed); libraries (the
dataset format, DVC, S3, the model, scoring, MLflow tracking and registration); then the stages in
pipeline order (fetch, prepare, train: its per-worker half first, evaluate); the CLI on top. A module
may import its own layer and the ones below, and a stage only the stages before it. Every import
counts, also those inside functions (the package imports heavy libraries lazily).
"""

from __future__ import annotations

import ast

from tests.support.services import PROJECT_DIR

PACKAGE = PROJECT_DIR / "mnist_job"
FOUNDATION = ["errors", "config", "files", "paths", "console"]
LIBRARIES = ["dataset", "s3", "model", "scoring", "tracking", "registry", "dvc_store"]
STAGES = ["fetch", "prepare", "train_loop", "train", "evaluate"]
TOP = ["cli", "__main__"]


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_job"):
                if node.module == "mnist_job":
                    targets |= {alias.name for alias in node.names}
                else:
                    targets.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                targets |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mnist_job.")}
        graph[path.stem] = targets - {path.stem}
    return graph


def rank(module: str) -> tuple[int, int]:
    for layer, members in enumerate((FOUNDATION, LIBRARIES, STAGES, TOP)):
        if module in members:
            return layer, (members.index(module) if members is STAGES else 0)
    raise AssertionError(f"mnist_job/{module}.py belongs to no layer: add it to tests/code/test_import_graph.py")


def against_layering(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if rank(t) > rank(m))


def test_every_module_has_a_layer():
    for module in import_graph():
        rank(module)


def test_no_arrow_points_to_a_later_stage_or_a_higher_layer():
    graph = import_graph()
    print("\n".join(f"{m:>10} -> {', '.join(sorted(t)) or '-'}" for m, t in sorted(graph.items(), key=lambda i: rank(i[0]))))
    assert against_layering(graph) == [], "imports against the layering"


def test_the_check_can_fail():
    """Arrows up the layers are reported: a stage importing a later one, a library importing a stage."""
    graph = {"fetch": {"train", "dataset"}, "train": {"fetch"}, "scoring": {"evaluate"}, "cli": {"train"}}
    assert against_layering(graph) == ["fetch -> train", "scoring -> evaluate"]
