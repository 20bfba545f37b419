"""`mnist-job submit` on the real stack: the user's manifest applied through the API server, followed to its end,
its exit code the job's result, and each failure's first cause in plain words (mnist_job/cluster/).

Each case is k8s/rayjob-cpu-kind.yaml under its own name with one change that makes the failure happen for real
(the scheduler, the node agent's image pull and memory limits, KubeRay's deadline, the driver itself); each RayJob
is deleted after its test, so its pods free the node."""

from __future__ import annotations

import re

import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity

from loopback.polling import wait_until
from tests.support.local_cluster import NAMESPACE, MlflowReader, edited_manifest, mlflow_as_a_user

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

STATIC = "k8s/rayjob-cpu-kind.yaml"


def renamed(name: str, change=None):
    def edit(rayjob: dict) -> None:
        rayjob["metadata"]["name"] = name
        if change:
            change(rayjob)
    return edit


def head(rayjob: dict) -> dict:
    return rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def submit(cluster, tmp_path, name: str, change=None, *flags: str, timeout: float = 900):
    path, _ = edited_manifest(STATIC, renamed(name, change), tmp_path)
    try:
        done = cluster.run("mnist-job", "submit", "-f", str(path), "--wait", *flags, timeout=timeout, check=False)
        print(f"\n$ mnist-job submit -f <{name}> --wait {' '.join(flags)}: exit {done.returncode}\n"
              + "\n".join(said(done).splitlines()[-4:]))
        return done
    finally:
        cluster.kubectl("delete", "rayjob", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=false", check=False)


def said(done) -> str:
    return done.stdout + done.stderr


SMALL = (" --set train.run_name=mnist-submit-ok --set data.train_subset=2000 --set data.validation_size=500"
         " --set data.test_subset=500 --set mlflow.register_min_accuracy=1.0")  # a short run, not registered


def test_a_job_that_trains_exits_0_with_the_drivers_lines_and_its_cost_in_mlflow(cluster, tmp_path):
    def small(rayjob):
        rayjob["spec"]["entrypoint"] += SMALL

    path, _ = edited_manifest(STATIC, renamed("mnist-submit-ok", small), tmp_path)
    try:
        with mlflow_as_a_user(cluster) as user:  # the cost goes to the run through the user's port-forward
            done = cluster.run("mnist-job", "submit", "-f", str(path), "--wait", timeout=900, check=False, **user)
        out = said(done)
        print(f"\n$ mnist-job submit -f <mnist-submit-ok> --wait: exit {done.returncode}\n" + out[out.find("RayJob mnist/"):])
        assert done.returncode == 0, out[-4000:]
        assert "submitted to https://" in out and "rayjob/mnist-submit-ok" in out
        assert "test accuracy" in out and "run id: " in out, "the driver's lines, followed from the submitter's logs"
        assert "RayJob mnist/mnist-submit-ok: SUCCEEDED (deployment=Complete job=SUCCEEDED" in out
        charged = cost_checked_against_the_pods(cluster, out)
    finally:
        cluster.kubectl("delete", "rayjob", "mnist-submit-ok", "-n", NAMESPACE, "--ignore-not-found", "--wait=false",
                        check=False)
    mlflow = MlflowReader.of(cluster)
    run = mlflow.run_named("mnist", "mnist-submit-ok")
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["cost_cpu_hours"] == pytest.approx(charged, abs=1e-4) and metrics["cost_gpu_hours"] == 0
    assert 0 <= metrics["cost_queue_wait_s"] <= metrics["cost_start_wait_s"] < 600
    listed = mlflow.call(f"artifacts/list?run_id={run['info']['run_id']}&path=submit")
    assert {f["path"] for f in listed["files"]} == {"submit/rayjob.yaml", "submit/images.json"}, listed


POD_CHARGE = re.compile(r"pod (\S+): ([\d.]+) CPU x (\d+) s \((\d\d:\d\d:\d\d) -> (\d\d:\d\d:\d\d) UTC\)")


def cost_checked_against_the_pods(cluster, out: str) -> float:
    """The CPU-hours submit printed, each pod's line checked against the API's own timestamps where the pod is
    still there (the head and the submitter: the workers are deleted as the job succeeds)."""
    total = float(re.search(r"cost: ([\d.]+) CPU-hours, ([\d.]+) GPU-hours over (\d+) pods", out).group(1))
    charges = {m[0]: m[1:] for m in POD_CHARGE.findall(out)}
    assert len(charges) == 4, "head, two workers and the submitter: " + out[-2000:]
    assert total == pytest.approx(sum(float(cpu) * int(s) for cpu, s, *_ in charges.values()) / 3600, abs=2e-4)
    end = cluster.get("rayjob", "mnist-submit-ok", "-n", NAMESPACE)["status"]["endTime"]
    pods = cluster.items("pods", "-n", NAMESPACE, "-l", "ray.io/node-type=head") \
        + cluster.items("pods", "-n", NAMESPACE, "-l", "batch.kubernetes.io/job-name=mnist-submit-ok")
    checked = [p for p in pods if p["metadata"]["name"] in charges]
    assert len(checked) == 2, [p["metadata"]["name"] for p in pods]
    for pod in checked:
        cpu, _, start, stop = charges[pod["metadata"]["name"]]
        state = pod["status"]["containerStatuses"][0]["state"]
        started, finished = (state.get("running") or state["terminated"])["startedAt"], \
            (state.get("terminated") or {}).get("finishedAt", end)
        assert (start, stop) == (started[11:19], finished[11:19]), pod["metadata"]["name"]
        assert float(cpu) == float(parse_quantity(pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]))
    return total


def test_an_image_the_node_cannot_pull_is_named(cluster, tmp_path):
    def unpullable(rayjob):
        head(rayjob)["image"] = "example.invalid/unpullable:1"

    done = submit(cluster, tmp_path, "mnist-submit-image", unpullable, "--stuck-after", "15", timeout=300)
    assert done.returncode == 1, said(done)[-3000:]
    assert "cause: image example.invalid/unpullable:1 cannot be pulled" in done.stdout, said(done)[-3000:]
    assert "ErrImagePull" in done.stdout


def test_a_pod_no_node_can_hold_is_named_with_the_schedulers_words(cluster, tmp_path):
    def too_big(rayjob):
        head(rayjob)["resources"]["requests"]["cpu"] = "64"
        head(rayjob)["resources"]["limits"]["cpu"] = "64"

    done = submit(cluster, tmp_path, "mnist-submit-cpu", too_big, "--stuck-after", "15", timeout=300)
    assert done.returncode == 1, said(done)[-3000:]
    assert "cannot be scheduled: 0/1 nodes are available" in done.stdout and "Insufficient cpu" in done.stdout, \
        said(done)[-3000:]


def test_a_resourcequota_refusal_is_named(cluster, tmp_path):
    """A quota on GPUs only (the platform's pods ask for none): KubeRay's head pod is refused at admission, the
    RayJob stays Initializing, and submit names the quota's own words."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "submit-test-no-gpus"},
             "spec": {"hard": {"requests.nvidia.com/gpu": "0"}}}
    (tmp_path / "quota.yaml").write_text(yaml.safe_dump(quota))
    cluster.kubectl("apply", "-f", str(tmp_path / "quota.yaml"), "-n", NAMESPACE)
    try:  # the quota controller fills its status before admission enforces it
        wait_until(lambda: cluster.get("resourcequota", "submit-test-no-gpus", "-n", NAMESPACE).get("status", {})
                   .get("hard"), 60, "the ResourceQuota has no status", interval=1)

        def one_gpu(rayjob):
            for kind in ("requests", "limits"):
                head(rayjob)["resources"][kind]["nvidia.com/gpu"] = "1"

        done = submit(cluster, tmp_path, "mnist-submit-quota", one_gpu, "--stuck-after", "15", timeout=300)
    finally:
        cluster.kubectl("delete", "resourcequota", "submit-test-no-gpus", "-n", NAMESPACE, "--ignore-not-found")
    assert done.returncode == 1, said(done)[-3000:]
    assert "cause: a ResourceQuota refused a pod of RayCluster mnist-submit-quota-" in done.stdout, said(done)[-3000:]
    assert "exceeded quota: submit-test-no-gpus" in done.stdout, said(done)[-3000:]
    assert "cost: 0.0000 CPU-hours, 0.0000 GPU-hours over 0 pods" in done.stdout, "no pod ever ran"
    assert "cost not logged to MLflow: set MLFLOW_TRACKING_URI" in done.stdout, "no tracking URI: said how"


def test_a_head_running_without_token_auth_is_refused_and_deleted(cluster, tmp_path):
    """KubeRay keeps a RAY_AUTH_MODE the manifest sets: this head really runs without Ray's token
    authentication, and submit refuses it (exit 4) and deletes the RayJob."""
    def no_auth(rayjob):
        head(rayjob).setdefault("env", []).append({"name": "RAY_AUTH_MODE", "value": "disabled"})

    done = submit(cluster, tmp_path, "mnist-submit-noauth", no_auth, timeout=300)
    assert done.returncode == 4, said(done)[-3000:]
    assert "runs without Ray token authentication (RAY_AUTH_MODE=disabled, expected token)" in done.stdout, \
        said(done)[-3000:]
    assert "RayJob mnist/mnist-submit-noauth: REFUSED" in done.stdout
    wait_until(lambda: cluster.kubectl("get", "rayjob", "mnist-submit-noauth", "-n", NAMESPACE, check=False)
               .returncode != 0, 60, "the refused RayJob was not deleted", interval=1)


def test_a_driver_that_fails_exits_1_with_its_own_error(cluster, tmp_path):
    def bad_epochs(rayjob):
        rayjob["spec"]["entrypoint"] += " --set train.epochs=0"

    done = submit(cluster, tmp_path, "mnist-submit-driver", bad_epochs, timeout=600)
    assert done.returncode == 1, said(done)[-3000:]
    assert "FAILED (deployment=" in done.stdout and "job=FAILED" in done.stdout, said(done)[-3000:]
    assert "cause: the driver failed" in done.stdout and "train.epochs" in done.stdout, said(done)[-3000:]


def test_a_submitter_over_its_memory_limit_is_named_oomkilled(cluster, tmp_path):
    """The submitter held to 40Mi: the node agent runs it in a memory cgroup with that limit
    (tests/support/node_agent/memory.py), the kernel kills `ray job submit` there, the pod reports OOMKilled as a
    kubelet does, and with no retry (submitterConfig.backoffLimit 0) the Job and the RayJob fail."""
    def tiny_memory(rayjob):
        resources = rayjob["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resources"]
        resources["limits"]["memory"] = resources["requests"]["memory"] = "40Mi"
        rayjob["spec"]["submitterConfig"]["backoffLimit"] = 0

    done = submit(cluster, tmp_path, "mnist-submit-oom", tiny_memory, "--stuck-after", "15", timeout=600)
    print("\n".join(line for line in said(done).splitlines() if "RayJob mnist/" in line or "cause:" in line))
    assert done.returncode == 1, said(done)[-3000:]
    assert re.search(r"cause: container ray-job-submitter of pod mnist-submit-oom-\S+ was killed for memory "
                     r"\(OOMKilled; its limit is 40Mi\)", done.stdout), said(done)[-3000:]


def test_a_passed_deadline_is_named(cluster, tmp_path):
    def short(rayjob):
        rayjob["spec"]["activeDeadlineSeconds"] = 20

    done = submit(cluster, tmp_path, "mnist-submit-deadline", short, timeout=300)
    assert done.returncode == 1, said(done)[-3000:]
    assert "cause: the RayJob's activeDeadlineSeconds (20 s) passed" in done.stdout, said(done)[-3000:]


def test_status_and_logs_of_a_job_submitted_before(cluster, tmp_path):
    path, _ = edited_manifest(STATIC, renamed("mnist-submit-later"), tmp_path)
    try:
        done = cluster.run("mnist-job", "submit", "-f", str(path), "--no-wait")
        assert "follow it with: mnist-job status mnist-submit-later -n mnist" in done.stdout
        again = cluster.run("mnist-job", "submit", "-f", str(path), "--no-wait", check=False)
        assert again.returncode == 2 and "exists already" in again.stderr, said(again)
        status = cluster.run("mnist-job", "status", "mnist-submit-later", "-n", NAMESPACE)
        assert "RayJob mnist/mnist-submit-later: running" in status.stdout, said(status)
        logs = cluster.run("mnist-job", "logs", "mnist-submit-later", "-n", NAMESPACE)
        assert logs.returncode == 0
    finally:
        cluster.kubectl("delete", "rayjob", "mnist-submit-later", "-n", NAMESPACE, "--wait=false", check=False)
    missing = cluster.run("mnist-job", "status", "no-such-job", "-n", NAMESPACE, check=False)
    assert missing.returncode == 2 and "no RayJob no-such-job" in missing.stderr


def test_an_unreachable_api_server_exits_3_naming_it(cluster, tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(cluster.kubeconfig.read_text().replace(cluster.server_url(), "https://127.0.0.1:1"))
    path, _ = edited_manifest(STATIC, renamed("mnist-submit-nowhere"), tmp_path)
    done = cluster.run("mnist-job", "submit", "-f", str(path), "--wait", check=False, KUBECONFIG=str(config))
    assert done.returncode == 3 and "https://127.0.0.1:1 is unreachable" in done.stderr, said(done)
