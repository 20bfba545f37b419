"""Pod hardening and resources, GPU/CPU profile shape, RayJob lifecycle."""

from __future__ import annotations

import re

import pytest
from manifest_helpers import PROFILES, ROOT, cpu, mem, one, rayjob_pod_templates, workload_pod_templates

ALL = sorted(PROFILES)


def _image_user() -> tuple[int, int]:
    """(uid, gid) of image/Dockerfile's last USER."""
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (ROOT / "image" / "Dockerfile").read_text(), re.M)
    return int(users[-1][0]), int(users[-1][1])


IMAGE_USER = _image_user()


def containers(tmpl):
    spec = tmpl["spec"]
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("profile", ALL)
def test_pods_are_hardened(render, profile):
    templates = workload_pod_templates(render(profile))
    assert templates
    for where, t in templates.items():
        pod = t["spec"].get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        # CKV_K8S_40 (uid >= 10000, in every profile and in the custom resources' pods), and the user the image
        # proves it serves: image/Dockerfile's last USER runs the package at build time as that uid and group.
        assert pod.get("runAsUser") == IMAGE_USER[0] >= 10000, where
        assert pod.get("runAsGroup") == IMAGE_USER[1] == pod.get("fsGroup"), where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert t["spec"].get("automountServiceAccountToken") is False, where
        for c in containers(t):
            sc = c.get("securityContext", {})
            label = f"{where}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, label
            assert sc.get("privileged") is False, label
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], label
            assert not sc.get("capabilities", {}).get("add"), label
            assert sc.get("readOnlyRootFilesystem") is True, label
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{label}: read-only root needs a writable /tmp"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    assert r in res.get(part, {}), f"{label}: no {part}.{r}"
            assert mem(res["requests"]["memory"]) <= mem(res["limits"]["memory"]), label
            assert cpu(res["requests"]["cpu"]) <= cpu(res["limits"]["cpu"]), label
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{label}: unpinned image {image}"
        for v in t["spec"].get("volumes", []):
            if "emptyDir" in v:
                assert v["emptyDir"].get("sizeLimit"), f"{where}: emptyDir {v['name']} has no sizeLimit"
            assert "hostPath" not in v, where


def test_rayjob_gpu_profile(render):
    rj = one(render("rayjob-gpu"), "RayJob")
    spec = rj["spec"]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    c = group["template"]["spec"]["containers"][0]
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in group["template"]["spec"]["tolerations"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert {"/tmp", "/data-cache", "/dev/shm", "/app/.dvc/tmp"} <= set(mounts)
    vols = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
    assert vols[mounts["/data-cache"]]["emptyDir"]["sizeLimit"]
    assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def test_rayjob_lifecycle_frees_the_cluster(render):
    """Details of the deletion rules: tests/manifests/test_lifecycle_and_sizing.py."""
    for profile in ("rayjob-gpu", "rayjob-cpu-kind"):
        spec = one(render(profile), "RayJob")["spec"]
        assert spec["deletionStrategy"]["deletionRules"]
        assert spec["activeDeadlineSeconds"] > 0
        assert spec["submitterConfig"]["backoffLimit"] >= 0
        assert spec["submissionMode"] == "K8sJobMode"
        assert spec["rayClusterSpec"]["authOptions"]["mode"] == "token"
        assert spec["rayClusterSpec"]["rayVersion"] == "2.60.0"
        assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"


def test_deletion_rules_of_your_own(helm_template):
    from manifest_helpers import RAYJOB

    res = helm_template(
        RAYJOB, "t",
        "--set", "lifecycle.deletionRules[0].policy=DeleteCluster",
        "--set", "lifecycle.deletionRules[0].condition.jobStatus=SUCCEEDED",
        "--set", "lifecycle.deletionRules[1].policy=DeleteCluster",
        "--set", "lifecycle.deletionRules[1].condition.jobStatus=FAILED",
        "--set", "lifecycle.deletionRules[1].condition.ttlSeconds=600",
    )
    assert res.returncode == 0, res.stderr
    spec = one(res.docs, "RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is False and "ttlSecondsAfterFinished" not in spec
    assert spec["deletionStrategy"]["deletionRules"] == [
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}},
        {"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED", "ttlSeconds": 600}},
    ]


def test_cpu_kind_profile_fits_a_laptop(render):
    rj = one(render("rayjob-cpu-kind"), "RayJob")
    total_cpu = total_mem = 0.0
    for role, t in rayjob_pod_templates(rj).items():
        n = 1
        if role.startswith("worker:"):
            (g,) = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"]
            n = g["replicas"]
        c = t["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), role
        assert not t["spec"].get("tolerations"), role
        total_cpu += n * cpu(c["resources"]["requests"]["cpu"])
        total_mem += n * mem(c["resources"]["requests"]["memory"])
    platform = render("platform-dev")
    for where, t in workload_pod_templates(platform).items():
        if where.startswith("Job/"):
            continue  # finished before the RayJob starts
        for c in t["spec"]["containers"]:
            total_cpu += cpu(c["resources"]["requests"]["cpu"])
            total_mem += mem(c["resources"]["requests"]["memory"])
    # A 4-CPU / 8 GiB kind node, minus ~1.05 CPU and ~0.8 GiB for kind's control plane
    # and the operator (the whole sum: tests/manifests/test_node_capacity.py).
    assert total_cpu <= 4 - 1.05, f"CPU profile requests {total_cpu} CPUs"
    assert total_mem <= 7.2 * 2**30, f"CPU profile requests {total_mem / 2**30:.1f} GiB"
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert cpu(head["resources"]["limits"]["cpu"]) <= 1


DEV_PROFILES = {"rayjob-cpu-kind", "rayjob-tune-cpu-kind", "rayservice-cpu-kind", "platform-dev"}  # kind: images are loaded into the node


@pytest.mark.parametrize("profile", sorted(set(PROFILES) - DEV_PROFILES))
def test_non_dev_profiles_pull_always(render, profile):
    """CKV_K8S_15 is skipped only for the dev renders (charts/.checkov-dev.yaml); checkov does not look inside the
    RayJob, so its pods are checked here."""
    for where, t in workload_pod_templates(render(profile)).items():
        for c in containers(t):
            assert c.get("imagePullPolicy") == "Always", f"{profile} {where}/{c['name']}: {c.get('imagePullPolicy')}"


SECRET_FILE_MODES = {0o400, 0o440}  # owner root; 0440 lets the pod's user read it through fsGroup


@pytest.mark.parametrize("profile", ALL)
def test_secrets_reach_pods_only_as_read_only_files(render, profile):
    """CKV_K8S_35 (secrets as files, not env vars), here for every pod template, the RayJob's and RayService's
    too (checkov does not look inside custom resources): no secretKeyRef or Secret envFrom; every Secret
    volume is mounted read-only with mode 0400 or 0440, and 0440 only where fsGroup makes the pod's user
    the file's group."""
    templates = workload_pod_templates(render(profile))
    secret_volumes = 0
    for where, t in templates.items():
        spec = t["spec"]
        for c in containers(t):
            label = f"{where}/{c['name']}"
            for e in c.get("env", []) or []:
                assert "secretKeyRef" not in e.get("valueFrom", {}), f"{label}: env {e['name']} from a Secret"
            assert not any("secretRef" in ef for ef in c.get("envFrom", []) or []), f"{label}: envFrom a Secret"
            secrets = {v["name"] for v in spec.get("volumes", []) or [] if "secret" in v}
            for m in c.get("volumeMounts", []) or []:
                if m["name"] in secrets:
                    assert m.get("readOnly") is True, f"{label}: Secret volume {m['name']} mounted writable"
        for v in spec.get("volumes", []) or []:
            if "secret" not in v:
                continue
            secret_volumes += 1
            modes = {v["secret"].get("defaultMode", 0o644)} | {i["mode"] for i in v["secret"].get("items", []) if "mode" in i}
            assert modes <= SECRET_FILE_MODES, f"{where}: Secret volume {v['name']} modes {sorted(map(oct, modes))}"
            if 0o440 in modes:
                assert "fsGroup" in spec.get("securityContext", {}), f"{where}: 0440 without fsGroup"
    assert secret_volumes, f"{profile}: no Secret volume at all (the credentials must come from somewhere)"


def test_the_secret_check_can_fail(render):
    """The check above, on a pod template given a secretKeyRef back: it fails."""
    import copy

    docs = copy.deepcopy(render("rayjob-gpu"))
    rayjob = one(docs, "RayJob")
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}})
    with pytest.raises(AssertionError, match="env AWS_SECRET_ACCESS_KEY from a Secret"):
        test_secrets_reach_pods_only_as_read_only_files(lambda _profile: docs, "rayjob-gpu")


SCHEDULING = {  # one block of KubeRay's ray-cluster chart's fields, the same for each of the three pods
    "nodeSelector": {"pool": "training"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
    "priorityClassName": "batch-high",
}


@pytest.mark.parametrize("service", [False, True], ids=["rayjob", "rayservice"])
def test_head_workers_and_submitter_take_the_same_scheduling_block(helm_template, tmp_path, service):
    import yaml
    from manifest_helpers import RAYJOB

    extras = {"annotations": {"team": "ml"}, "volumes": [{"name": "extra", "emptyDir": {}}],
              "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]}
    block = {**SCHEDULING, **extras}
    values = tmp_path / "scheduling.yaml"
    values.write_text(yaml.safe_dump({"ray": {"head": block, "workers": {**block, "gpusPerWorker": 0}},
                                      "job": {"useGpu": False}, "submitter": block,
                                      "rayService": {"enabled": service}}))
    res = helm_template(RAYJOB, "t", "-f", str(values))
    assert res.returncode == 0, res.stderr
    templates = rayjob_pod_templates(one(res.docs, "RayService" if service else "RayJob"))
    assert set(templates) == ({"head", "worker:gpu-workers"} | (set() if service else {"submitter"}))
    for role, tmpl in templates.items():
        spec = tmpl["spec"]
        assert {k: spec.get(k) for k in SCHEDULING} == SCHEDULING, role
        assert tmpl["metadata"]["annotations"] == {"team": "ml"}, role
        assert {"name": "extra", "emptyDir": {}} in spec["volumes"], role
        assert {"name": "extra", "mountPath": "/extra"} in spec["containers"][0]["volumeMounts"], role
