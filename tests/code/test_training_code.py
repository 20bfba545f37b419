"""The training code's shape: its phases are functions short enough to read at once, and what the driver
decides for the workers (mnist_job/training/planning.py) is decided in one place.

Read from the source (ast), like tests/code/test_import_graph.py: no training runs here.
"""

from __future__ import annotations

import ast

from loopback.services import PROJECT_DIR

PACKAGE = PROJECT_DIR / "mnist_job"
TRAINING = PACKAGE / "training"
LONGEST = 40  # lines, decorators and docstring included: what reads at once on a screen


def functions(folder):
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                yield path.relative_to(PROJECT_DIR), node, node.end_lineno - first + 1


def test_every_training_function_reads_at_once():
    long = [f"{path}:{node.lineno} {node.name} ({lines} lines)" for path, node, lines in functions(TRAINING)
            if lines > LONGEST]
    assert long == [], f"split these into their phases (at most {LONGEST} lines each): {long}"


def test_the_per_worker_batch_is_computed_in_the_plan_only():
    """``batch_size // workers`` in one place (planning.plan_batches); the loop takes ``plan.batch``."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv) and "batch_size" in ast.unparse(node.left):
                sites.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(sites) == 1 and sites[0].startswith("training/planning.py:"), sites


def test_the_driver_builds_one_plan_and_the_workers_read_no_config_by_key():
    built = [f"{path}:{node.lineno}" for path in sorted(PACKAGE.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) == "WorkerPlan"]
    assert len(built) == 1 and built[0].startswith(str(TRAINING / "driver.py")), built
    loop = ast.parse((TRAINING / "loop.py").read_text())
    by_key = [ast.unparse(n) for n in ast.walk(loop) if isinstance(n, ast.Subscript)
              and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str) and "config" in ast.unparse(n.value)]
    assert by_key == [], by_key
