"""What a RayJob came to, decided from every signal together, and the first cause of a failure in plain words.

KubeRay's own fields are not enough alone: its ``jobStatus`` can say FAILED (or, in 1.6, ``Failure``) while
the head is being replaced and the submitter's retry will run the job again, and a pod that cannot start
leaves the RayJob ``Initializing`` with no word of why. So ``decide`` reads a ``Snapshot`` of the RayJob, its
submitter Job, the pods of both and the namespace's events, and says succeeded, failed (with its cause) or
still running. Pure functions over the objects as the API server returns them (dicts), so every rule is
tested on real objects (tests/kubernetes/test_submit.py) and on its own (tests/code/test_submit_outcome.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
FINISHED_OK, FINISHED_BAD = ("SUCCEEDED",), ("FAILED", "STOPPED")


@dataclass
class Snapshot:
    """The RayJob and what it made, read at one moment (mnist_job/cluster/kube.py)."""

    rayjob: dict
    job: dict | None = None  # the submitter Job (K8sJobMode), if made yet
    pods: list[dict] = field(default_factory=list)  # the RayCluster's pods and the submitter's
    events: list[dict] = field(default_factory=list)  # the namespace's events about these objects
    driver_log_tail: str = ""  # the submitter's last lines (the driver's output), where readable


@dataclass(frozen=True)
class Verdict:
    state: str  # "running", "succeeded", "failed" or "refused" (mnist_job/cluster/submit.py refuses)
    summary: str  # one line: what KubeRay says
    cause: str | None = None  # the first cause found, in plain words


def status_line(rayjob: dict) -> str:
    status = rayjob.get("status") or {}
    parts = [f"deployment={status.get('jobDeploymentStatus') or '<none>'}", f"job={status.get('jobStatus') or '<none>'}"]
    if status.get("reason"):
        parts.append(f"reason={status['reason']}")
    return " ".join(parts)


def decide(snapshot: Snapshot, now: datetime | None = None, stuck_after_s: float = 300) -> Verdict:
    """Succeeded only when KubeRay's deployment is Complete and the Ray job SUCCEEDED; failed when the deployment
    failed, the Ray job ended FAILED/STOPPED, or a pod could not start for ``stuck_after_s``; else running."""
    status = snapshot.rayjob.get("status") or {}
    deployment, job = status.get("jobDeploymentStatus"), status.get("jobStatus")
    summary = status_line(snapshot.rayjob)
    if deployment == "Complete" and job in FINISHED_OK and not _job_failed(snapshot.job):
        return Verdict("succeeded", summary)
    if deployment == "ValidationFailed":  # the operator refused the spec and stops reconciling it
        return Verdict("failed", summary, _kuberay_message(status) or "KubeRay refused the RayJob's spec")
    if deployment == "Failed" or (deployment == "Complete" and job in FINISHED_BAD):
        return Verdict("failed", summary, first_cause(snapshot) or _kuberay_message(status) or "the Ray job failed")
    stuck = stuck_pod(snapshot, now or datetime.now(UTC), stuck_after_s)
    if stuck:
        return Verdict("failed", summary, stuck)
    return Verdict("running", summary)


def first_cause(snapshot: Snapshot) -> str | None:
    """The first reason found, in the order a person would look: a pod that cannot start, a container killed,
    a deadline, a quota, then the driver's own traceback."""
    for pod in snapshot.pods:
        cause = pod_cannot_start(pod) or killed_for_memory(pod)
        if cause:
            return cause
    status = snapshot.rayjob.get("status") or {}
    if status.get("reason") == "DeadlineExceeded":
        deadline = (snapshot.rayjob.get("spec") or {}).get("activeDeadlineSeconds")
        return f"the RayJob's activeDeadlineSeconds ({deadline} s) passed: {status.get('message', '')}".rstrip(": ")
    quota = quota_refusal(snapshot.events)
    if quota:
        return quota
    return driver_failure(snapshot.driver_log_tail)


def head_auth(snapshot: Snapshot) -> tuple[str, str] | None:
    """(head pod, its Ray container's RAY_AUTH_MODE or "<unset>") once a head runs, for a RayJob that asks for
    token authentication (``authOptions.mode: token``, which KubeRay turns into that variable); else None."""
    cluster = (snapshot.rayjob.get("spec") or {}).get("rayClusterSpec") or {}
    if (cluster.get("authOptions") or {}).get("mode") != "token":
        return None
    for pod in snapshot.pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("ray.io/node-type") == "head" and (pod.get("status") or {}).get("phase") == "Running":
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
            return pod["metadata"]["name"], env.get("RAY_AUTH_MODE") or "<unset>"
    return None


def pod_cannot_start(pod: dict) -> str | None:
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_REASONS:
            return (f"image {cs.get('image')} cannot be pulled (pod {name}, container {cs['name']}: "
                    f"{waiting['reason']}: {waiting.get('message', '')})")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            return f"pod {name} cannot be scheduled: {condition.get('message', '')}"
    return None


def killed_for_memory(pod: dict) -> str | None:
    status = pod.get("status") or {}
    limits = {c["name"]: ((c.get("resources") or {}).get("limits") or {}).get("memory")
              for c in (pod.get("spec") or {}).get("containers", [])}
    for cs in status.get("containerStatuses") or []:
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            if (state.get("terminated") or {}).get("reason") == "OOMKilled":
                return (f"container {cs['name']} of pod {pod['metadata']['name']} was killed for memory "
                        f"(OOMKilled; its limit is {limits.get(cs['name']) or 'not set'})")
    return None


def quota_refusal(events: list[dict]) -> str | None:
    for event in events:
        message = event.get("message") or ""
        if "exceeded quota" in message:
            involved = event.get("involvedObject") or {}
            return f"a ResourceQuota refused a pod of {involved.get('kind', '')} {involved.get('name', '')}: {message}"
    return None


def driver_failure(log_tail: str, lines: int = 12) -> str | None:
    """The driver's traceback (its last ``lines`` lines from ``Traceback``), or its error line, if any."""
    text = log_tail.rstrip().splitlines()
    start = max((i for i, line in enumerate(text) if line.startswith("Traceback")), default=None)
    if start is not None:
        return "the driver failed:\n" + "\n".join(text[start:][-lines:])
    errors = [line for line in text if line.startswith("error:")]
    return f"the driver failed: {errors[-1]}" if errors else None


def stuck_pod(snapshot: Snapshot, now: datetime, stuck_after_s: float) -> str | None:
    """A pod that could not start for ``stuck_after_s`` (an image, a scheduling or a quota problem that a
    retry or an autoscaler did not fix in that time)."""
    for pod in snapshot.pods:
        cause = pod_cannot_start(pod)
        if cause and _age_s(pod, now) >= stuck_after_s:
            return cause
    quota = quota_refusal(snapshot.events)
    if quota and _age_s(snapshot.rayjob, now) >= stuck_after_s:
        return quota
    return None


def _age_s(obj: dict, now: datetime) -> float:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return 0.0
    return (now - datetime.fromisoformat(str(created).replace("Z", "+00:00"))).total_seconds()


def _job_failed(job: dict | None) -> bool:
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions)


def _kuberay_message(status: dict) -> str | None:
    if status.get("reason") or status.get("message"):
        return f"KubeRay: {status.get('reason', '')} {status.get('message', '')}".strip()
    return None
