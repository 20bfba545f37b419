"""scripts/check-node-capacity.py, and the kind profile against a laptop kind node.

Assumed laptop node (values-cpu-kind.yaml): 4 CPUs and 8 GiB for Docker's VM; kind
runs its own control plane on it. The numbers below are what a fresh single-node
kind cluster requests (kind's control-plane pods) and what the KubeRay operator
chart 1.7.0 asks for (limits 100m / 512Mi, no requests: they default to the limits).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from manifest_helpers import PROFILES, ROOT

SCRIPT = ROOT / "scripts" / "check-node-capacity.py"
KIND_SYSTEM = {  # name: (cpu, memory) requests of a fresh kind v0.2x node
    "coredns-1": ("100m", "70Mi"),
    "coredns-2": ("100m", "70Mi"),
    "etcd": ("100m", "100Mi"),
    "kindnet": ("100m", "50Mi"),
    "kube-apiserver": ("250m", None),
    "kube-controller-manager": ("200m", None),
    "kube-scheduler": ("100m", None),
}
OPERATOR = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "kuberay-operator", "namespace": "kuberay-system"},
    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "m", "resources": {"limits": {"cpu": "100m", "memory": "512Mi"}}}]}}},
}


def node(name, cpu, memory, taints=()):
    return {"metadata": {"name": name}, "spec": {"taints": list(taints)}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


def pod(ns, name, cpu, memory, phase="Running"):
    req = {"cpu": cpu} | ({"memory": memory} if memory else {})
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"containers": [{"name": "c", "resources": {"requests": req}}]}, "status": {"phase": phase}}


@pytest.fixture
def kind_inputs(tmp_path, render):
    """Writes the kind profile's manifests (platform-dev, RayJob cpu-kind, operator)
    and a fresh kind node's running pods; returns a function running the check."""
    manifests = []
    for profile in ("platform-dev", "rayjob-cpu-kind"):
        path = tmp_path / f"{profile}.yaml"
        path.write_text(yaml.safe_dump_all(render(profile)))
        manifests.append(str(path))
    (tmp_path / "operator.yaml").write_text(yaml.safe_dump(OPERATOR))
    manifests.append(str(tmp_path / "operator.yaml"))
    pods = [pod("kube-system", n, c, m) for n, (c, m) in KIND_SYSTEM.items()]
    pods += [pod("mnist", "mnist-platform-minio-old", "8", "64Gi"), pod("kube-system", "done", "8", "64Gi", phase="Succeeded")]
    (tmp_path / "pods.json").write_text(json.dumps({"items": pods}))

    def check(*nodes):
        (tmp_path / "nodes.json").write_text(json.dumps({"items": list(nodes)}))
        cmd = [sys.executable, str(SCRIPT), "--nodes", str(tmp_path / "nodes.json"), "--pods", str(tmp_path / "pods.json"),
               "--exclude-namespace", "mnist", "--exclude-namespace", "kuberay-system", *manifests]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    return check


def test_kind_profile_fits_a_laptop_node(kind_inputs):
    proc = kind_inputs(node("kind-control-plane", "4", "8Gi"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # everything is counted: 7 kind pods, MinIO, MLflow, bucket job, MLflow users job, operator, head, 2 workers,
    # submitter
    assert "16 pods request" in proc.stdout


def test_kind_profile_leaves_memory_headroom(kind_inputs):
    """About 6 GiB of requests: it fits in 7 GiB too, so an 8 GiB node has room for limits to burst."""
    proc = kind_inputs(node("kind-control-plane", "4", "7Gi"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "cpu,memory,problem",
    [("2", "8Gi", "CPU: the pods request"), ("4", "4Gi", "memory: the pods request")],
)
def test_too_small_a_node_is_refused_with_what_to_change(kind_inputs, cpu, memory, problem):
    proc = kind_inputs(node("kind-control-plane", cpu, memory))
    assert proc.returncode == 1
    assert problem in proc.stderr
    assert "charts/kuberay-mnist-rayjob/values-cpu-kind.yaml" in proc.stderr and "Docker Desktop" in proc.stderr


def test_a_pod_larger_than_any_node(kind_inputs):
    """Two small nodes together have enough, but a worker pod fits on neither."""
    proc = kind_inputs(node("a", "3", "8Gi"), node("b", "3", "1Gi"), node("cp", "64", "256Gi", [{"key": "x", "effect": "NoSchedule"}]))
    assert proc.returncode == 0, proc.stderr
    proc = kind_inputs(node("a", "3", "1200Mi"), node("b", "3", "8Gi"))
    assert proc.returncode == 0, proc.stderr
    proc = kind_inputs(node("a", "3", "1Gi"), node("b", "3", "1Gi"), node("c", "3", "1Gi"), node("d", "3", "1Gi"),
                       node("e", "3", "1Gi"), node("f", "3", "1Gi"), node("g", "3", "1Gi"), node("h", "3", "1Gi"))
    assert proc.returncode == 1
    assert "more than the largest node" in proc.stderr and "cpu-workers" in proc.stderr


def test_bad_input_exits_2(tmp_path):
    (tmp_path / "nodes.json").write_text("{not json")
    (tmp_path / "m.yaml").write_text("kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: {requests: {cpu: lots}}}]}\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--nodes", str(tmp_path / "nodes.json"), str(tmp_path / "m.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid input" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "nodes.json").write_text(json.dumps({"items": [node("n", "4", "8Gi")]}))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--nodes", str(tmp_path / "nodes.json"), str(tmp_path / "m.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "'lots'" in proc.stderr


def test_profiles_used_here_exist():
    assert {"platform-dev", "rayjob-cpu-kind"} <= set(PROFILES)
