"""`mnist-job submit`, `status` and `logs`: a RayJob on the cluster of the current kubeconfig, told truthfully.

``submit -f MANIFEST`` applies the manifest (server-side apply: the RayJob and what comes with it, such as
its NetworkPolicies) and, with ``--wait``, follows the submitter's logs (the driver's output) while it reads
the RayJob, its submitter Job, their pods and events every few seconds; the outcome is decided from all of
them together (mnist_job/cluster/outcome.py). Exit codes: 0 the Ray job SUCCEEDED, 1 it FAILED or STOPPED or
could not start (the first cause is printed in plain words), 2 invalid input, 3 the API server unreachable, 4
refused: the running head lacks the Ray token authentication the RayJob asks for (the RayJob is then deleted).
Once the outcome is known it prints what the job cost (CPU- and GPU-hours, queue wait; mnist_job/cluster/cost.py)
and logs it to the job's MLflow run, with the resolved RayJob and the images' digests, where MLFLOW_TRACKING_URI
reaches the platform's MLflow (run_record.py). A refused RayJob is deleted; any other is left as it is: its
deletion rules and TTL (the chart's) decide.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kubernetes.client.rest import ApiException

from mnist_job.cluster.cost import reckon
from mnist_job.cluster.kube import Cluster, read_manifest
from mnist_job.cluster.outcome import Snapshot, Verdict, decide, first_cause, head_auth, status_line
from mnist_job.core.errors import InvalidInput, JobError, ServiceUnavailable

logger = logging.getLogger(__name__)
TERMINAL = ("Complete", "Failed", "ValidationFailed")
EXIT = {"succeeded": 0, "failed": 1, "running": 0, "refused": 4}
API_OUTAGE_S = 300  # how long the wait rides out an unreachable API server (a control-plane restart)


def submit(manifest: Path, namespace: str | None, wait: bool, timeout_s: float, stuck_after_s: float,
           tracking_uri: str | None = None, say=print, in_cluster: bool = False) -> int:
    """Apply ``manifest``; with ``wait``, follow the job to its end and return its exit code."""
    documents = read_manifest(manifest)
    cluster = Cluster(in_cluster=in_cluster)
    (rayjob,) = [d for d in documents if d["kind"] == "RayJob"]
    namespace = rayjob.get("metadata", {}).get("namespace") or namespace or cluster.default_namespace
    name = rayjob["metadata"]["name"]
    existing = cluster.rayjob(name, namespace)
    if existing is not None:
        raise InvalidInput(f"RayJob {namespace}/{name} exists already ({status_line(existing)}): see `mnist-job "
                           f"status {name} -n {namespace}`, or delete it first to run it again")
    applied = cluster.apply(documents, namespace)
    say(f"submitted to {cluster.server}: {', '.join(applied)} in namespace {namespace}")
    if not wait:
        say(f"follow it with: mnist-job status {name} -n {namespace}; mnist-job logs {name} -n {namespace}")
        return 0
    followed = follow(cluster, name, namespace, timeout_s, stuck_after_s, say)
    code = report(followed.verdict, name, namespace, say)
    if followed.rayjob is not None and followed.verdict.state != "running":
        account(followed, tracking_uri, say)
    return code


@dataclass
class Followed:
    """What following a RayJob came to: the verdict, the RayJob as last read, the last state of every pod seen."""

    verdict: Verdict
    rayjob: dict | None = None
    pods: dict[str, dict] = field(default_factory=dict)  # by uid: pods deleted on the way (workers) count too
    head_checked: bool = False  # the running head's token authentication was checked


def follow(cluster: Cluster, name: str, namespace: str, timeout_s: float, stuck_after_s: float, say,
           poll_s: float = 2.0) -> Followed:
    """Read the RayJob and what it made until the outcome is known, printing the driver's lines as they come."""
    started, last_line, followed, followers = time.monotonic(), "", set(), []
    outage_since, seen = None, Followed(Verdict("running", ""))
    while True:
        try:
            rayjob = cluster.rayjob(name, namespace)
            if rayjob is None:
                seen.verdict = Verdict("failed", "deleted", f"RayJob {namespace}/{name} was deleted while it ran")
                return seen
            # the driver's last lines name a failure's cause: read once the deployment has ended, not every poll
            ended = (rayjob.get("status") or {}).get("jobDeploymentStatus") in TERMINAL
            snapshot = cluster.snapshot(rayjob, log_lines=60 if ended else 0)
            outage_since = None
        except (ServiceUnavailable, ApiException) as exc:  # an API server restart: the job runs on; read again
            outage_since = outage_since or time.monotonic()
            if time.monotonic() - outage_since > API_OUTAGE_S:
                raise
            say(f"cannot read RayJob {name}, retrying: {str(exc).splitlines()[0]}")
            time.sleep(poll_s)
            continue
        seen.rayjob = rayjob
        seen.pods.update((pod["metadata"]["uid"], pod) for pod in snapshot.pods)
        followers += _follow_new_submitters(cluster, snapshot.pods, followed, say)
        seen.verdict = verdict = _refused_head(cluster, snapshot, seen, say) or \
            decide(snapshot, datetime.now(UTC), stuck_after_s)
        if verdict.summary != last_line:
            logger.info(f"RayJob {name}: {verdict.summary}")
            last_line = verdict.summary
        if verdict.state != "running":
            for follower in followers:  # the driver's last lines before the verdict
                follower.join(10)
            return seen
        if time.monotonic() - started > timeout_s:
            seen.verdict = Verdict("failed", verdict.summary, f"not finished after --timeout {timeout_s:.0f} s ("
                                   f"{verdict.summary}){'; ' + cause if (cause := first_cause(snapshot)) else ''}")
            return seen
        time.sleep(poll_s)


def _refused_head(cluster: Cluster, snapshot: Snapshot, seen: Followed, say) -> Verdict | None:
    """Once its head runs, a RayJob that asks for Ray token authentication has it, or it is deleted and refused
    (exit 4): without it anyone reaching the head's ports could run code."""
    found = None if seen.head_checked else head_auth(snapshot)
    if found is None:
        return None
    seen.head_checked, (pod, mode) = True, found
    if mode == "token":
        say(f"head pod {pod} runs with Ray token authentication")
        return None
    name, namespace = snapshot.rayjob["metadata"]["name"], snapshot.rayjob["metadata"]["namespace"]
    cluster.delete_rayjob(name, namespace)
    return Verdict("refused", status_line(snapshot.rayjob), f"head pod {pod} runs without Ray token authentication "
                   f"(RAY_AUTH_MODE={mode}, expected token): anyone reaching its ports could run code; "
                   f"RayJob {name} deleted")


def _follow_new_submitters(cluster: Cluster, pods: list[dict], followed: set[str], say) -> list[threading.Thread]:
    """A thread per submitter pod (one per attempt) that prints its lines once it runs."""
    started = []
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        uid = pod["metadata"]["uid"]
        running = (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")
        if "batch.kubernetes.io/job-name" in labels and running and uid not in followed:
            followed.add(uid)
            started.append(threading.Thread(target=_print_lines, args=(cluster, pod, say), daemon=True))
            started[-1].start()
    return started


def _print_lines(cluster: Cluster, pod: dict, say) -> None:
    try:
        for line in cluster.follow_logs(pod):
            say(line.decode(errors="replace").rstrip("\n"))
    except Exception as exc:  # noqa: BLE001 (the pod went, the API server restarted: the verdict goes on)
        logger.debug(f"logs of {pod['metadata']['name']} ended: {exc}")


def account(followed: Followed, tracking_uri: str | None, say) -> None:
    """Print what the job cost and log it to the job's MLflow run (mnist_job/cluster/cost.py, run_record.py);
    a cost that cannot be logged is said, and changes nothing else."""
    from mnist_job.cluster.run_record import NotRecorded, record  # MLflow (1.3 s): only once a job has ended

    cost = reckon(followed.rayjob, list(followed.pods.values()), datetime.now(UTC))
    say(cost.summary())
    for charge in cost.pods:
        say(f"  {charge.line()}")
    try:
        run_id = record(tracking_uri, followed.rayjob, cost, images_run(followed.pods.values()))
        say(f"cost logged to MLflow run {run_id} (metrics cost_*; artifacts submit/rayjob.yaml, submit/images.json)")
    except (NotRecorded, JobError) as exc:
        say(f"cost not logged to MLflow: {exc}")


def images_run(pods) -> dict[str, str]:
    """Each image the pods ran, with the digest the node reported for it (``imageID``), where it did."""
    return {cs["image"]: cs.get("imageID") or "not reported by the node"
            for pod in pods for cs in (pod.get("status") or {}).get("containerStatuses") or []}


def report(verdict: Verdict, name: str, namespace: str, say=print) -> int:
    if verdict.state == "succeeded":
        say(f"RayJob {namespace}/{name}: SUCCEEDED ({verdict.summary})")
    elif verdict.state in ("failed", "refused"):
        say(f"RayJob {namespace}/{name}: {verdict.state.upper()} ({verdict.summary})\ncause: {verdict.cause}")
    else:
        say(f"RayJob {namespace}/{name}: running ({verdict.summary})")
    return EXIT[verdict.state]


def status(name: str, namespace: str | None, stuck_after_s: float, say=print, in_cluster: bool = False) -> int:
    """One reading of a RayJob submitted earlier: what it came to so far, and its first cause if it failed."""
    cluster = Cluster(in_cluster=in_cluster)
    namespace = namespace or cluster.default_namespace
    rayjob = cluster.rayjob(name, namespace)
    if rayjob is None:
        raise InvalidInput(f"NAME: no RayJob {name} in namespace {namespace}")
    snapshot = cluster.snapshot(rayjob)
    for pod in snapshot.pods:
        say(f"pod {pod['metadata']['name']}: {(pod.get('status') or {}).get('phase', '?')}")
    return report(decide(snapshot, datetime.now(UTC), stuck_after_s), name, namespace, say)


def logs(name: str, namespace: str | None, follow_them: bool, say=print, in_cluster: bool = False) -> int:
    """The driver's output: the submitter pods' logs (every attempt), oldest first."""
    cluster = Cluster(in_cluster=in_cluster)
    namespace = namespace or cluster.default_namespace
    if cluster.rayjob(name, namespace) is None:
        raise InvalidInput(f"NAME: no RayJob {name} in namespace {namespace}")
    pods = cluster.submitter_pods(name, namespace)
    if not pods:
        say(f"RayJob {namespace}/{name} has no submitter pod yet")
        return 0
    for pod in pods[:-1] if follow_them else pods:
        say(cluster.log_tail(pod, 100000).rstrip("\n"))
    if follow_them:
        _print_lines(cluster, pods[-1], say)
    return 0
