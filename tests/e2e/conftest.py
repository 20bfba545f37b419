"""Fixtures of the KubeRay-faithful end-to-end harness: rendered charts, the platform, a Ray cluster.

Everything is session-scoped (one platform and one Ray cluster serve every e2e test) and
stopped by PID in the fixtures' finalizers, also when a test fails. Every pod runs in its own
sandbox (tests/support/kuberay/sandbox.py), so the root lives under /var/tmp, not /tmp (each
pod has its own /tmp). Logs stay under the printed root (/var/tmp/kuberay-e2e-*/logs); the pods'
folders are removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import kuberay as kl


@dataclass
class Session:
    root: Path
    subs: kl.Substitutions = field(default_factory=kl.Substitutions)
    phases: kl.Phases = field(default_factory=kl.Phases)
    rayjob: dict | None = None
    platform_view: kl.PlatformView | None = None

    @property
    def logs(self) -> Path:
        return self.root / "logs"


@pytest.fixture(scope="session")
def e2e() -> Session:
    # Not under /tmp: every pod mounts its own tmpfs there. Short, for Ray's socket paths (< 108 bytes).
    root = Path(tempfile.mkdtemp(prefix="kuberay-e2e-", dir="/var/tmp"))
    (root / "logs").mkdir()
    session = Session(root)
    print(f"\ne2e: root {root} (logs in {root / 'logs'})", flush=True)
    with session.phases.run("render the charts (RayJob cpu-kind, platform dev) + static contract checks"):
        session.rayjob, docs = kl.render_all(session.subs)
        session.platform_view = kl.PlatformView(docs)
        kl.preflight(session.rayjob, session.platform_view)
    yield session
    for pattern in ("pods", "pvcs", "volumes", "interpreter-stage", "dvc-push"):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)
    print(f"\ne2e: logs kept in {root / 'logs'}", flush=True)
    print(session.subs.render(), flush=True)
    print(session.phases.render(), flush=True)


@pytest.fixture(scope="session")
def local_platform(e2e: Session):
    platform = kl.start_platform(e2e.platform_view, e2e.root, e2e.subs, e2e.phases)
    try:
        yield platform
    finally:
        with e2e.phases.run("teardown: mlflow server, S3 stand-in"):
            platform.stop()


@pytest.fixture(scope="session")
def ray_cluster(e2e: Session, local_platform):
    with e2e.phases.run("ray cluster: head + worker pods (KubeRay's ray start, pod sandboxes)"):
        plan = kl.plan_cluster(e2e.rayjob, e2e.platform_view, local_platform.services, e2e.subs)
        pods = kl.plan_pods(e2e.rayjob, plan, e2e.root, e2e.subs)
        cluster = kl.start_ray(e2e.rayjob, pods, plan, e2e.logs, e2e.subs)
    try:
        yield cluster
    finally:
        with e2e.phases.run("teardown: ray nodes"):
            cluster.stop()
