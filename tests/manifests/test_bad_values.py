"""Invalid values fail at `helm template` with a message that says what to fix."""

from __future__ import annotations

import pytest
from manifest_helpers import PLATFORM, RAYJOB

NO_OP = ("--set", "kuberay-operator.enabled=false")
CASES = [
    # RayJob chart
    ("gpu-profile-zero-gpus", RAYJOB, ("--set", "ray.workers.gpusPerWorker=0"), "ray.workers.gpusPerWorker is 0"),
    ("too-many-gpu-workers", RAYJOB, ("--set", "job.numWorkers=3"), "do not fit ray.workers.replicas (2) x ray.workers.gpusPerWorker (1) = 2 GPUs"),
    (
        "too-many-cpu-workers",
        RAYJOB,
        ("-f", str(RAYJOB / "values-cpu-kind.yaml"), "--set", "job.numWorkers=3"),
        "exceed ray.workers.replicas=2",
    ),
    ("missing-credentials-secret", RAYJOB, ("--set", "platform.credentialsSecret="), "platform.credentialsSecret is required"),
    ("missing-endpoints-configmap", RAYJOB, ("--set", "platform.endpointsConfigMap="), "platform.endpointsConfigMap is required"),
    ("empty-image-tag", RAYJOB, ("--set", "image.tag="), "image.tag must not be empty"),
    ("latest-image-tag", RAYJOB, ("--set", "image.tag=latest"), "image.tag must not be latest"),
    ("zero-train-workers", RAYJOB, ("--set", "job.numWorkers=0"), "job.numWorkers must be at least 1"),
    ("use-gpu-not-bool", RAYJOB, ("--set-string", "job.useGpu=yes"), "job.useGpu must be true or false"),
    (
        "deletion-rules-with-shutdown",
        RAYJOB,
        ("--set", "lifecycle.deletionRules[0].policy=DeleteCluster", "--set", "lifecycle.deletionRules[0].condition.jobStatus=SUCCEEDED"),
        "mutually exclusive",
    ),
    ("never-cleaned-up", RAYJOB, ("--set", "lifecycle.shutdownAfterJobFinishes=false"), "would never be deleted"),
    ("reserved-set-key", RAYJOB, ("--set", "job.set.train\\.num_workers=8"), "job.set.train.num_workers: set it through its own value"),
    ("bad-release-name", RAYJOB, ("--set", "nameOverride=Mnist_Train"), "must be a DNS-1035 label"),
    # platform chart
    ("platform-missing-secret-name", PLATFORM, NO_OP + ("--set", "credentials.existingSecret="), "credentials.existingSecret is required"),
    ("platform-empty-image-tag", PLATFORM, NO_OP + ("--set", "image.tag="), "image.tag must not be empty"),
    ("platform-minio-latest", PLATFORM, NO_OP + ("--set", "minio.image.tag=latest"), "minio.image.tag must not be latest"),
    ("platform-bad-bucket", PLATFORM, NO_OP + ("--set", "buckets.dvc=DVC_Bucket"), "is not a valid S3 bucket name"),
    (
        "platform-both-credentials",
        PLATFORM,
        NO_OP + ("-f", str(PLATFORM / "values-dev.yaml"), "--set", "credentials.existingSecret=x"),
        "not both",
    ),
    ("platform-mlflow-workers", PLATFORM, NO_OP + ("--set", "mlflow.workers=4"), "mlflow.workers must be 1"),
]


@pytest.mark.parametrize("case,chart,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_values_fail_with_message(helm_template, case, chart, args, message):
    res = helm_template(chart, "mnist-train" if chart == RAYJOB else "mnist-platform", *args)
    assert res.returncode != 0, f"{case}: rendered although the values are invalid"
    assert message in res.stderr, f"{case}: expected {message!r} in:\n{res.stderr}"


@pytest.mark.parametrize("chart", [RAYJOB, PLATFORM], ids=["rayjob", "platform"])
def test_the_defaults_themselves_render(helm_template, chart):
    """Guards the cases above: they fail because of the one value they change."""
    args = () if chart == RAYJOB else NO_OP
    res = helm_template(chart, "mnist-train" if chart == RAYJOB else "mnist-platform", *args)
    assert res.returncode == 0, res.stderr
