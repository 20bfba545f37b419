"""Break the contract between the charts, the image and the package on purpose: the harness must say which side.

Each break is checked statically (tests/support/kuberay preflight on a mutated copy of the rendered
objects: no process started, runs in `make test-fast`) and, where the job can show it, by
running it on the session's Ray cluster (fails in seconds, before any training).
"""

from __future__ import annotations

import copy

import pytest

from tests.support import kuberay as kl


def _ray_containers(rayjob: dict):
    for _, _, spec, _ in kl.groups(rayjob):
        yield kl.ray_container(spec)


def _preflight_error(rayjob: dict, platform: kl.PlatformView) -> str:
    with pytest.raises(kl.ContractError) as caught:
        kl.preflight(rayjob, platform)
    message = str(caught.value)
    print(message)
    return message


def _platform_with(e2e, mutate) -> kl.PlatformView:
    docs = copy.deepcopy(e2e.platform_view.docs)
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"].endswith("-endpoints"):
            mutate(d["data"])
    return kl.PlatformView(docs)


@pytest.mark.e2e
def test_rendered_charts_keep_the_contract(e2e):
    kl.preflight(e2e.rayjob, e2e.platform_view)  # raises ContractError naming every break it finds


# (a) an env var renamed in the chart ---------------------------------------------------------


@pytest.mark.e2e
def test_env_var_renamed_in_the_rayjob_chart_is_reported(e2e):
    rayjob = copy.deepcopy(e2e.rayjob)
    for container in _ray_containers(rayjob):
        for item in container["env"]:
            if item["name"] == "MLFLOW_TRACKING_URI":
                item["name"] = "MLFLOW_TRACKING_URL"
    message = _preflight_error(rayjob, e2e.platform_view)
    assert "[RayJob chart] manifest env of the head group 'head' lacks MLFLOW_TRACKING_URI that mnist_job" in message
    assert "worker group 'cpu-workers' lacks MLFLOW_TRACKING_URI" in message
    assert "it sets MLFLOW_TRACKING_URL instead (renamed?)" in message


@pytest.mark.e2e
def test_configmap_key_renamed_in_the_platform_chart_is_reported(e2e):
    platform = _platform_with(e2e, lambda data: data.update(MLFLOW_TRACKING_URL=data.pop("MLFLOW_TRACKING_URI")))
    message = _preflight_error(e2e.rayjob, platform)
    assert "[RayJob chart vs platform chart]" in message
    assert "refers to key 'MLFLOW_TRACKING_URI' of ConfigMap 'mnist-platform-endpoints'" in message
    assert "it has 'MLFLOW_TRACKING_URL': renamed on one side?" in message


# (b) an entrypoint the image cannot run ------------------------------------------------------

BAD_COMMAND = "mnist-trainer"


def _bad_entrypoint(rayjob: dict) -> dict:
    rayjob = copy.deepcopy(rayjob)
    rayjob["spec"]["entrypoint"] = rayjob["spec"]["entrypoint"].replace("mnist-job", BAD_COMMAND, 1)
    return rayjob


@pytest.mark.e2e
def test_entrypoint_command_missing_from_the_image_is_reported(e2e):
    message = _preflight_error(_bad_entrypoint(e2e.rayjob), e2e.platform_view)
    assert f"[RayJob chart] entrypoint command {BAD_COMMAND!r} does not exist in the image" in message
    assert "'mnist-job'" in message


@pytest.mark.e2e
def test_entrypoint_with_a_setting_the_package_rejects_is_reported(e2e):
    rayjob = copy.deepcopy(e2e.rayjob)
    rayjob["spec"]["entrypoint"] += " --set train.epoch=1"
    message = _preflight_error(rayjob, e2e.platform_view)
    assert "[RayJob chart vs mnist_job] entrypoint params are invalid for the package" in message
    assert "train.epoch: unknown key" in message


@pytest.mark.e2e
@pytest.mark.slow
def test_entrypoint_command_missing_from_the_image_fails_the_job(e2e, ray_cluster):
    rayjob = _bad_entrypoint(e2e.rayjob)
    entrypoint, runtime_env = kl.job_submission(rayjob, ray_cluster.pods, kl.Substitutions())
    outcome = kl.submit_and_follow(ray_cluster, rayjob, entrypoint, runtime_env, e2e.logs, 120)
    assert outcome.status == "FAILED", outcome
    assert f"{BAD_COMMAND}: not found" in outcome.logs, outcome.logs[-2000:]
    assert "exit code 127" in outcome.message, outcome.message
    assert "[rank 0] epoch" not in outcome.logs  # it failed before any training


# (c) the DVC remote points at a bucket that does not exist -----------------------------------

MISSING = "s3://no-such-bucket/dvcstore"


@pytest.mark.e2e
def test_dvc_remote_in_a_bucket_the_platform_does_not_create_is_reported(e2e):
    platform = _platform_with(e2e, lambda data: data.update(MNIST_DVC_REMOTE_URL=MISSING))
    message = _preflight_error(e2e.rayjob, platform)
    assert f"[charts] MNIST_DVC_REMOTE_URL = {MISSING}: bucket 'no-such-bucket' is not created" in message


@pytest.mark.e2e
@pytest.mark.slow
def test_dvc_remote_in_a_missing_bucket_fails_the_job_with_exit_3(e2e, local_platform, ray_cluster):
    # The ConfigMap's value reaches the driver as env; the runtime env overrides the pods' env the same way.
    entrypoint, runtime_env = kl.job_submission(e2e.rayjob, ray_cluster.pods, kl.Substitutions())
    runtime_env["env_vars"]["MNIST_DVC_REMOTE_URL"] = MISSING
    outcome = kl.submit_and_follow(ray_cluster, e2e.rayjob, entrypoint, runtime_env, e2e.logs, 120)
    assert outcome.status == "FAILED", outcome
    endpoint = local_platform.endpoints["AWS_ENDPOINT_URL"]
    assert f"error: S3 {endpoint}: bucket 'no-such-bucket' of MNIST_DVC_REMOTE_URL does not exist" in outcome.logs, (
        outcome.logs[-2000:])
    assert "exit code 3" in outcome.message, outcome.message
    assert "[rank 0] epoch" not in outcome.logs  # it failed before any training


# (d) a tool writes outside the pod's writable volumes ----------------------------------------


@pytest.mark.e2e
def test_dvc_site_cache_outside_the_volumes_is_reported(e2e):
    from tests.support.kuberay.rendering import image_spec

    rayjob = copy.deepcopy(e2e.rayjob)
    for container in _ray_containers(rayjob):
        container["env"] = [e for e in container["env"] if e["name"] != "DVC_SITE_CACHE_DIR"]
    image_env = {k: v for k, v in image_spec().env.items() if k != "DVC_SITE_CACHE_DIR"}
    with pytest.raises(kl.ContractError) as caught:
        kl.preflight(rayjob, e2e.platform_view, image_env)
    message = str(caught.value)
    print(message)
    assert "worker group 'cpu-workers': DVC_SITE_CACHE_DIR is unset, so the tools write to DVC 3: /var/tmp/dvc" in message
    kl.preflight(rayjob, e2e.platform_view)  # the image's ENV alone is enough: no ContractError
