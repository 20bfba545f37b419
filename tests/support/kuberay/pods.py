"""The RayCluster's pods: `ray start` as KubeRay 1.7 builds it, each node in its own pod sandbox.

KubeRay v1.7.0 (BuildPod, generateRayStartCommand) completes rayStartParams (address, block,
dashboard-host, metrics-export-port, dashboard-agent-listen-port, num-cpus and memory from the
limits), runs ``/bin/bash -c -- "ulimit -n ...; ray start ..."`` and appends its env vars (env.py).
The harness does the same; then the ports (one loopback for every node) and the CPUs (this machine
has fewer) are changed, each recorded as a substitution.
"""

from __future__ import annotations

import copy
import math
import os
import secrets
from dataclasses import dataclass, field

from tests.support import services
from tests.support.kuberay.env import NAMESPACE, ServiceMap, container_base_env, resolve_env
from tests.support.kuberay.operator_builds import (
    DEFAULT_CLIENT_PORT,
    DEFAULT_DASHBOARD_PORT,
    DEFAULT_GCS_PORT,
    ULIMIT,
    init_containers,
    kube_suffix,
    kuberay_node_env,
    ray_start_command,
    ray_start_params,
    token_env,
)
from tests.support.kuberay.rendering import (
    PlatformView,
    Substitutions,
    groups,
    image_spec,
    ray_container,
    say,
)
from tests.support.kuberay.sandbox import PodSandbox, pod_sandbox, pod_volumes, quantity

WHY_LOCAL_PARAM = {
    "node-ip-address": "the pod IP: every pod shares one loopback-only network namespace",
    "address": "the head Service: no cluster DNS, the head listens on loopback",
    "num-cpus": "this machine has fewer cores than the limits ask for",
    "object-store-memory": "Ray would size it from the host's memory: no cgroup memory limit here",
}


@dataclass
class RayPod:
    role: str
    group: str
    sandbox: PodSandbox
    cpus_manifest: float
    cpus_local: int
    init: list[tuple[PodSandbox, list[str]]] = field(default_factory=list)  # init containers, in order
    start_command: str = ""  # the local /bin/bash -c string

    @property
    def name(self) -> str:
        return self.sandbox.name

    @property
    def root(self):
        return self.sandbox.root

    @property
    def env(self) -> dict[str, str]:
        return self.sandbox.env

    @property
    def data_cache(self):
        return self.sandbox.live_path(self.sandbox.env["MNIST_DATA_CACHE"])


@dataclass
class ClusterPlan:
    cluster: str  # the RayCluster's name (<rayjob>-xxxxx)
    token: str
    svc: ServiceMap
    platform: PlatformView  # the platform's objects + the token Secret KubeRay creates
    gcs_port: int
    dashboard_port: int
    client_port: int

    @property
    def head_service(self) -> str:
        return f"{self.cluster}-head-svc"

    @property
    def dashboard_url(self) -> str:  # RayJob status.dashboardURL
        return f"{self.head_service}.{NAMESPACE}.svc.cluster.local:{DEFAULT_DASHBOARD_PORT}"


def plan_cluster(rayjob: dict, platform: PlatformView, svc: ServiceMap, subs: Substitutions) -> ClusterPlan:
    cluster = f"{rayjob['metadata']['name']}-{kube_suffix()}"
    auth = (rayjob["spec"]["rayClusterSpec"].get("authOptions") or {}).get("mode", "disabled")
    token = secrets.token_hex(16) if auth == "token" else ""
    docs = list(platform.docs)
    if token:  # KubeRay creates Secret <cluster> (key auth_token) for authOptions.mode=token
        docs.append({"kind": "Secret", "metadata": {"name": cluster}, "stringData": {"auth_token": token}})
        subs.add("ray auth token", f"Secret {cluster} made by KubeRay", "a random token made by the harness",
                 "no operator here")
    plan = ClusterPlan(cluster, token, svc, PlatformView(docs), services.free_port(), services.free_port(),
                       services.free_port())
    for port, local in ((DEFAULT_GCS_PORT, plan.gcs_port), (DEFAULT_DASHBOARD_PORT, plan.dashboard_port),
                        (DEFAULT_CLIENT_PORT, plan.client_port)):
        svc.add(plan.head_service, port, f"127.0.0.1:{local}")
    return plan


def plan_pods(rayjob: dict, plan: ClusterPlan, root, subs: Substitutions, cpus_available: int | None = None,
              drop_env: tuple[str, ...] = ()) -> list[RayPod]:
    """One sandbox per head/worker replica. ``drop_env``: names removed from the manifest env and the image's ENV
    (to show what the harness reports when the charts lack them)."""
    cpus_available = cpus_available or os.cpu_count() or 2
    image = image_spec()
    image_env = {k: v for k, v in image.env.items() if k not in drop_env}
    token_secret = plan.cluster if plan.token else None
    pods = []
    for role, group, spec, replicas in groups(rayjob):
        container = copy.deepcopy(ray_container(spec))
        container["env"] = [e for e in container.get("env", []) if e["name"] not in drop_env]
        params = ray_start_params(role, spec, container, f"{plan.head_service}.{NAMESPACE}.svc.cluster.local:"
                                                         f"{DEFAULT_GCS_PORT}")
        pod_spec = spec["template"]["spec"]
        memory = quantity((container.get("resources") or {}).get("limits", {}).get("memory", "1Gi"))
        head_fqdn = f"{plan.head_service}.{NAMESPACE}.svc.cluster.local"
        for _ in range(replicas):
            name = f"{plan.cluster}-head-{kube_suffix()}" if role == "head" else f"{plan.cluster}-{group}-worker-{kube_suffix()}"
            injected = kuberay_node_env(role, group, plan.cluster, name, ray_start_command(role, params), token_secret)
            base = container_base_env(image_env, name, plan.platform, plan.svc)
            env = {**base, **resolve_env(container, plan.platform, f"{role} group {group!r}", injected)}
            # KubeRay adds an emptyDir at /dev/shm (medium Memory, the memory size) when the Ray container has none
            volumes = pod_volumes(name, pod_spec, container, root, subs, extra=[("shared-mem", int(memory))],
                                  sources=plan.platform)
            sandbox = pod_sandbox(name, pod_spec, container, env, image, root, subs, plan.svc, volumes,
                                  extra_mounts=[("shared-mem", "/dev/shm")])
            pod = RayPod(role, group, sandbox, float(params.get("num-cpus", 1)), int(float(params.get("num-cpus", 1))))
            for init in init_containers(role, pod_spec, container, head_fqdn):
                init["env"] = [e for e in init.get("env", []) if e["name"] not in drop_env]
                # KubeRay appends FQ_RAY_IP/RAY_IP to every init container, the token to wait-gcs-ready
                extra = [{"name": "FQ_RAY_IP", "value": head_fqdn}, {"name": "RAY_IP", "value": plan.head_service}]
                if init["name"] == "wait-gcs-ready":
                    extra += token_env(token_secret)
                init_env = {**base, **resolve_env(init, plan.platform, f"{name} {init['name']}", extra)}
                init_sandbox = pod_sandbox(name, pod_spec, init, init_env, image, root, subs, plan.svc, volumes)
                command = [*init.get("command", []), *init.get("args", [])]
                local = f"127.0.0.1:{plan.gcs_port}"
                pod.init.append((init_sandbox, [w.replace(f"{head_fqdn}:{DEFAULT_GCS_PORT}", local) for w in command]))
            pods.append(pod)
    workers = [p for p in pods if p.role == "worker"]
    total = sum(p.cpus_manifest for p in workers)
    if total > cpus_available:
        for p in workers:
            p.cpus_local = max(1, math.floor(p.cpus_manifest * cpus_available / total))
        subs.add("worker CPUs", f"{len(workers)} x {workers[0].cpus_manifest:g} (limits.cpu)",
                 f"{len(workers)} x {workers[0].cpus_local}", f"this machine has {cpus_available} cores")
    return pods


def run_init_containers(pods: list[RayPod], log_dir, timeout: float) -> None:
    """Each pod's init containers in order, the pods side by side; a failing one fails the pod's start."""
    for step in range(max((len(p.init) for p in pods), default=0)):
        running = [(p, p.init[step]) for p in pods if len(p.init) > step]
        for pod, (sandbox, command) in running:
            sandbox.name = f"{pod.name}-init{step}"  # its own log file
            sandbox.start(command, log_dir)
        for pod, (sandbox, _) in running:
            try:
                code = sandbox.process.popen.wait(timeout=timeout)
            except Exception:  # noqa: BLE001  (TimeoutExpired)
                sandbox.process.stop(timeout=5)
                code = "timeout"
            if code != 0:
                raise RuntimeError(f"{pod.name}: init container {step} exited {code}; log {sandbox.process.log}:\n"
                                   f"{sandbox.process.tail()}")


@dataclass
class LocalRayCluster:
    cluster: services.RayCluster
    pods: list[RayPod]
    plan: ClusterPlan

    @property
    def token(self) -> str:
        return self.plan.token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self) -> None:
        for process in reversed(self.cluster.processes()):
            process.stop(timeout=8)  # gcs_server may ignore SIGTERM for long: SIGKILL sooner
        for pod in self.pods:
            pod.sandbox.volumes.stop()


def start_ray(rayjob: dict, pods: list[RayPod], plan: ClusterPlan, log_dir, subs: Substitutions,
              timeout: float = 180) -> LocalRayCluster:
    """Each pod's KubeRay-built `ray start` command, ports and CPUs made local, in the pod's sandbox."""
    by_group = {g: s for _, g, s, _ in groups(rayjob)}
    local_ports = {"port": plan.gcs_port, "dashboard-port": plan.dashboard_port,
                   "ray-client-server-port": plan.client_port}
    started = []
    try:
        for pod in pods:
            spec = by_group[pod.group]
            container = ray_container(spec)
            params = ray_start_params(pod.role, spec, container, f"{plan.head_service}.{NAMESPACE}.svc.cluster.local:"
                                                                 f"{DEFAULT_GCS_PORT}")
            local = dict(params, **{"node-ip-address": "127.0.0.1", "num-cpus": str(pod.cpus_local),
                                    "metrics-export-port": str(services.free_port()),
                                    "dashboard-agent-listen-port": str(services.free_port())})
            if pod.role == "head":
                local.update({k: str(v) for k, v in local_ports.items()})
            else:
                local["address"] = f"127.0.0.1:{plan.gcs_port}"
            if "object-store-memory" not in local:  # Ray sizes it from the host's memory: no cgroup limit here
                shm = next(pod.sandbox.volumes.volumes[m.volume].size for m in pod.sandbox.mounts if m.path == "/dev/shm")
                local["object-store-memory"] = str(int(min(0.3 * float(params.get("memory", 2**31)), shm)))
            for key in sorted(set(local) | set(params)):
                if local.get(key) != params.get(key) and key not in ("metrics-export-port", "dashboard-agent-listen-port"):
                    subs.add(f"{pod.role} ray start --{key}", params.get(key, "(unset)"), local.get(key),
                             WHY_LOCAL_PARAM.get(key, "one loopback for every pod: a free port"))
            subs.add("ray start metrics/agent ports", "8080 / 52365", "free ports", "one loopback for every pod")
            pod.start_command = f"{ULIMIT}; {ray_start_command(pod.role, local)}"
            if pod.role == "head" or pod is next(p for p in pods if p.role == "worker"):  # workers side by side
                run_init_containers([p for p in pods if p.role == pod.role], log_dir, timeout)
            started.append(pod.sandbox.start(["/bin/bash", "-c", "--", pod.start_command], log_dir))
            say(f"{pod.name}: {pod.start_command}")
            if pod.role == "head":
                services.wait_http(f"http://127.0.0.1:{plan.dashboard_port}/api/version", timeout, started[0],
                                   headers={"Authorization": f"Bearer {plan.token}"} if plan.token else None)
        cluster = services.RayCluster(started[0], started[1:], f"127.0.0.1:{plan.gcs_port}",
                                      f"http://127.0.0.1:{plan.dashboard_port}", log_dir.parent)
        services.wait_nodes(cluster, len(pods), timeout,
                            headers={"Authorization": f"Bearer {plan.token}"} if plan.token else None)
        return LocalRayCluster(cluster, pods, plan)
    except BaseException:
        for process in reversed(started):
            process.stop(timeout=8)
        for pod in pods:
            pod.sandbox.volumes.stop()
        raise
