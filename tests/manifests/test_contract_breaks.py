"""Break the contract between the charts, the image and the package on purpose: the preflight must say which side.

Each break is checked statically (tests/support/kuberay preflight on a mutated copy of the rendered
objects: no process started, runs in `make test-fast`). What a break does to a running job is shown on the
real cluster (tests/kubernetes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from tests.support import kuberay as kl


@dataclass(frozen=True)
class Rendered:
    rayjob: dict
    platform_view: kl.PlatformView


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    rayjob, docs = kl.render_all(kl.Substitutions())
    return Rendered(rayjob, kl.PlatformView(docs))


def _ray_containers(rayjob: dict):
    for _, _, spec, _ in kl.groups(rayjob):
        yield kl.ray_container(spec)


def _preflight_error(rayjob: dict, platform: kl.PlatformView) -> str:
    with pytest.raises(kl.ContractError) as caught:
        kl.preflight(rayjob, platform)
    message = str(caught.value)
    print(message)
    return message


def _platform_with(rendered, mutate) -> kl.PlatformView:
    docs = copy.deepcopy(rendered.platform_view.docs)
    for d in docs:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"].endswith("-endpoints"):
            mutate(d["data"])
    return kl.PlatformView(docs)


def test_rendered_charts_keep_the_contract(rendered):
    kl.preflight(rendered.rayjob, rendered.platform_view)  # raises ContractError naming every break it finds


# (a) an env var renamed in the chart ---------------------------------------------------------


def test_env_var_renamed_in_the_rayjob_chart_is_reported(rendered):
    rayjob = copy.deepcopy(rendered.rayjob)
    for container in _ray_containers(rayjob):
        for item in container["env"]:
            if item["name"] == "MLFLOW_TRACKING_URI":
                item["name"] = "MLFLOW_TRACKING_URL"
    message = _preflight_error(rayjob, rendered.platform_view)
    assert "[RayJob chart] manifest env of the head group 'head' lacks MLFLOW_TRACKING_URI that mnist_job" in message
    assert "worker group 'cpu-workers' lacks MLFLOW_TRACKING_URI" in message
    assert "it sets MLFLOW_TRACKING_URL instead (renamed?)" in message


def test_configmap_key_renamed_in_the_platform_chart_is_reported(rendered):
    platform = _platform_with(rendered, lambda data: data.update(MLFLOW_TRACKING_URL=data.pop("MLFLOW_TRACKING_URI")))
    message = _preflight_error(rendered.rayjob, platform)
    assert "[RayJob chart vs platform chart]" in message
    assert "refers to key 'MLFLOW_TRACKING_URI' of ConfigMap 'mnist-platform-endpoints'" in message
    assert "it has 'MLFLOW_TRACKING_URL': renamed on one side?" in message


# (b) an entrypoint the image cannot run ------------------------------------------------------

BAD_COMMAND = "mnist-trainer"


def _bad_entrypoint(rayjob: dict) -> dict:
    rayjob = copy.deepcopy(rayjob)
    rayjob["spec"]["entrypoint"] = rayjob["spec"]["entrypoint"].replace("mnist-job", BAD_COMMAND, 1)
    return rayjob


def test_entrypoint_command_missing_from_the_image_is_reported(rendered):
    message = _preflight_error(_bad_entrypoint(rendered.rayjob), rendered.platform_view)
    assert f"[RayJob chart] entrypoint command {BAD_COMMAND!r} does not exist in the image" in message
    assert "'mnist-job'" in message


def test_entrypoint_with_a_setting_the_package_rejects_is_reported(rendered):
    rayjob = copy.deepcopy(rendered.rayjob)
    rayjob["spec"]["entrypoint"] += " --set train.epoch=1"
    message = _preflight_error(rayjob, rendered.platform_view)
    assert "[RayJob chart vs mnist_job] entrypoint params are invalid for the package" in message
    assert "train.epoch: unknown key" in message


# (c) the DVC remote points at a bucket that does not exist -----------------------------------

MISSING = "s3://no-such-bucket/dvcstore"


def test_dvc_remote_in_a_bucket_the_platform_does_not_create_is_reported(rendered):
    platform = _platform_with(rendered, lambda data: data.update(MNIST_DVC_REMOTE_URL=MISSING))
    message = _preflight_error(rendered.rayjob, platform)
    assert f"[charts] MNIST_DVC_REMOTE_URL = {MISSING}: bucket 'no-such-bucket' is not created" in message


# (d) a tool writes outside the pod's writable volumes ----------------------------------------


def test_dvc_site_cache_outside_the_volumes_is_reported(rendered):
    from tests.support.kuberay.rendering import image_spec

    rayjob = copy.deepcopy(rendered.rayjob)
    for container in _ray_containers(rayjob):
        container["env"] = [e for e in container["env"] if e["name"] != "DVC_SITE_CACHE_DIR"]
    image_env = {k: v for k, v in image_spec().env.items() if k != "DVC_SITE_CACHE_DIR"}
    with pytest.raises(kl.ContractError) as caught:
        kl.preflight(rayjob, rendered.platform_view, image_env)
    message = str(caught.value)
    print(message)
    assert "worker group 'cpu-workers': DVC_SITE_CACHE_DIR is unset, so the tools write to DVC 3: /var/tmp/dvc" in message
    kl.preflight(rayjob, rendered.platform_view)  # the image's ENV alone is enough: no ContractError
