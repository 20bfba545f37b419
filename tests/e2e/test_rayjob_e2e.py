"""The CPU RayJob (k8s/rayjob-cpu-kind.yaml, rendered fresh from the chart) run for real, as KubeRay would.

Platform: moto_server standing in for MinIO, the bucket Job's and the MLflow Deployment's pods,
the dataset pushed with DVC to the manifest's remote. Cluster: KubeRay's `ray start` for the head
and each worker replica, each in a pod sandbox (read-only root, its declared volumes as empty
tmpfs, its user, exactly its env). Job: KubeRay's submitter command in the submitter pod's
sandbox. Every substitution is printed.
Run alone with `make e2e-local`.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support import kuberay as kl
from tests.support.training import assert_one_value_per_epoch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_cpu_rayjob_runs_to_succeeded(e2e, local_platform, ray_cluster):
    from mlflow import MlflowClient

    from mnist_job.data.dvc_store import dvc_lock_hash

    rayjob, phases = e2e.rayjob, e2e.phases
    head = next(p for p in ray_cluster.pods if p.role == "head")
    workers = [p for p in ray_cluster.pods if p.role == "worker"]
    expected_workers = sum(r for role, _, _, r in kl.groups(rayjob) if role == "worker")
    assert len(workers) == expected_workers, "one local Ray node per worker replica of the manifest"
    for pod in ray_cluster.pods:
        assert not any(pod.data_cache.iterdir()), f"{pod.name}: the data cache must start empty, like an emptyDir"
    for pod in workers:  # KubeRay's wait-gcs-ready init container ran, in its own sandbox, before the worker
        (init, _), = [(sandbox, command) for sandbox, command in pod.init if "health-check" in " ".join(command)]
        assert init.process.popen.returncode == 0 and "ready" in init.process.log.read_text(), init.process.tail()

    entrypoint, runtime_env = kl.job_submission(rayjob, ray_cluster.pods, e2e.subs, kl.ENTRYPOINT_OVERRIDES)
    _, params = kl.entrypoint_params(entrypoint, head.root / "app" / "params.yaml")
    print(f"entrypoint (manifest): {rayjob['spec']['entrypoint']}")
    print(f"entrypoint (local):    {entrypoint}")
    print(f"runtime env (local):   {kl.dump_json(runtime_env)}")
    print(e2e.subs.render())

    with phases.run("job: submit the entrypoint, follow the driver's logs"):
        outcome = kl.submit_and_follow(ray_cluster, rayjob, entrypoint, runtime_env, e2e.logs, kl.JOB_CAP_S,
                                        subs=e2e.subs)
    print(f"job {outcome.submission_id}: {outcome.status} in {outcome.seconds:.1f} s; log {outcome.log_file}")
    assert outcome.status == "SUCCEEDED", (
        f"RayJob did not succeed: {outcome.status}: {outcome.message[-2000:]}\nlogs: {outcome.log_file}; "
        f"node logs: {e2e.logs}")

    with phases.run("checks: data pulls, MLflow run, S3 objects, registry"):
        # every worker pod pulled the dataset itself, into its own (initially empty) cache
        pullers = {}
        for pod in workers:
            marker = pod.data_cache / "PULLED"
            assert marker.is_file(), f"{pod.name}: no PULLED marker in {pod.data_cache}: the worker did not dvc pull"
            pullers[pod.name] = json.loads(marker.read_text())
            assert (pod.data_cache / "dvc-workspace" / params.data.dir / "manifest.json").is_file()
        assert len({m["pid"] for m in pullers.values()}) == len(workers), f"one pull per worker pod: {pullers}"
        pulls = re.findall(r"\[rank (\d+)\] data: pulled \S+ from (\S+) into", outcome.logs)
        assert {rank for rank, _ in pulls} == {str(r) for r in range(params.train.num_workers)}, (
            f"every Ray Train rank's node should log its own `data: pulled` line, got {pulls}")
        assert all(url == local_platform.endpoints["MNIST_DVC_REMOTE_URL"] for _, url in pulls), pulls

        run_ids = re.findall(r"^run id: (\w+)$", outcome.logs, flags=re.M)
        assert len(run_ids) == 1, f"expected one `run id:` line in the logs, got {run_ids}"
        run_id = run_ids[0]
        client = MlflowClient(tracking_uri=local_platform.mlflow_admin_uri())
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert_one_value_per_epoch(client, run_id, params.train.epochs)
        lock_md5 = dvc_lock_hash(head.root / "app", params.data.dir)
        assert run.data.tags.get("dvc.data_md5") == lock_md5, (run.data.tags.get("dvc.data_md5"), lock_md5)

        artifacts_bucket = local_platform.endpoints.get("MNIST_MLFLOW_ARTIFACTS_BUCKET", "mlflow-artifacts")
        artifact_keys = local_platform.keys(artifacts_bucket)
        model_keys = [k for k in artifact_keys if "/models/" in f"/{k}" and k.endswith("MLmodel")]
        assert model_keys, f"no model (MLmodel) in s3://{artifacts_bucket}: {artifact_keys[:20]}"
        checkpoint_prefix = params.train.storage_path.split("://", 1)[1]
        bucket, _, prefix = checkpoint_prefix.partition("/")
        checkpoint_keys = local_platform.keys(bucket, f"{prefix}/{params.train.run_name}")
        assert any(k.endswith("checkpoint.pt") for k in checkpoint_keys), f"no checkpoint in s3://{checkpoint_prefix}"

        versions = client.search_model_versions(f"name='{params.mlflow.registered_model}'")
        mine = [v for v in versions if v.run_id == run_id]
        assert mine, (f"no registered version of {params.mlflow.registered_model} from run {run_id} "
                      f"(test accuracy {run.data.metrics.get('test_accuracy')}, threshold "
                      f"{params.mlflow.register_min_accuracy})")
        # the chart gives each Ray container its own image as MNIST_IMAGE; the version records it
        cluster = rayjob["spec"]["rayClusterSpec"]
        images = {cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"],
                  *(g["template"]["spec"]["containers"][0]["image"] for g in cluster["workerGroupSpecs"])}
        assert mine[0].tags.get("image") in images, (mine[0].tags, images)

    print(f"\nMLflow run id: {run_id} (experiment {params.mlflow.experiment!r}, "
          f"test_accuracy {run.data.metrics.get('test_accuracy')}); registered "
          f"{params.mlflow.registered_model} version {mine[0].version}")
    print(f"S3 objects in s3://{artifacts_bucket} ({len(artifact_keys)}):")
    for key in artifact_keys:
        print(f"  {key}")
    print(f"S3 objects in s3://{bucket}/{prefix}/{params.train.run_name} ({len(checkpoint_keys)}):")
    for key in checkpoint_keys:
        print(f"  {key}")
    print(f"worker pulls: {[(p.name, str(p.data_cache)) for p in workers]}")
