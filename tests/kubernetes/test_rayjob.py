"""The RayJob through the real stack: kube-apiserver, the Job controller, the scheduler and the KubeRay
operator (upstream builds), pods on the node agent. The two ways the project is used, exactly as the README
says: `kubectl apply -f k8s/rayjob-cpu-kind.yaml` and `make deploy-rayjob PROFILE=cpu-kind`."""

from __future__ import annotations

import json
import re
import time

import pytest

from loopback.polling import wait_until
from mnist_job.tracking.runs import RUN_BASE_TAG, RUN_NAME_TAG
from tests.support.local_cluster import NAMESPACE, ROOT, mlflow_as_a_user, operator_source
from tests.support.training import EPOCH_METRICS

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

STATIC = "k8s/rayjob-cpu-kind.yaml"
STATIC_NAME = "mnist-train"  # the fixed RayJob name of the static manifests
JOB_TIMEOUT_S = 900
EPOCHS = 1  # values-cpu-kind.yaml: train.epochs
IMAGE = "kuberay-mnist:dev-cpu"  # the kind profile's image (the agent runs it: tests/support/node_agent/images.py)
seen: dict[str, str] = {}  # what a later test of this module compares with


def runs_started_as(mlflow, base: str) -> list[dict]:
    exp = mlflow.call("experiments/get-by-name?experiment_name=mnist")["experiment"]
    return mlflow.call("runs/search", {"experiment_ids": [exp["experiment_id"]],
                                       "filter": f"tags.`{RUN_BASE_TAG}` = '{base}'"}).get("runs", [])


def check_run(mlflow, run_name: str) -> dict:
    """The MLflow run of a RayJob: FINISHED, one value per epoch of each per-epoch metric, a test accuracy, and
    its registered version tagged with the image it ran."""
    exp = mlflow.call("experiments/get-by-name?experiment_name=mnist")["experiment"]
    runs = mlflow.call("runs/search", {"experiment_ids": [exp["experiment_id"]],
                                       "filter": f"tags.`{RUN_NAME_TAG}` = '{run_name}'"}).get("runs", [])
    assert len(runs) == 1, f"one MLflow run for {run_name}, found {len(runs)}"
    run = runs[0]
    assert run["info"]["status"] == "FINISHED", run["info"]
    for key in EPOCH_METRICS:
        steps = sorted(m["step"] for m in mlflow.metric_history(run["info"]["run_id"], key))
        assert steps == list(range(1, EPOCHS + 1)), f"{key}: steps {steps}"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test_accuracy"] > 0.8, metrics
    versions = mlflow.model_versions(run["info"]["run_id"])
    assert len(versions) == 1, f"one registered version for run {run['info']['run_id']}: {versions}"
    tags = {t["key"]: t["value"] for t in versions[0].get("tags", [])}
    assert tags.get("image") == IMAGE, f"the registered version names the image it ran: {tags}"
    return run


def check_ownership(cluster, rayjob: dict) -> None:
    """The operator's own objects: the RayCluster owned by the RayJob, the pods by the RayCluster, the submitter
    Job by the RayJob and Complete (the Job controller ran it)."""
    name, cluster_name = rayjob["metadata"]["name"], rayjob["status"]["rayClusterName"]
    ray_cluster = cluster.get("raycluster", cluster_name, "-n", NAMESPACE)
    assert [(o["kind"], o["name"]) for o in ray_cluster["metadata"]["ownerReferences"]] == [("RayJob", name)]
    pods = cluster.items("pods", "-n", NAMESPACE, "-l", f"ray.io/cluster={cluster_name}")
    assert pods, "the head pod stays until the cluster's TTL"
    for pod in pods:
        assert [(o["kind"], o["name"]) for o in pod["metadata"]["ownerReferences"]] == [("RayCluster", cluster_name)]
    job = cluster.get("job", name, "-n", NAMESPACE)
    assert [(o["kind"], o["name"]) for o in job["metadata"]["ownerReferences"]] == [("RayJob", name)]
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"]), job["status"]


def workers_of(cluster, cluster_name: str) -> list[dict]:
    return cluster.items("pods", "-n", NAMESPACE, "-l", f"ray.io/cluster={cluster_name},ray.io/node-type=worker")


def test_the_cluster_is_upstream_kubernetes_with_the_kuberay_operator(cluster):
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"] == "v1.35.4", version
    (node,) = cluster.items("nodes")
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
    crds = {c["metadata"]["name"] for c in cluster.items("crd")}
    assert {"rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"} <= crds
    # the operator runs under its own ServiceAccount, with exactly the RBAC of its Go module's config/rbac
    whoami = cluster.run(str(ROOT / ".tools/bin/kubectl"), "auth", "whoami", "-o", "json",
                         KUBECONFIG=str(cluster.state / "ray-operator.kubeconfig"))
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == \
        "system:serviceaccount:kuberay-system:kuberay-operator"
    assert (operator_source() / "config" / "rbac").is_dir()
    denied = cluster.kubectl("auth", "can-i", "delete", "nodes",
                             "--as=system:serviceaccount:kuberay-system:kuberay-operator", check=False)
    assert denied.stdout.strip() == "no", "the operator's RBAC does not reach nodes"


def test_kubectl_apply_of_the_static_manifest_runs_to_complete(cluster, mlflow):
    cluster.kubectl("apply", "-f", STATIC)
    rayjob = cluster.wait_succeeded(STATIC_NAME, JOB_TIMEOUT_S)
    check_ownership(cluster, rayjob)
    # deletion rules: the workers go at once when the job SUCCEEDED (ttl 0), the head stays for its TTL
    wait_until(lambda: not workers_of(cluster, rayjob["status"]["rayClusterName"]), 120,
               "the workers were not deleted after the job SUCCEEDED (DeleteWorkers, ttlSeconds 0)", interval=2)
    run = check_run(mlflow, STATIC_NAME)
    seen["static_run_id"] = run["info"]["run_id"]
    logs = cluster.kubectl("logs", f"job/{STATIC_NAME}", "-n", NAMESPACE, timeout=60).stdout
    assert "test accuracy" in logs, f"kubectl logs of the submitter shows the driver's output:\n{logs[-2000:]}"
    # the workers' pods pulled the dataset from the platform's MinIO (their image holds none)
    assert re.search(r"data: pulled \S+ from s3://", logs), logs[-3000:]


def test_the_static_manifest_applied_again_trains_a_new_run(cluster, mlflow):
    if "static_run_id" not in seen:
        pytest.skip("needs the first static run (the test before)")
    # as the README says: a finished RayJob is deleted first, then the same file is applied again
    cluster.kubectl("delete", "rayjob", STATIC_NAME, "-n", NAMESPACE, "--wait=true", timeout=180)
    cluster.kubectl("apply", "-f", STATIC)
    cluster.wait_succeeded(STATIC_NAME, JOB_TIMEOUT_S)
    runs = runs_started_as(mlflow, STATIC_NAME)
    assert len(runs) == 2 and all(r["info"]["status"] == "FINISHED" for r in runs), [r["info"] for r in runs]
    new = next(r for r in runs if r["info"]["run_id"] != seen["static_run_id"])
    assert new["info"]["run_name"].startswith(f"{STATIC_NAME}-"), "a new run under a derived name"


def test_make_deploy_rayjob_succeeds_and_the_cluster_goes_after_its_ttl(cluster, mlflow):
    ttl = 20
    started = time.monotonic()
    with mlflow_as_a_user(cluster) as user:  # where `mnist-job submit` logs the job's cost
        done = cluster.run("make", "deploy-rayjob", "PROFILE=cpu-kind", f"SET=lifecycle.deleteClusterAfterSeconds={ttl}",
                           timeout=JOB_TIMEOUT_S + 120, check=False, **user)
    print(f"make deploy-rayjob: exit {done.returncode} in {time.monotonic() - started:.0f} s\n{done.stdout[-1500:]}")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{cluster.diagnostics()}"
    (name,) = re.findall(rf"^RayJob {NAMESPACE}/(\S+): SUCCEEDED", done.stdout, re.MULTILINE)
    assert "runs with Ray token authentication" in done.stdout
    rayjob = cluster.get("rayjob", name, "-n", NAMESPACE)
    assert rayjob["status"]["jobStatus"] == "SUCCEEDED"
    run = check_run(mlflow, name)
    # mnist-job submit (which the script runs) logged what the job cost to the job's own run
    assert f"cost logged to MLflow run {run['info']['run_id']}" in done.stdout, done.stdout[-1500:]
    assert {m["key"] for m in run["data"]["metrics"]} >= {"cost_cpu_hours", "cost_gpu_hours", "cost_queue_wait_s"}
    cluster_name = rayjob["status"]["rayClusterName"]
    wait_until(lambda: cluster.kubectl("get", "raycluster", cluster_name, "-n", NAMESPACE, check=False).returncode != 0,
               ttl + 90, f"RayCluster {cluster_name} still there {ttl} s after the job ended (DeleteCluster rule)",
               interval=3)
    wait_until(lambda: not cluster.items("pods", "-n", NAMESPACE, "-l", f"ray.io/cluster={cluster_name}"), 60,
               "the RayCluster's pods outlived it (garbage collection)", interval=2)
