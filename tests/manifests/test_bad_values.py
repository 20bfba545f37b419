"""Invalid values fail at `helm template` with a message that says what to fix."""

from __future__ import annotations

import pytest
from manifest_helpers import PLATFORM, RAYJOB

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
    ("missing-mlflow-credentials-secret", RAYJOB, ("--set", "platform.mlflowCredentialsSecret="),
     "platform.mlflowCredentialsSecret is required"),
    ("missing-mlflow-serving-secret", RAYJOB, ("--set", "rayService.enabled=true", "--set", "platform.mlflowServingCredentialsSecret="),
     "platform.mlflowServingCredentialsSecret is required with rayService.enabled"),
    ("serve-replicas-beyond-worker-pods", RAYJOB, ("--set", "rayService.enabled=true", "--set", "rayService.replicas=3",
                                                   "--set", "rayService.maxReplicasPerNode=1"),
     "rayService.replicas (3) exceed rayService.maxReplicasPerNode (1) x ray.workers.replicas (2)"),
    ("missing-endpoints-configmap", RAYJOB, ("--set", "platform.endpointsConfigMap="), "platform.endpointsConfigMap is required"),
    ("empty-image-tag", RAYJOB, ("--set", "image.tag="), "image.tag must not be empty"),
    ("latest-image-tag", RAYJOB, ("--set", "image.tag=latest"), "image.tag must not be latest"),
    ("zero-train-workers", RAYJOB, ("--set", "job.numWorkers=0"), "job.numWorkers must be at least 1"),
    ("use-gpu-not-bool", RAYJOB, ("--set-string", "job.useGpu=yes"), "job.useGpu must be true or false"),
    (
        "deletion-rules-with-kueue",
        RAYJOB,
        (
            "--set", "rayJob.labels.kueue\\.x-k8s\\.io/queue-name=q",
            "--set", "lifecycle.deletionRules[0].policy=DeleteCluster",
            "--set", "lifecycle.deletionRules[0].condition.jobStatus=SUCCEEDED",
        ),
        "cannot be used with a Kueue queue",
    ),
    (
        "deletion-rule-two-conditions",
        RAYJOB,
        (
            "--set", "lifecycle.deletionRules[0].policy=DeleteCluster",
            "--set", "lifecycle.deletionRules[0].condition.jobStatus=SUCCEEDED",
            "--set", "lifecycle.deletionRules[0].condition.jobDeploymentStatus=Failed",
        ),
        "lifecycle.deletionRules[0].condition needs exactly one of jobStatus",
    ),
    ("deletion-rule-bad-policy", RAYJOB, ("--set", "lifecycle.deletionRules[0].policy=Delete", "--set", "lifecycle.deletionRules[0].condition.jobStatus=FAILED"), 'lifecycle.deletionRules[0].policy "Delete" must be one of'),
    ("workers-deleted-after-cluster", RAYJOB, ("--set", "lifecycle.deleteWorkersAfterSeconds=600"), "lifecycle.deleteWorkersAfterSeconds (600) must not exceed lifecycle.deleteClusterAfterSeconds (300)"),
    ("no-prerunning-deadline", RAYJOB, ("--set", "lifecycle.preRunningDeadlineSeconds=0"), "lifecycle.preRunningDeadlineSeconds must be a positive number"),
    ("prerunning-after-active", RAYJOB, ("--set", "lifecycle.preRunningDeadlineSeconds=7200"), "must be shorter than lifecycle.activeDeadlineSeconds (7200)"),
    ("object-store-not-below-shm", RAYJOB, ("--set", "ray.objectStoreMemory=2Gi"), "ray.objectStoreMemory (2Gi) must be below ray.shmSizeLimit (2Gi)"),
    ("object-store-bad-size", RAYJOB, ("--set", "ray.objectStoreMemory=1.5Gi"), 'ray.objectStoreMemory: "1.5Gi" is not a whole-number size'),
    (
        "head-ephemeral-below-emptydirs",
        RAYJOB,
        ("--set", "ray.head.resources.limits.ephemeral-storage=4Gi"),
        "ray.head.resources.limits.ephemeral-storage (4Gi) is below the pod's emptyDirs: ray.tmpSizeLimit + dataCacheSizeLimit + 64Mi dvc-tmp = 6208 Mi",
    ),
    ("worker-ephemeral-missing", RAYJOB, ("--set", "ray.workers.resources.limits.ephemeral-storage=null"), "ray.workers.resources.limits.ephemeral-storage is required"),
    ("shm-not-below-memory", RAYJOB, ("-f", str(RAYJOB / "values-cpu-kind.yaml"), "--set", "ray.shmSizeLimit=3Gi", "--set", "ray.objectStoreMemory=1Gi"), "ray.head.resources.limits.memory (3Gi) must exceed ray.shmSizeLimit (3Gi)"),
    ("submitter-ephemeral-below-tmp", RAYJOB, ("--set", "submitter.tmpSizeLimit=1Gi"), "submitter.resources.limits.ephemeral-storage (256Mi) is below submitter.tmpSizeLimit (1Gi)"),
    ("worker-image-latest", RAYJOB, ("--set", "ray.workers.image.tag=latest"), "ray.workers.image.tag must not be latest"),
    ("reserved-set-key", RAYJOB, ("--set", "job.set.train\\.num_workers=8"), "job.set.train.num_workers: set it through its own value"),
    ("bad-release-name", RAYJOB, ("--set", "nameOverride=Mnist_Train"), "must be a DNS-1035 label"),
    ("auth-disabled", RAYJOB, ("--set", "ray.authMode=disabled"), 'ray.authMode must be token (got "disabled")'),
    ("auth-unknown", RAYJOB, ("--set", "ray.authMode=tokens"), 'ray.authMode must be token (got "tokens")'),
    ("auth-empty", RAYJOB, ("--set", "ray.authMode="), 'ray.authMode must be token (got "")'),
    (
        "auth-overridden-by-extra-env",
        RAYJOB,
        ("--set", "job.extraEnv[0].name=RAY_AUTH_MODE", "--set", "job.extraEnv[0].value=disabled"),
        "job.extraEnv: RAY_AUTH_MODE is set by KubeRay from ray.authMode",
    ),
    ("network-policy-no-operator-namespace", RAYJOB, ("--set", "networkPolicy.operator.namespace="), "networkPolicy.operator.namespace is required"),
    # platform chart
    ("platform-missing-secret-name", PLATFORM, ("--set", "credentials.existingSecret="), "credentials.existingSecret is required"),
    ("platform-empty-image-tag", PLATFORM, ("--set", "image.tag="), "image.tag must not be empty"),
    ("platform-minio-latest", PLATFORM, ("--set", "minio.image.tag=latest"), "minio.image.tag must not be latest"),
    ("platform-bad-bucket", PLATFORM, ("--set", "buckets.dvc=DVC_Bucket"), "is not a valid S3 bucket name"),
    (
        "platform-both-credentials",
        PLATFORM,
        ("-f", str(PLATFORM / "values-dev.yaml"), "--set", "credentials.existingSecret=x"),
        "not both",
    ),
    (
        "platform-dev-fixed-password",
        PLATFORM,
        ("-f", str(PLATFORM / "values-dev.yaml"), "--set", "credentials.dev.secretAccessKey=minio-dev-password"),
        "credentials.dev.secretAccessKey is no longer a value: helm install generates the dev password",
    ),
    ("platform-mlflow-workers", PLATFORM, ("--set", "mlflow.workers=4"), "mlflow.workers must be 1"),
    ("platform-external-without-endpoint", PLATFORM, ("--set", "minio.enabled=false"), "s3.externalEndpoint is required when minio.enabled=false"),
    ("platform-external-with-minio", PLATFORM, ("--set", "s3.externalEndpoint=https://s3.example.com"), "set minio.enabled=false to use the external S3 endpoint"),
    (
        "platform-external-bad-url",
        PLATFORM,
        ("-f", str(PLATFORM / "values-production.yaml"), "--set", "s3.externalEndpoint=s3.example.com/bucket"),
        "must be a URL like https://s3.us-east-1.amazonaws.com",
    ),
]


@pytest.mark.parametrize("case,chart,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_values_fail_with_message(helm_template, case, chart, args, message):
    res = helm_template(chart, "mnist-train" if chart == RAYJOB else "mnist-platform", *args)
    assert res.returncode != 0, f"{case}: rendered although the values are invalid"
    assert message in res.stderr, f"{case}: expected {message!r} in:\n{res.stderr}"


@pytest.mark.parametrize("chart", [RAYJOB, PLATFORM], ids=["rayjob", "platform"])
def test_the_defaults_themselves_render(helm_template, chart):
    """Guards the cases above: they fail because of the one value they change."""
    res = helm_template(chart, "mnist-train" if chart == RAYJOB else "mnist-platform")
    assert res.returncode == 0, res.stderr
