"""`make deploy-rayservice PROFILE=cpu-kind` on the real stack: the operator brings the RayService to Ready,
serving the champion (tests/kubernetes/conftest.py), and `POST /predict` through the API server's Service
proxy gets the right digits. It reads MLflow as the platform's serving user, which may read the model but write
nothing. With two replicas, deleting the pod of one under load fails at most the requests in flight at that
moment."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from loopback.polling import wait_until
from loopback.project_env import PROJECT_ENV
from tests.support.load import Load
from tests.support.local_cluster import NAMESPACE, PLATFORM_RELEASE, ROOT, MlflowReader

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def rayservice_removed_after(cluster):
    """The RayService's pods hold CPUs of the node that the next modules' RayJobs need: it goes after this one."""
    yield
    cluster.kubectl("delete", "rayservice", SERVE, "-n", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=180,
                    check=False)

SERVE = PROJECT_ENV["SERVE_RELEASE"]
PREDICT = f"/api/v1/namespaces/{NAMESPACE}/services/{SERVE}-serve-svc:8000/proxy/predict"


def test_make_deploy_rayservice_serves_the_champion_through_the_serve_service(cluster, mlflow, champion):
    started = time.monotonic()
    done = cluster.run("make", "deploy-rayservice", "PROFILE=cpu-kind", timeout=1200, check=False)
    print(f"make deploy-rayservice: exit {done.returncode} in {time.monotonic() - started:.0f} s\n{done.stdout[-1200:]}")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{cluster.diagnostics()}"
    assert "runs with Ray token authentication" in done.stdout
    # how to call it, once ready
    assert f"RayService {SERVE}: ready (Ready=True, " in done.stdout, done.stdout[-2000:]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{SERVE}-serve-svc 8000:8000" in done.stdout
    assert "localhost:8000/predict" in done.stdout and "http://localhost:8000/" in done.stdout

    images = np.load(ROOT / "data" / "mnist" / "test_images.npy")[:32]
    labels = np.load(ROOT / "data" / "mnist" / "test_labels.npy")[:32]
    status, body = cluster.through_api(PREDICT, json.dumps({"pixels": images.tolist()}).encode(), timeout=60)
    assert status == 200, body[:2000]
    digits = np.array([p["digit"] for p in json.loads(body)["predictions"]])
    assert len(digits) == 32 and (digits == labels).mean() >= 0.8, (digits, labels)
    status, body = cluster.through_api(PREDICT, b"{not json")
    assert status == 400 and b"JSON" in body, body[:500]

    # every pod of the RayService read the model as the serving user: its Secret at ~/.mlflow, not the training one
    pods = cluster.items("pods", "-n", NAMESPACE, "-l", f"kuberay-mnist/rayjob={SERVE}")
    assert {p["metadata"]["labels"]["ray.io/node-type"] for p in pods} == {"head", "worker"}, pods
    for pod in pods:
        secrets = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
        assert secrets == {f"{PLATFORM_RELEASE}-s3-training", f"{PLATFORM_RELEASE}-mlflow-serving"}, (
            pod["metadata"]["name"], secrets)


def test_the_serving_user_reads_the_champion_and_may_write_nothing(cluster, mlflow, champion):
    """The user of <platform>-mlflow-serving (what the RayService mounts), over MLflow's REST API: it reads the
    registered model, its champion alias and the version's run (the model's files are the experiment's), and every
    write to them is refused with 403."""
    serving = MlflowReader.as_user(cluster, f"{PLATFORM_RELEASE}-mlflow-serving")
    assert serving.user == "mnist-serving"
    assert serving.call("registered-models/alias?name=mnist-cnn&alias=champion")["model_version"] == champion
    assert serving.call("registered-models/get?name=mnist-cnn")["registered_model"]["name"] == "mnist-cnn"
    run_id = champion["run_id"]
    run = serving.call(f"runs/get?run_id={run_id}")["run"]
    experiment = run["info"]["experiment_id"]
    writes = {
        "move the champion alias": ("registered-models/alias", {"name": "mnist-cnn", "alias": "champion",
                                                                "version": champion["version"]}),
        "tag the registered model": ("registered-models/set-tag", {"name": "mnist-cnn", "key": "k", "value": "v"}),
        "add a model version": ("model-versions/create", {"name": "mnist-cnn", "source": champion["source"],
                                                          "run_id": run_id}),
        "log a metric to the champion's run": ("runs/log-metric", {"run_id": run_id, "key": "k", "value": 1.0,
                                                                   "timestamp": 0, "step": 0}),
        "create a run in the experiment": ("runs/create", {"experiment_id": experiment}),
        "tag the experiment": ("experiments/set-experiment-tag", {"experiment_id": experiment, "key": "k",
                                                                  "value": "v"}),
    }
    refused = {what: serving.status(path, body) for what, (path, body) in writes.items()}
    assert refused == dict.fromkeys(writes, 403), refused
    after = mlflow.call("registered-models/alias?name=mnist-cnn&alias=champion")["model_version"]
    assert after == champion and "k" not in {t["key"] for t in mlflow.call("registered-models/get?name=mnist-cnn")[
        "registered_model"].get("tags", [])}


def serve_replicas(cluster) -> list[dict]:
    """The classifier's replicas as Ray Serve places them (state, node_ip), from the head's Serve REST API."""
    apps = cluster.ray_dashboard(SERVE, "/api/serve/applications/")["applications"]
    return apps["mnist"]["deployments"]["DigitClassifier"]["replicas"]


def two_running(cluster) -> list[dict] | None:
    running = [r for r in serve_replicas(cluster) if r["state"] == "RUNNING"]
    return running if len(running) == 2 else None


def pod_at(cluster, ip: str) -> str:
    """The RayService's live pod whose IP is ``ip``: a Ray node's IP is its pod's."""
    pods = cluster.items("pods", "-n", NAMESPACE, "-l", f"kuberay-mnist/rayjob={SERVE}")
    (name,) = [p["metadata"]["name"] for p in pods
               if p["status"].get("podIP") == ip and not p["metadata"].get("deletionTimestamp")]
    return name


def two_replicas_on_two_pods(cluster) -> list[dict]:
    # maxReplicasPerNode=1: one replica per worker pod, else Serve may put both on one pod.
    done = cluster.run("make", "deploy-rayservice", "PROFILE=cpu-kind",
                       "SET=rayService.replicas=2 rayService.maxReplicasPerNode=1", timeout=900, check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{cluster.diagnostics()}"
    # Ready only says one endpoint answers: the second replica (a serveConfigV2 change, applied in place) may
    # still be starting.
    replicas = wait_until(lambda: two_running(cluster), 300,
                          lambda: f"not two RUNNING replicas: {serve_replicas(cluster)}", interval=2)
    assert replicas[0]["node_ip"] != replicas[1]["node_ip"], f"Serve spreads replicas over nodes: {replicas}"
    return replicas


def gone(cluster, pod: str) -> bool:
    return not cluster.kubectl("get", "pod", pod, "-n", NAMESPACE, "--ignore-not-found", "-o", "name").stdout.strip()


def test_deleting_the_pod_of_a_serve_replica_under_load_fails_only_requests_in_flight(cluster, champion):
    replicas = two_replicas_on_two_pods(cluster)
    victim = pod_at(cluster, replicas[0]["node_ip"])
    images = np.load(ROOT / "data" / "mnist" / "test_images.npy")[:4]
    body = json.dumps({"pixels": images.tolist()}).encode()
    # ~7 requests/s for ~45 s: the kill comes ~6 s in, and the load outlasts the pod's termination grace
    # period (30 s), so it sees both Ray's drain on SIGTERM and the pod's end.
    load = Load(lambda: cluster.through_api(PREDICT, body, timeout=30), total=300, threads=4, interval=0.6).start()
    wait_until(lambda: load.done() >= 40, 120, "the load did not get going")
    killed = time.monotonic()
    cluster.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false")
    ended = wait_until(lambda: gone(cluster, victim) and time.monotonic(), 120, f"pod {victim} still there", 0.5)
    outcomes = load.join(300)

    in_flight = [o for o in outcomes if o.in_flight(killed)]
    failed = [o for o in outcomes if not o.ok]
    print(f"\nkilled {victim} (a replica on {replicas[0]['node_ip']}); gone {ended - killed:.1f} s later; "
          f"{len(outcomes)} requests over {outcomes[-1].end - outcomes[0].start:.0f} s, {len(in_flight)} in flight "
          f"at the kill, {sum(o.in_flight(ended) for o in outcomes)} when it was gone, {len(failed)} failed, "
          f"{sum(o.start > ended for o in outcomes)} started after it was gone")
    for o in failed:
        print(f"  failed: {o.start - killed:+.2f} .. {o.end - killed:+.2f} s status {o.status} {o.detail[:160]}")
    assert len(outcomes) == 300 and outcomes[-1].start > ended, "the load outlasts the pod"
    assert all(o.ok for o in outcomes[-50:]), [(o.status, o.detail) for o in outcomes[-50:] if not o.ok]
    assert len(failed) <= len(in_flight), "more failures than requests in flight at the kill"

    recovered = wait_until(lambda: two_running(cluster) and time.monotonic(), 300,
                           lambda: f"Serve did not get back to two replicas: {serve_replicas(cluster)}", interval=2)
    print(f"two RUNNING replicas again {recovered - killed:.0f} s after the kill")
