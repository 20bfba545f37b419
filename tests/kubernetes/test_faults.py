"""Faults a cluster has, through the real API: each ends with the RayJob Complete and exactly one metric value per
epoch in MLflow."""

from __future__ import annotations

import subprocess
import time

import pytest

from loopback.polling import wait_until
from mnist_job.tracking.runs import RUN_NAME_TAG
from tests.support.local_cluster import NAMESPACE, ROOT
from tests.support.training import EPOCH_METRICS

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

EPOCHS = 4  # long enough to lose a worker in the middle
JOB_TIMEOUT_S = 900
OUTAGE_S = 20  # long enough for the watches and the deploy script's polls to fail


def start_deploy(cluster, *sets: str) -> subprocess.Popen:
    """scripts/deploy-rayjob.sh as `make deploy-rayjob` runs it, with chart values of this test's."""
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.Popen(["bash", "scripts/deploy-rayjob.sh", "--profile", "cpu-kind", "--", *args], cwd=ROOT,
                            env=cluster.env(NAMESPACE=NAMESPACE), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def rayjob_names(cluster) -> set[str]:
    return {j["metadata"]["name"] for j in cluster.items("rayjobs", "-n", NAMESPACE)}


def run_of(mlflow, run_name: str) -> dict | None:
    exp = mlflow.call("experiments/get-by-name?experiment_name=mnist")["experiment"]
    runs = mlflow.call("runs/search", {"experiment_ids": [exp["experiment_id"]],
                                       "filter": f"tags.`{RUN_NAME_TAG}` = '{run_name}'"}).get("runs", [])
    return runs[0] if runs else None


def epochs_logged(mlflow, run_name: str) -> int:
    run = run_of(mlflow, run_name)
    return len(mlflow.metric_history(run["info"]["run_id"], "val_accuracy")) if run else 0


def worker_names(cluster, cluster_name: str) -> dict[str, str]:
    pods = cluster.items("pods", "-n", NAMESPACE, "-l", f"ray.io/cluster={cluster_name},ray.io/node-type=worker")
    return {p["metadata"]["name"]: p["status"].get("phase", "") for p in pods}


def run_with_fault(cluster, mlflow, epochs: int, fault, *sets: str) -> str:
    """`make deploy-rayjob` of an `epochs`-epoch job; `fault(rayjob name, RayCluster name)` once its first epoch
    is in MLflow (the job still training then); then the deploy must succeed with exactly one value per epoch of
    every per-epoch metric."""
    started = time.monotonic()
    earlier = rayjob_names(cluster)  # other tests' RayJobs stay until their TTL
    deploy = start_deploy(cluster, rf"job.set.train\.epochs={epochs}", *sets)
    name = None
    try:
        new = wait_until(lambda: (rayjob_names(cluster) - earlier) if deploy.poll() is None
                         else pytest.fail(deploy.stdout.read()), 120, "no RayJob appeared")
        (name,) = new
        wait_until(lambda: epochs_logged(mlflow, name) >= 1, 600, f"{name}: no epoch logged", interval=2)
        assert epochs_logged(mlflow, name) < epochs, "the job ended before the fault"
        fault(name, cluster.get("rayjob", name, "-n", NAMESPACE)["status"]["rayClusterName"])
        print(f"fault done at {time.monotonic() - started:.0f} s")
        out, _ = deploy.communicate(timeout=JOB_TIMEOUT_S)
    finally:
        if deploy.poll() is None:
            deploy.kill()
        if name and deploy.returncode != 0:  # a job left running would hold the node's CPUs for the next tests
            cluster.kubectl("delete", "rayjob", name, "-n", NAMESPACE, "--wait=false", check=False)
    print(f"deploy: exit {deploy.returncode} in {time.monotonic() - started:.0f} s\n{out[-1500:]}")
    assert deploy.returncode == 0, f"{out[-3000:]}\n{cluster.diagnostics()}"
    # Ray Train went on from the last checkpoint: exactly one value per epoch, none repeated by a restart
    run = run_of(mlflow, name)
    assert run["info"]["status"] == "FINISHED"
    for key in EPOCH_METRICS:
        steps = sorted(m["step"] for m in mlflow.metric_history(run["info"]["run_id"], key))
        assert steps == list(range(1, epochs + 1)), f"{key}: steps {steps}"
    return out


def test_a_worker_pod_deleted_during_training_is_recreated_and_training_resumes(cluster, mlflow):
    def delete_a_worker(name: str, cluster_name: str) -> None:
        before = worker_names(cluster, cluster_name)
        victim = sorted(before)[0]
        cluster.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false")
        print(f"deleted worker pod {victim} after epoch 1")
        # the operator replaces it: a pod of another name, Running, while the job goes on
        wait_until(lambda: any(n not in before and phase == "Running" for n, phase in
                               worker_names(cluster, cluster_name).items()), 180,
                   f"the operator did not replace worker pod {victim}", interval=2)

    run_with_fault(cluster, mlflow, EPOCHS, delete_a_worker)


def test_the_control_plane_stopped_and_restarted_during_training_changes_nothing(cluster, mlflow):
    # The KubeRay operator and the API server down together for 20 s after epoch 1 of 3, then the API server
    # and the operator started again. KubeRay keeps no state of its own: the new operator reads the RayJob,
    # RayCluster and Job back. Without the API server the pods run on; the controllers, the node agent and
    # submit's wait reconnect. (One job for both: a job is 3-4 min here.)
    out = run_with_fault(cluster, mlflow, 3,
                         lambda name, _: cluster.outage("ray-operator", "kube-apiserver", seconds=OUTAGE_S))
    assert "cannot read RayJob" in out, "mnist-job submit says it lost the API server, and waits on"


def running_pods(cluster) -> dict[str, tuple]:
    """Each Running pod of the namespace: its IP and its containers' restart counts and start times."""
    pods = cluster.items("pods", "-n", NAMESPACE, "--field-selector=status.phase=Running")
    return {p["metadata"]["name"]: (p["status"]["podIP"], [(c["restartCount"], c["state"].get("running"))
                                                           for c in p["status"]["containerStatuses"]]) for p in pods}


def test_the_node_agent_stopped_and_restarted_during_training_restarts_no_container(cluster, mlflow):
    # a kubelet's restart leaves the containers to the runtime: the new agent adopts every running pod
    # (tests/support/node_agent/pod_state.py), so the head, the workers, the submitter, MLflow and MinIO (whose
    # buckets live in memory) run on
    seen = {}

    def restart_the_agent(name: str, cluster_name: str) -> None:
        seen["before"] = running_pods(cluster)
        cluster.outage("node-agent", seconds=OUTAGE_S)
        log = cluster.state / "logs" / "node-agent.log"
        wait_until(lambda: log.read_text().count("adopted from an earlier agent") >= len(seen["before"]), 60,
                   lambda: f"not every pod adopted:\n{log.read_text()[-3000:]}", interval=1)
        seen["after"], seen["cluster"] = running_pods(cluster), cluster_name
        print(f"pods before the agent's restart and after: {seen['before']}")

    run_with_fault(cluster, mlflow, 2, restart_the_agent)
    assert seen["after"] == seen["before"], "the same pods, IPs, start times and restart counts"
    ray_pods = [containers for pod, (_, containers) in seen["after"].items() if pod.startswith(seen["cluster"])]
    assert ray_pods and all(count == 0 for containers in ray_pods for count, _ in containers), seen["after"]


def test_the_head_pod_deleted_during_training_resumes_from_the_last_checkpoint(cluster, mlflow):
    """Without GCS fault tolerance the head takes the Ray job with it. KubeRay creates a new head pod, the
    submitter Job's retry submits the job again, and the workers rejoin the new head when their raylets give up
    on the old one; the driver waits for their CPUs (mnist_job/training/planning.py, CLUSTER_JOIN_S) and Ray
    Train restores the last checkpoint. Should that attempt fail anyway, lifecycle.backoffLimit=1 lets KubeRay
    retry the whole RayJob on a new RayCluster, which resumes the same way (same run name)."""
    seen = {}

    def delete_the_head(name: str, cluster_name: str) -> None:
        (head,) = cluster.items("pods", "-n", NAMESPACE, "-l", f"ray.io/cluster={cluster_name},ray.io/node-type=head")
        # at once, as a crashed node loses it: with the 30 s grace period an idle machine finishes the epochs
        # left before the head goes, and the fault would hit the final logging instead of the training
        cluster.kubectl("delete", "pod", head["metadata"]["name"], "-n", NAMESPACE, "--grace-period=0", "--force",
                        "--wait=false")
        seen["name"] = name
        print(f"deleted head pod {head['metadata']['name']} after epoch 1")

    run_with_fault(cluster, mlflow, 4, delete_the_head, "lifecycle.backoffLimit=1")
    status = cluster.get("rayjob", seen["name"], "-n", NAMESPACE)["status"]
    print(f"RayJob {seen['name']}: failed attempts {status.get('failed', 0)}, succeeded {status.get('succeeded', 0)}")
    assert status.get("succeeded") == 1 and status.get("failed", 0) <= 1, status
