"""Running scripts/deploy-rayjob.sh and scripts/deploy-rayservice.sh against
tests/support/fake_kubectl.py: the platform's Secrets, a head pod as KubeRay makes it,
and a status sequence; no Kubernetes API server can run on these machines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import fake_kubectl

ROOT = Path(__file__).resolve().parents[2]
DEV_SECRET = "mnist-platform-dev-s3-credentials"  # the kind platform's root keys (values-dev.yaml): no Ray pod reads it
S3_SECRET = "mnist-platform-s3-training"  # the training workload's own S3 user (the platform's workloads.trainingSecret)
MLFLOW_SECRET = "mnist-platform-mlflow-training"  # the platform's MLflow training user (templates/mlflow-auth.yaml)
DEV_MARK = {"kuberay-mnist/development-credentials": "true"}


def head_pod(name: str, auth_mode: str | None = "token", phase: str = "Running") -> dict:
    """The head pod of object `name` as KubeRay makes it: the chart's labels plus ray.io/node-type, RAY_AUTH_MODE in the env."""
    env = {"RAY_AUTH_MODE": auth_mode} if auth_mode is not None else {}
    return {"name": f"{name}-abcde-head-xyz12", "phase": phase, "env": env,
            "labels": {"kuberay-mnist/rayjob": name, "ray.io/node-type": "head", "ray.io/cluster": f"{name}-abcde"}}


def deploy_with(script: str, tmp_path: Path, name: str, statuses: list[dict], *args: str,
                env: dict[str, str] | None = None, **state) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `script` (a path under scripts/) with a fake kubectl whose object moves through `statuses`.

    State defaults: the platform's three Secrets (the root keys marked as development credentials)
    and a running head with token auth; keyword arguments replace them (see fake_kubectl).
    Returns the finished process and the fake's final state (applied manifests, deletions, polls).
    """
    bin_dir = tmp_path / "bin"
    state = {"secrets": {DEV_SECRET: DEV_MARK, S3_SECRET: {}, MLFLOW_SECRET: {}}, "pods": [head_pod(name)], **state}
    state_path = fake_kubectl.install(bin_dir, {"statuses": statuses, **state})
    tools = ROOT / ".tools" / "bin"
    full_env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
                "KUBECTL": str(bin_dir / "kubectl"), "FAKE_KUBECTL_STATE": str(state_path),
                "POLL_S": "1", "TIMEOUT_S": "20", **(env or {})}
    proc = subprocess.run(["bash", str(ROOT / script), *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=60)
    return proc, fake_kubectl.load(state_path)
