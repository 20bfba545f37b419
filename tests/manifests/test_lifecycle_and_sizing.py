"""Contract tests over the rendered manifests: lifecycle (deadlines, deletion rules,
Kueue), sizes that must agree (object store < /dev/shm < memory limit; ephemeral
storage >= emptyDirs), images per role, data kept on uninstall, external S3."""

from __future__ import annotations

import pytest
from manifest_helpers import PLATFORM, PROFILES, by_kind, mem, one, rayjob_pod_templates, workload_pod_templates

RAYJOB_PROFILES = sorted(p for p in PROFILES if p.startswith("rayjob"))
TERMINAL_JOB_STATUSES = {"SUCCEEDED", "FAILED"}  # the CRD's enum for condition.jobStatus
TERMINAL_DEPLOYMENT_STATUSES = {"Failed"}  # ... and for condition.jobDeploymentStatus


def kuberay_rule_errors(rules: list[dict]) -> list[str]:
    """The checks KubeRay 1.7's validateDeletionRules applies at admission."""
    errors, seen = [], {}
    for i, r in enumerate(rules):
        cond = r["condition"]
        keys = {"jobStatus", "jobDeploymentStatus"} & set(cond)
        if len(keys) != 1:
            errors.append(f"rule {i}: exactly one of jobStatus/jobDeploymentStatus")
            continue
        (key,) = keys
        allowed = TERMINAL_JOB_STATUSES if key == "jobStatus" else TERMINAL_DEPLOYMENT_STATUSES
        if cond[key] not in allowed:
            errors.append(f"rule {i}: {key}={cond[key]} not in {allowed}")
        if (key, cond[key], r["policy"]) in seen:
            errors.append(f"rule {i}: duplicate")
        seen[(key, cond[key], r["policy"])] = cond.get("ttlSeconds", 0)
    order = ["DeleteWorkers", "DeleteCluster", "DeleteSelf"]
    for key, value in {(k, v) for k, v, _ in seen}:
        ttls = [seen[(key, value, p)] for p in order if (key, value, p) in seen]
        if ttls != sorted(ttls):
            errors.append(f"{key}={value}: TTLs must not decrease along {order}")
    return errors


@pytest.mark.parametrize("profile", ["rayjob-gpu", "rayjob-cpu-kind", "rayjob-gpu-initcontainer"])
def test_workers_are_deleted_at_once_and_the_cluster_after_a_while(render, profile):
    spec = one(render(profile), "RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is False, "rules mode: KubeRay rejects shutdownAfterJobFinishes with deletionRules"
    assert "ttlSecondsAfterFinished" not in spec
    rules = spec["deletionStrategy"]["deletionRules"]
    assert kuberay_rule_errors(rules) == []
    by = {(r["policy"], r["condition"].get("jobStatus") or r["condition"].get("jobDeploymentStatus")): r["condition"]["ttlSeconds"] for r in rules}
    for end in ("SUCCEEDED", "Failed"):  # success, and every failure (app, deadlines, submitter)
        assert by[("DeleteWorkers", end)] == 0, f"GPUs must be freed as soon as the job ends ({end})"
        assert 0 < by[("DeleteCluster", end)] <= 900, f"the head is kept a little for its logs ({end})"


def test_kuberay_rule_check_can_fail():
    assert kuberay_rule_errors([{"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
                                {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 60}}])
    assert kuberay_rule_errors([{"policy": "DeleteCluster", "condition": {"jobStatus": "STOPPED"}}])
    assert kuberay_rule_errors([{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}}])


@pytest.mark.parametrize("profile", RAYJOB_PROFILES)
def test_deadlines(render, profile):
    spec = one(render(profile), "RayJob")["spec"]
    assert 0 < spec["preRunningDeadlineSeconds"] < spec["activeDeadlineSeconds"]
    assert spec["preRunningDeadlineSeconds"] <= 3600, "a job waiting for GPUs must not hold the head for hours"


def test_kueue_profile(render):
    rj = one(render("rayjob-gpu-kueue"), "RayJob")
    assert rj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    spec = rj["spec"]
    # Kueue admits a suspended RayJob; KubeRay refuses suspend without shutdownAfterJobFinishes,
    # and shutdownAfterJobFinishes excludes deletion rules.
    assert spec["suspend"] is True and spec["shutdownAfterJobFinishes"] is True
    assert "deletionStrategy" not in spec
    assert 0 < spec["ttlSecondsAfterFinished"] <= 900
    assert spec["rayClusterSpec"]["enableInTreeAutoscaling"] is False, "Kueue does not admit autoscaling RayJobs"
    assert "suspend" not in one(render("rayjob-gpu"), "RayJob")["spec"], "without Kueue nothing would ever resume it"


def test_rayjob_labels_and_annotations(helm_template):
    from manifest_helpers import RAYJOB

    res = helm_template(RAYJOB, "mnist-train", "--set", "rayJob.labels.team=vision", "--set", "rayJob.annotations.owner=alice")
    assert res.returncode == 0, res.stderr
    meta = one(res.docs, "RayJob")["metadata"]
    assert meta["labels"]["team"] == "vision" and meta["annotations"] == {"owner": "alice"}
    assert meta["labels"]["app.kubernetes.io/name"] == "kuberay-mnist-train", "the chart's own labels stay"


# --------------------------------------------------------------------------- sizes


def volumes(tmpl) -> dict[str, dict]:
    return {v["name"]: v for v in tmpl["spec"].get("volumes", [])}


@pytest.mark.parametrize("profile", RAYJOB_PROFILES)
def test_object_store_below_shm_below_memory(render, profile):
    cluster = one(render(profile), "RayJob")["spec"]["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    for name, group in groups:
        store = int(group["rayStartParams"]["object-store-memory"])
        shm = volumes(group["template"])["dshm"]["emptyDir"]
        assert shm["medium"] == "Memory"
        assert store < mem(shm["sizeLimit"]), f"{profile} {name}: object store {store} >= /dev/shm {shm['sizeLimit']}"
        limit = group["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        assert mem(shm["sizeLimit"]) < mem(limit), f"{profile} {name}: /dev/shm counts against the memory limit {limit}"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_ephemeral_storage_covers_the_emptydirs(render, profile):
    """The kubelet evicts a pod whose disk-backed emptyDirs and writable layers
    exceed the sum of its containers' ephemeral-storage limits."""
    for where, tmpl in workload_pod_templates(render(profile)).items():
        disk = sum(mem(v["emptyDir"]["sizeLimit"]) for v in volumes(tmpl).values() if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")
        limits = [c["resources"]["limits"].get("ephemeral-storage") for c in tmpl["spec"]["containers"]]
        assert all(limits), f"{where}: a container without an ephemeral-storage limit"
        assert sum(mem(x) for x in limits) >= disk, f"{where}: ephemeral-storage limits {limits} < emptyDirs {disk / 2**20:.0f} Mi"


# --------------------------------------------------------------------------- images


def role_images(rayjob) -> dict[str, set[str]]:
    out = {}
    for role, t in rayjob_pod_templates(rayjob).items():
        out[role] = {c["image"] for c in t["spec"].get("initContainers", []) + t["spec"]["containers"]}
    return out


def test_gpu_profile_pulls_the_gpu_image_only_on_gpu_workers(render):
    images = role_images(one(render("rayjob-gpu-initcontainer"), "RayJob"))
    assert images["head"] == images["submitter"] == {"ghcr.io/kuberay-mnist/kuberay-mnist:0.1.0-cpu"}
    assert images["worker:gpu-workers"] == {"ghcr.io/kuberay-mnist/kuberay-mnist:0.1.0-gpu"}


def test_kind_profile_uses_the_local_cpu_image_everywhere(render):
    images = role_images(one(render("rayjob-cpu-kind"), "RayJob"))
    assert set().union(*images.values()) == {"kuberay-mnist:dev-cpu"}


# --------------------------------------------------------------------------- data and S3


@pytest.mark.parametrize("profile", ["platform-default", "platform-dev"])
def test_pvcs_survive_helm_uninstall(render, profile):
    pvcs = by_kind(render(profile), "PersistentVolumeClaim")
    assert {p["metadata"]["name"] for p in pvcs} == {"mnist-platform-minio", "mnist-platform-mlflow"}
    for p in pvcs:
        assert p["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_production_uses_the_external_s3(render):
    docs = render("platform-production")
    assert not [d for d in docs if "minio" in d["metadata"]["name"]], "no in-cluster MinIO in production"
    assert {d["metadata"]["name"] for d in by_kind(docs, "Secret")} == {"mnist-platform-mlflow-admin",
                                                                        "mnist-platform-mlflow-training",
                                                                        "mnist-platform-mlflow-serving"}, (
        "S3 credentials come from the existing Secret; only MLflow's users are generated")
    endpoint = one(docs, "ConfigMap", "mnist-platform-endpoints")["data"]["AWS_ENDPOINT_URL"]
    assert endpoint.startswith("https://")
    mlflow = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in mlflow["env"]}["MLFLOW_S3_ENDPOINT_URL"] == endpoint
    job = one(docs, "Job", "mnist-platform-buckets")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in job["env"]}["AWS_ENDPOINT_URL"] == endpoint
    assert [p["metadata"]["name"] for p in by_kind(docs, "PersistentVolumeClaim")] == ["mnist-platform-mlflow"]


def test_bucket_job_is_optional_with_external_s3(helm_template):
    res = helm_template(PLATFORM, "mnist-platform", "-f", str(PLATFORM / "values-production.yaml"), "--set", "bucketJob.enabled=false")
    assert res.returncode == 0, res.stderr
    assert [j["metadata"]["name"] for j in by_kind(res.docs, "Job")] == ["mnist-platform-mlflow-users"]
    assert {p["metadata"]["name"] for p in by_kind(res.docs, "NetworkPolicy")} == {
        "mnist-platform-mlflow", "mnist-platform-buckets", "mnist-platform-mlflow-users"}
