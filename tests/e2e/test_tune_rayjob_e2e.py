"""The tuning RayJob (k8s/rayjob-tune-cpu-kind.yaml, rendered fresh) run by the same harness as the training one.

Its cluster is the CPU training RayJob's to the byte (values-tune.yaml changes only the job: the
entrypoint and the deadline; checked below), so the study runs on the session's pods: the head, two
1-CPU worker pods in sandboxes, the platform's MLflow and S3. The harness appends a tiny budget to the
entrypoint (2 trials, 1 epoch), printed as substitutions. Run alone with `make e2e-local`.
"""

from __future__ import annotations

import copy
import re

import pytest

from tests.support import kuberay as kl
from tests.support.kuberay.rendering import NAMESPACE, RAYJOB_CHART, helm_template
from tests.support.project_env import PROJECT_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TINY_STUDY = ("tune.trials=2", "tune.max_epochs=1", "tune.max_concurrent=1")


def _tune_rayjob() -> dict:
    docs = helm_template(RAYJOB_CHART, PROJECT_ENV["TUNE_RELEASE"], "-f", str(RAYJOB_CHART / "values-cpu-kind.yaml"),
                         "-f", str(RAYJOB_CHART / "values-tune.yaml"))
    (rayjob,) = [d for d in docs if d["kind"] == "RayJob"]
    return rayjob


def test_tune_rayjob_runs_a_study_with_nested_runs(e2e, local_platform, ray_cluster):
    from mlflow import MlflowClient

    tune = _tune_rayjob()
    train = e2e.rayjob
    same_cluster = copy.deepcopy(tune["spec"]["rayClusterSpec"])
    assert re.sub(PROJECT_ENV["TUNE_RELEASE"], train["metadata"]["name"], repr(same_cluster)) == \
        repr(train["spec"]["rayClusterSpec"]), "values-tune.yaml must change only the job, not the cluster"
    assert tune["metadata"]["namespace"] == NAMESPACE

    head = next(p for p in ray_cluster.pods if p.role == "head")
    entrypoint, runtime_env = kl.job_submission(tune, ray_cluster.pods, e2e.subs, TINY_STUDY)
    args, params = kl.entrypoint_params(entrypoint, head.root / "app" / "params.yaml")
    assert args.command == "tune" and params.tune.study_name == tune["metadata"]["name"]
    print(f"entrypoint (manifest): {tune['spec']['entrypoint']}")
    print(f"entrypoint (local):    {entrypoint}")

    with e2e.phases.run("job: the tuning RayJob's entrypoint (2 trials, 1 epoch)"):
        outcome = kl.submit_and_follow(ray_cluster, tune, entrypoint, runtime_env, e2e.logs, kl.JOB_CAP_S,
                                        subs=e2e.subs)
    assert outcome.status == "SUCCEEDED", f"{outcome.status}: {outcome.message[-2000:]}\nlogs: {outcome.log_file}"

    study_runs = re.findall(r"^study run: (\w+) ", outcome.logs, flags=re.M)
    assert len(study_runs) == 1, f"expected one `study run:` line, got {study_runs}"
    client = MlflowClient(tracking_uri=local_platform.mlflow_admin_uri())  # the server runs basic-auth
    parent = client.get_run(study_runs[0])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children), \
        [(c.info.run_id, c.info.status) for c in children]
    assert parent.data.tags["best.run_id"] in {c.info.run_id for c in children}
    bucket, _, prefix = params.tune.storage_path.split("://", 1)[1].partition("/")
    keys = local_platform.keys(bucket, f"{prefix}/{params.tune.study_name}")
    assert any("experiment_state" in k for k in keys), f"no study state in s3://{bucket}/{prefix}: {keys[:20]}"
    print(f"study {params.tune.study_name}: parent {parent.info.run_id}, children "
          f"{[c.info.run_id for c in children]}, {len(keys)} objects in s3://{bucket}/{prefix}")
