"""What a RayJob cost, from the pods `mnist-job submit` saw while it followed the job.

Kubernetes keeps no bill: pods of a finished RayJob are deleted by its deletion rules (the workers at once, see
charts/kuberay-mnist-rayjob/values.yaml), so ``submit`` keeps the last state it read of every pod and reckons
at the end. A pod is charged its requests (CPU cores, GPUs) from the start of its first container to the end
of its last one, or to the Ray job's end when it still ran then (the time a finished cluster waits for its
deletion is not the job's). Queue wait is read on the RayJob's own clock: created -> the last pod of the first
RayCluster bound to a node ("admitted") and -> all of them running. Pure functions over the objects as the API
server returns them, like mnist_job/cluster/outcome.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubernetes.utils.quantity import parse_quantity

GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")


@dataclass(frozen=True)
class PodCharge:
    name: str
    cpu: float  # cores requested, all containers
    gpu: float
    started: datetime
    ended: datetime

    @property
    def hours(self) -> float:
        return max((self.ended - self.started).total_seconds(), 0.0) / 3600

    def line(self) -> str:
        gpus = f" + {self.gpu:g} GPU" if self.gpu else ""
        return (f"pod {self.name}: {self.cpu:g} CPU{gpus} x {self.hours * 3600:.0f} s "
                f"({self.started:%H:%M:%S} -> {self.ended:%H:%M:%S} UTC)")


@dataclass(frozen=True)
class RunCost:
    queue_wait_s: float | None  # RayJob created -> every pod of its first RayCluster bound to a node
    start_wait_s: float | None  # RayJob created -> every one of those pods running
    pods: tuple[PodCharge, ...]

    @property
    def cpu_hours(self) -> float:
        return sum(p.cpu * p.hours for p in self.pods)

    @property
    def gpu_hours(self) -> float:
        return sum(p.gpu * p.hours for p in self.pods)

    def metrics(self) -> dict[str, float]:
        """What is logged to the job's MLflow run (the waits only when known)."""
        waits = {"cost_queue_wait_s": self.queue_wait_s, "cost_start_wait_s": self.start_wait_s}
        return {"cost_cpu_hours": round(self.cpu_hours, 6), "cost_gpu_hours": round(self.gpu_hours, 6),
                **{k: round(v, 1) for k, v in waits.items() if v is not None}}

    def summary(self) -> str:
        waits = ", ".join(f"{label} {value:.0f} s" for label, value in
                          (("queue wait to admitted", self.queue_wait_s), ("to all pods running", self.start_wait_s))
                          if value is not None)
        return (f"cost: {self.cpu_hours:.4f} CPU-hours, {self.gpu_hours:.4f} GPU-hours over {len(self.pods)} pods"
                + (f"; {waits}" if waits else ""))


def reckon(rayjob: dict, pods: list[dict], now: datetime) -> RunCost:
    """The cost of ``rayjob`` from the last state seen of each of its ``pods`` (its RayClusters' and submitters')."""
    job_end = timestamp((rayjob.get("status") or {}).get("endTime")) or now
    charges = tuple(c for c in (charge(pod, job_end) for pod in pods) if c is not None)
    created = timestamp(rayjob["metadata"].get("creationTimestamp"))
    first = first_cluster_pods(pods)
    bound = [condition_time(p, "PodScheduled") for p in first]
    running = [containers_started(p) for p in first]
    return RunCost(_wait(created, bound), _wait(created, running), charges)


def charge(pod: dict, job_end: datetime) -> PodCharge | None:
    """What ``pod`` is charged, or None when none of its containers ever started."""
    started = containers_started(pod)
    if started is None:
        return None
    ended = containers_finished(pod) or job_end
    requests = [(c.get("resources") or {}).get("requests") or {} for c in pod["spec"].get("containers", [])]
    cpu = sum(float(parse_quantity(r["cpu"])) for r in requests if "cpu" in r)
    gpu = sum(float(parse_quantity(r[g])) for r in requests for g in GPU_RESOURCES if g in r)
    return PodCharge(pod["metadata"]["name"], cpu, gpu, started, max(min(ended, job_end), started))


def first_cluster_pods(pods: list[dict]) -> list[dict]:
    """The pods of the RayJob's first RayCluster (KubeRay names each by the cluster's ``ray.io/cluster`` label),
    without replacements made after it first ran (a restarted worker is not queue time)."""
    clusters = sorted((p for p in pods if "ray.io/cluster" in p["metadata"].get("labels", {})),
                      key=lambda p: p["metadata"]["creationTimestamp"])
    if not clusters:
        return []
    name = clusters[0]["metadata"]["labels"]["ray.io/cluster"]
    ours = [p for p in clusters if p["metadata"]["labels"]["ray.io/cluster"] == name]
    running = [t for t in map(containers_started, ours) if t is not None]
    first_run = min(running) if running else None
    return [p for p in ours if first_run is None or timestamp(p["metadata"]["creationTimestamp"]) <= first_run]


def containers_started(pod: dict) -> datetime | None:
    states = _container_states(pod)
    times = [timestamp(s.get("startedAt")) for s in states if s.get("startedAt")]
    return min(times) if times else None


def containers_finished(pod: dict) -> datetime | None:
    """The end of the pod's last container, when all of them have ended."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ended = [((cs.get("state") or {}).get("terminated") or {}).get("finishedAt") for cs in statuses]
    if not statuses or not all(ended):
        return None
    return max(timestamp(t) for t in ended)


def condition_time(pod: dict, kind: str) -> datetime | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return timestamp(condition.get("lastTransitionTime"))
    return None


def timestamp(value) -> datetime | None:
    """An API server time (RFC 3339 text, or a datetime from the typed client)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _container_states(pod: dict) -> list[dict]:
    """Every started state of the pod's containers, the current one and the one before a restart."""
    states = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            states += [s for s in (state.get("running"), state.get("terminated")) if s]
    return states


def _wait(created: datetime | None, moments: list[datetime | None]) -> float | None:
    if created is None or not moments or any(m is None for m in moments):
        return None
    return (max(moments) - created).total_seconds()
