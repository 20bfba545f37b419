"""The package's import graph: no arrow from an earlier stage to a later one, nothing below the CLI imports it.

Modules are named by their place in the package (``data.fetch``, ``training.loop``). Layers, bottom up:
foundation (``core``: settings, errors, files, paths, what is printed); libraries (the dataset format,
DVC, S3, the network and its exported form, scoring, MLflow tracking and registration); then the stages
in pipeline order (fetch, prepare, train: its per-worker half first, evaluate); serving, which uses
what the stages produced (images in, predict, the Ray Serve app); work across runs (``experiments``:
comparing runs, the CI baseline, tuning, which reads or drives whole runs); the cluster from the user's seat
(``cluster``: a RayJob submitted and followed); the CLI on top. A module may import its
own layer and the ones below, and a stage only the stages before it. Every import counts, also those
inside functions (the package imports heavy libraries lazily).
"""

from __future__ import annotations

import ast

from loopback.services import PROJECT_DIR

PACKAGE = PROJECT_DIR / "mnist_job"
FOUNDATION = ["core.errors", "core.tuning_params", "core.config", "core.presets", "core.files", "core.paths", "core.phases",
              "core.console"]
LIBRARIES = [
    "data.format",
    "data.s3",
    "data.dvc_store",
    "model.network",
    "model.pixel_pyfunc",
    "model.export",
    "evaluation.scoring",
    "tracking.client",
    "tracking.runs",
    "tracking.registry",
    "training.failures",
    "training.planning",
    "training.ray_output",
    "training.local_trainer",
    "training.ray_cluster",
]
STAGES = ["data.fetch", "data.prepare", "training.epoch", "training.loop", "training.driver", "evaluation.evaluate"]
# Using the model: above every stage (it serves what they produced), below the CLI.
SERVING = ["serving.images", "serving.predict", "serving.champion", "serving.app"]
EXPERIMENTS = ["experiments.compare", "experiments.baseline", "experiments.tune", "experiments.study_report"]
# The cluster from the user's seat: a RayJob submitted and followed through the Kubernetes API.
CLUSTER = ["cluster.outcome", "cluster.cost", "cluster.kube", "cluster.run_record", "cluster.submit"]
TOP = ["cli.parser", "cli.commands", "__main__"]


def module_name(path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imported_modules(node: ast.AST) -> set[str]:
    """Package modules one import statement names, as ``sub.module`` (``from mnist_job.data import fetch`` too)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mnist_job":
        inner = node.module.removeprefix("mnist_job").lstrip(".")
        if (PACKAGE / inner.replace(".", "/")).with_suffix(".py").exists():
            return {inner}
        return {f"{inner}.{alias.name}" if inner else alias.name for alias in node.names}
    if isinstance(node, ast.Import):
        return {a.name.removeprefix("mnist_job.") for a in node.names if a.name.startswith("mnist_job.")}
    return set()


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.stem == "__init__":
            continue
        name = module_name(path)
        targets = set().union(*(imported_modules(node) for node in ast.walk(ast.parse(path.read_text()))))
        graph[name] = targets - {name}
    return graph


def rank(module: str) -> tuple[int, int]:
    for layer, members in enumerate((FOUNDATION, LIBRARIES, STAGES, SERVING, EXPERIMENTS, CLUSTER, TOP)):
        if module in members:
            return layer, (members.index(module) if members is STAGES else 0)
    raise AssertionError(f"mnist_job: {module} belongs to no layer: add it to tests/code/test_import_graph.py")


def against_layering(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if rank(t) > rank(m))


def test_every_module_has_a_layer():
    for module, targets in import_graph().items():
        rank(module)
        for target in targets:
            rank(target)


def test_subpackages_keep_the_package_readable():
    """Past about 15 modules a flat package stops telling its story; no folder grows past 8 either."""
    top_level = [p for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    assert len(top_level) <= 1, f"modules at the top of mnist_job/: {sorted(p.name for p in top_level)}"
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert len(list(folder.glob("*.py"))) <= 9, f"{folder.name}/ has grown past 8 modules: split it"


def test_no_module_grows_past_300_lines():
    """A module longer than a few screens does more than one thing: split it (as training/epoch.py from loop.py)."""
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}, long


def test_no_arrow_points_to_a_later_stage_or_a_higher_layer():
    graph = import_graph()
    print("\n".join(f"{m:>20} -> {', '.join(sorted(t)) or '-'}" for m, t in sorted(graph.items(), key=lambda i: rank(i[0]))))
    assert against_layering(graph) == [], "imports against the layering"


def test_imports_are_read_in_every_form():
    statements = [
        "from mnist_job.data.fetch import fetch",
        "from mnist_job.tracking import runs as tracking",
        "import mnist_job.training.driver",
        "from mnist_job.core import config as cfg",
    ]
    found = set().union(*(imported_modules(ast.parse(s).body[0]) for s in statements))
    assert found == {"data.fetch", "tracking.runs", "training.driver", "core.config"}


def test_the_check_can_fail():
    """Arrows up the layers are reported: a stage importing a later one, a library importing a stage."""
    graph = {
        "data.fetch": {"training.driver", "data.format"},
        "training.driver": {"data.fetch"},
        "evaluation.scoring": {"evaluation.evaluate"},
        "cli.commands": {"training.driver"},
    }
    assert against_layering(graph) == ["data.fetch -> training.driver", "evaluation.scoring -> evaluation.evaluate"]


def test_bench_stands_on_the_package_and_loopback_alone():
    """bench/ measures the package; what it shares with the tests (local services) is in loopback/, not tests/."""
    bench = [p for p in (PROJECT_DIR / "bench").rglob("*.py")]
    imports = {f"{p.name}: {name}" for p in bench for node in ast.walk(ast.parse(p.read_text()))
               for name in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
               if name.split(".")[0] == "tests"}
    assert bench and imports == set()
