"""How `mnist-job submit` decides (mnist_job/cluster/outcome.py): never from one field alone, and a failure's
first cause in plain words. The objects are shaped as the API server returns them; tests/kubernetes/test_submit.py
makes each case happen on the real stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mnist_job.cluster.outcome import Snapshot, decide, driver_failure, head_auth

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rayjob(deployment=None, job=None, reason=None, deadline=None, age=60) -> dict:
    status = {k: v for k, v in (("jobDeploymentStatus", deployment), ("jobStatus", job), ("reason", reason)) if v}
    return {"metadata": {"name": "j", "namespace": "mnist", "creationTimestamp": stamp(age)},
            "spec": {"activeDeadlineSeconds": deadline} if deadline else {}, "status": status}


def pod(name="j-head", age=60, waiting=None, scheduled=None, terminated=None, memory="2Gi") -> dict:
    state = {"waiting": waiting} if waiting else {"terminated": terminated} if terminated else {"running": {}}
    conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": scheduled}] \
        if scheduled else []
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": stamp(age)},
            "spec": {"containers": [{"name": "ray-head", "resources": {"limits": {"memory": memory}}}]},
            "status": {"conditions": conditions, "containerStatuses": [
                {"name": "ray-head", "image": "example.invalid/x:1", "state": state}]}}


def test_success_needs_the_deployment_complete_and_the_ray_job_succeeded():
    assert decide(Snapshot(rayjob("Complete", "SUCCEEDED")), NOW).state == "succeeded"
    assert decide(Snapshot(rayjob("Running", "SUCCEEDED")), NOW).state == "running"
    failed_job = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    assert decide(Snapshot(rayjob("Complete", "SUCCEEDED"), job=failed_job), NOW).state != "succeeded"


def test_a_failed_ray_job_status_alone_while_the_head_is_replaced_is_not_the_end():
    """KubeRay 1.6 says FAILED/Failure while a new head starts and the submitter's retry runs the job again."""
    for job in ("FAILED", "Failure"):
        assert decide(Snapshot(rayjob("Running", job)), NOW).state == "running"
    assert decide(Snapshot(rayjob("Retrying", "FAILED")), NOW).state == "running"


def test_a_spec_the_operator_refused_ends_the_wait_with_its_message():
    refused = rayjob("ValidationFailed")
    refused["status"]["message"] = "duplicate rule for DeletionPolicyType 'DeleteWorkers'"
    verdict = decide(Snapshot(refused), NOW)
    assert verdict.state == "failed" and "duplicate rule for DeletionPolicyType" in verdict.cause


def test_the_running_heads_token_authentication_is_read_only_when_the_rayjob_asks_for_it():
    asks = rayjob("Running")
    asks["spec"]["rayClusterSpec"] = {"authOptions": {"mode": "token"}}
    head = pod("j-head")
    head["metadata"]["labels"] = {"ray.io/node-type": "head"}
    head["status"]["phase"] = "Pending"
    assert head_auth(Snapshot(asks, pods=[head])) is None, "not judged before it runs"
    head["status"]["phase"] = "Running"
    assert head_auth(Snapshot(asks, pods=[head])) == ("j-head", "<unset>")
    head["spec"]["containers"][0]["env"] = [{"name": "RAY_AUTH_MODE", "value": "token"}]
    assert head_auth(Snapshot(asks, pods=[head])) == ("j-head", "token")
    assert head_auth(Snapshot(rayjob("Running"), pods=[head])) is None


def test_an_image_that_cannot_be_pulled_fails_once_it_has_lasted():
    stuck = pod(waiting={"reason": "ErrImagePull", "message": "no such host"}, age=400)
    verdict = decide(Snapshot(rayjob("Initializing"), pods=[stuck]), NOW, stuck_after_s=300)
    assert verdict.state == "failed" and verdict.cause.startswith("image example.invalid/x:1 cannot be pulled")
    fresh = pod(waiting={"reason": "ImagePullBackOff", "message": "back-off"}, age=30)
    assert decide(Snapshot(rayjob("Initializing"), pods=[fresh]), NOW, stuck_after_s=300).state == "running"


def test_an_unschedulable_pod_is_named_with_the_schedulers_message():
    message = "0/1 nodes are available: 1 Insufficient cpu."
    verdict = decide(Snapshot(rayjob("Initializing"), pods=[pod(scheduled=message, age=500)]), NOW)
    assert verdict.state == "failed" and verdict.cause == f"pod j-head cannot be scheduled: {message}"


def test_causes_of_a_failed_deployment_in_order():
    oom = pod(terminated={"reason": "OOMKilled", "exitCode": 137})
    verdict = decide(Snapshot(rayjob("Failed", "FAILED"), pods=[oom]), NOW)
    assert verdict.cause == "container ray-head of pod j-head was killed for memory (OOMKilled; its limit is 2Gi)"
    late = decide(Snapshot(rayjob("Failed", reason="DeadlineExceeded", deadline=20)), NOW)
    assert late.cause.startswith("the RayJob's activeDeadlineSeconds (20 s) passed")
    quota = {"message": "pods \"j-head\" is forbidden: exceeded quota: tiny, requested: limits.memory=2Gi",
             "involvedObject": {"kind": "RayCluster", "name": "j-abc"}}
    refused = decide(Snapshot(rayjob("Failed"), events=[quota]), NOW)
    assert refused.cause.startswith("a ResourceQuota refused a pod of RayCluster j-abc: pods \"j-head\" is forbidden")
    driver = decide(Snapshot(rayjob("Complete", "FAILED"), driver_log_tail="x\nerror: invalid input: train.epochs\n"),
                    NOW)
    assert driver.cause == "the driver failed: error: invalid input: train.epochs"


def test_the_drivers_traceback_is_its_tail_from_the_last_traceback():
    tail = "epoch 1\nTraceback (most recent call last):\n  File \"x\", line 1\nValueError: boom\n"
    assert driver_failure(tail) == "the driver failed:\nTraceback (most recent call last):\n  File \"x\", line 1\n" \
                                   "ValueError: boom"
    assert driver_failure("all fine\n") is None
