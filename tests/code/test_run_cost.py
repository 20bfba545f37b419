"""What `mnist-job submit` charges a RayJob (mnist_job/cluster/cost.py), on pods shaped as the API server returns
them: requests x run time per pod, a pod still running charged to the job's end, a replacement worker charged but
not counted as queue time. tests/kubernetes/test_submit.py checks the same figures against a real job's pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mnist_job.cluster.cost import reckon
from mnist_job.cluster.run_record import run_name

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, created, scheduled, started, finished=None, cpu="1", gpu=None, cluster="j-raycluster-x", restarted=None):
    requests = {"cpu": cpu, **({"nvidia.com/gpu": gpu} if gpu else {})}
    state = {"terminated": {"startedAt": at(started), "finishedAt": at(finished)}} if finished is not None \
        else {"running": {"startedAt": at(started)}}
    last = {"terminated": {"startedAt": at(restarted), "finishedAt": at(started)}} if restarted is not None else {}
    labels = {"ray.io/cluster": cluster} if cluster else {"batch.kubernetes.io/job-name": "j"}
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": at(created), "labels": labels},
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": at(scheduled)}],
                       "containerStatuses": [{"name": "c", "image": "i", "state": state, "lastState": last}]}}


RAYJOB = {"metadata": {"name": "j", "creationTimestamp": at(0)}, "status": {"endTime": at(600)},
          "spec": {"entrypoint": "mnist-job train --set train.epochs=1 --set train.run_name=mnist-train-0102"}}


def test_each_pod_is_charged_its_requests_from_its_start_to_its_end_or_the_jobs():
    pods = [pod("head", 1, 2, 30, cpu="1500m"),  # still running when the job ended: charged to 600 s
            pod("worker", 1, 40, 60, gpu="1"),  # bound last: the queue wait
            pod("submitter", 100, 101, 110, finished=590, cpu="200m", cluster=None)]
    cost = reckon(RAYJOB, pods, now=T0 + timedelta(hours=1))
    hours = {c.name: c.hours * 3600 for c in cost.pods}
    assert hours == {"head": 570, "worker": 540, "submitter": 480}
    assert cost.cpu_hours == pytest.approx((1.5 * 570 + 1 * 540 + 0.2 * 480) / 3600)
    assert cost.gpu_hours == pytest.approx(540 / 3600)
    assert (cost.queue_wait_s, cost.start_wait_s) == (40, 60)
    assert cost.metrics()["cost_queue_wait_s"] == 40 and "0.1500 GPU-hours over 3 pods" in cost.summary()


def test_a_replacement_worker_costs_time_but_is_not_queue_wait_and_a_pod_never_started_costs_nothing():
    never = pod("pending", 250, 251, 252)  # a second replacement that never ran
    never["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
    pods = [pod("head", 1, 2, 30), pod("worker", 1, 5, 40, finished=200), pod("worker-2", 210, 300, 320), never]
    cost = reckon(RAYJOB, pods, now=T0)
    assert [c.name for c in cost.pods] == ["head", "worker", "worker-2"]
    assert (cost.queue_wait_s, cost.start_wait_s) == (5, 40), "the replacement (bound at 300 s) is not queue time"
    assert cost.pods[2].hours * 3600 == 280


def test_a_restarted_container_is_charged_from_its_first_start():
    cost = reckon(RAYJOB, [pod("head", 1, 2, 100, restarted=10)], now=T0)
    assert cost.pods[0].hours * 3600 == 590


def test_a_job_still_running_is_charged_to_now():
    running = {**RAYJOB, "status": {}}
    cost = reckon(running, [pod("head", 1, 2, 30)], now=T0 + timedelta(seconds=90))
    assert cost.pods[0].hours * 3600 == 60


def test_the_run_is_the_one_the_entrypoint_names():
    assert run_name(RAYJOB) == "mnist-train-0102"
    assert run_name({**RAYJOB, "spec": {"entrypoint": "mnist-job train"}}) == "j"
    again = RAYJOB["spec"]["entrypoint"] + " --set train.run_name=later"
    assert run_name({**RAYJOB, "spec": {"entrypoint": again}}) == "later", "the last --set wins, as in the CLI"
