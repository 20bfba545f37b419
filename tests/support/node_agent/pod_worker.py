"""One pod's life on the node, as the kubelet lives it: sandbox, volumes, init containers, containers, probes,
restarts by the pod's restartPolicy, status reported to the API server, and a graceful stop on deletion."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
import time

from kubernetes import client

from tests.support.node_agent import container as containers
from tests.support.node_agent import pids
from tests.support.node_agent.images import ImageNotRunnable
from tests.support.node_agent.network import PodNetwork, start_pod_network
from tests.support.node_agent.pod_sandbox import ContainerState, Node, PodSandbox, now
from tests.support.node_agent.podspec import PodConfigError
from tests.support.node_agent.probes import Prober

log = logging.getLogger("node-agent")
BACKOFF_MAX_S = 300  # the kubelet's crash-loop back-off doubles up to this


class PodWorker(threading.Thread):
    def __init__(self, node: Node, pod: dict):
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.node, self.pod = node, pod
        meta = pod["metadata"]
        self.key, self.uid = f"{meta['namespace']}/{meta['name']}", meta["uid"]
        self.folder = node.state / "pods" / self.uid
        self.stop_requested = threading.Event()
        self.grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.network: PodNetwork | None = None
        self.phase, self.reason, self.message = "Pending", None, None
        self.init = [ContainerState(c) for c in pod["spec"].get("initContainers") or []]
        self.main = [ContainerState(c) for c in pod["spec"]["containers"]]
        self.sandbox = PodSandbox(node, pod, self.folder)
        self.conditions: dict[str, dict] = {}
        self.started_at = now()
        self.reported: dict | None = None
        self.saved: dict | None = None
        self.reporting = True
        self.deleting = False  # the agent is finishing this pod's deletion
        self.finished = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def run(self) -> None:
        try:
            if self.network is None:  # else an earlier agent's sandbox, adopted (pod_state.py)
                self.start_sandbox()
            if self.run_init_containers():
                self.run_containers()
        except Exception as exc:  # noqa: BLE001 - a pod's failure must not end the agent
            log.exception("%s: %s", self.key, exc)
            self.phase, self.reason, self.message = "Failed", "NodeAgentError", str(exc)
            self.report()
        finally:
            self.stop_all(self.grace)
            self.report()
            self.teardown()
            self.finished.set()

    def request_stop(self, grace: float | None, report: bool = True) -> None:
        """Stop the pod's containers; ``report=False`` when the node goes down: its pods' status stays."""
        if grace is not None:
            self.grace = min(self.grace, grace)
        self.reporting = self.reporting and report
        self.stop_requested.set()

    def start_sandbox(self) -> None:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        ip = self.node.pool.take(self.uid)
        self.pod.setdefault("status", {}).update(podIP=ip, podIPs=[{"ip": ip}], hostIP=self.node.host_ip,
                                                 hostIPs=[{"ip": self.node.host_ip}])
        self.report()
        hostname = spec.get("hostname") or meta["name"]
        self.folder.mkdir(parents=True, exist_ok=True)
        holder = self.sandbox.holder_script()
        self.network = start_pod_network(self.key, self.uid, hostname[:63], ip, self.node.pool, self.node.bridge,
                                         holder, self.folder / "logs")
        pids.record(self.folder / "holder.pid", self.network.pid)  # for a restarted agent to adopt the pod
        self.add_to_service_map()
        self.set_condition("PodReadyToStartContainers", True)
        self.report()

    def add_to_service_map(self) -> None:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        hostname, subdomain = spec.get("hostname") or meta["name"], spec.get("subdomain")
        fqdn = f"{hostname}.{subdomain}.{meta['namespace']}.svc.cluster.local" if subdomain else None
        self.node.hosts.add_pod(self.uid, meta["namespace"], self.network.ip, hostname, fqdn, self.folder / "hosts",
                                meta.get("labels") or {}, spec["containers"])

    def start_container(self, cs: ContainerState) -> bool:
        """Start ``cs``; False (and a waiting reason) when it cannot start now."""
        try:
            spec = self.sandbox.container_spec(cs)
        except ImageNotRunnable as exc:
            cs.state = {"waiting": {"reason": "ErrImagePull", "message": str(exc)}}
            return False
        except PodConfigError as exc:
            cs.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            return False
        log_file = self.sandbox.log_path(cs.spec["name"])
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if log_file.exists():
            log_file.replace(log_file.with_suffix(".previous"))  # kubectl logs --previous
        started = now()
        cs.running = containers.start(spec, self.network.pid, log_file, started)
        cs.state = {"running": {"startedAt": started}}
        cs.ready, cs.started = False, False
        self.set_probes(cs)
        cs.started = "startup" not in cs.probes
        log.info("%s: container %s started (pid %d) as %s", self.key, cs.spec["name"], cs.running.pid,
                 cs.image.stands_for)
        return True

    def set_probes(self, cs: ContainerState) -> None:
        cs.probes = {kind: Prober(kind, cs.spec[f"{kind}Probe"], cs.spec,
                                  lambda argv, t, r=cs.running: containers.exec_in(r, argv, t))
                     for kind in ("startup", "readiness", "liveness") if cs.spec.get(f"{kind}Probe")}

    def record_exit(self, cs: ContainerState) -> int:
        code = cs.running.poll()
        cs.state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                   "startedAt": cs.running.started_at, "finishedAt": cs.running.finished_at or now(),
                                   "containerID": f"agent://{cs.running.pid}"}}
        cs.running, cs.ready, cs.started = None, False, False
        log.info("%s: container %s exited %d", self.key, cs.spec["name"], code)
        return code

    def run_init_containers(self) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for cs in self.init:
            while not cs.done and not self.stop_requested.is_set():
                if cs.running is None and time.monotonic() >= cs.backoff_until:
                    if not self.start_container(cs):
                        self.report()
                        self.stop_requested.wait(5)
                        continue
                    self.report()
                if cs.running is not None and cs.running.poll() is not None:
                    if self.record_exit(cs) == 0:
                        cs.done = True
                        break
                    if policy == "Never":
                        self.phase, cs.done = "Failed", True
                        self.report()
                        return False
                    self.back_off(cs)
                self.report()
                self.stop_requested.wait(0.5)
            if self.stop_requested.is_set():
                return False
        self.set_condition("Initialized", True)
        return True

    def back_off(self, cs: ContainerState) -> None:
        cs.last_state, cs.restarts = cs.state, cs.restarts + 1
        cs.state = {"waiting": {"reason": "CrashLoopBackOff",
                                "message": f"back-off {cs.backoff:g}s restarting failed container={cs.spec['name']}"}}
        cs.backoff_until = time.monotonic() + cs.backoff
        cs.backoff = min(cs.backoff * 2, BACKOFF_MAX_S)

    def run_containers(self) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.stop_requested.is_set():
            for cs in self.main:
                if cs.done:
                    continue
                if cs.running is None and time.monotonic() >= cs.backoff_until:
                    self.start_container(cs)
                elif cs.running is not None and cs.running.poll() is not None:
                    code = self.record_exit(cs)
                    if policy == "Never" or (policy == "OnFailure" and code == 0):
                        cs.done = True
                    else:
                        self.back_off(cs)
                elif cs.running is not None:
                    self.run_probes(cs)
            self.update_phase(policy)
            self.report()
            if self.phase in ("Succeeded", "Failed"):
                return
            self.stop_requested.wait(0.5)

    def run_probes(self, cs: ContainerState) -> None:
        t = time.monotonic()
        for kind, prober in cs.probes.items():
            if kind != "startup" and not cs.started:
                continue
            if (kind == "startup" and cs.started) or not prober.due(t):
                continue
            result = prober.check(self.network.ip)
            if kind == "startup" and result:
                cs.started = True
            elif kind == "readiness":
                cs.ready = bool(result)
            elif kind in ("liveness", "startup") and result is False:
                log.info("%s: container %s failed its %s probe: %s; restarting it", self.key, cs.spec["name"],
                         kind, prober.message)
                self.stop_containers([cs], float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
                return

    def update_phase(self, policy: str) -> None:
        if all(cs.done for cs in self.main):
            failed = any(cs.state.get("terminated", {}).get("exitCode") for cs in self.main)
            self.phase = "Failed" if failed else "Succeeded"
        elif any(cs.running is not None for cs in self.main) or policy != "Never":
            self.phase = "Running" if any(cs.running or cs.restarts for cs in self.main) else "Pending"
        ready = all(cs.ready or (cs.running is not None and "readiness" not in cs.probes and cs.started)
                    for cs in self.main)
        self.set_condition("ContainersReady", ready)
        self.set_condition("Ready", ready)
        self.node.hosts.set_ready(self.uid, ready)

    # ------------------------------------------------------------ stopping

    def stop_containers(self, live: list[ContainerState], grace: float) -> None:
        for cs in live:
            cs.running.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for cs in live:
            cs.running.wait(max(0.0, deadline - time.monotonic()))
            cs.running.kill()
            self.record_exit(cs)

    def stop_all(self, grace: float) -> None:
        live = [cs for cs in self.init + self.main if cs.running is not None]
        self.stop_containers(live, grace)
        for cs in live:
            cs.done = True
        if live and self.phase not in ("Succeeded", "Failed"):
            self.update_phase(self.pod["spec"].get("restartPolicy", "Always"))

    def teardown(self) -> None:
        self.node.hosts.remove_pod(self.uid)
        if self.network is not None:
            self.network.stop()

    def forget(self) -> None:
        """The pod is gone from the API: its files and address go too."""
        self.node.pool.release(self.uid)
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------ status

    def set_condition(self, kind: str, value: bool) -> None:
        status = "True" if value else "False"
        old = self.conditions.get(kind)
        if old is None or old["status"] != status:
            self.conditions[kind] = {"type": kind, "status": status, "lastTransitionTime": now()}

    def container_status(self, cs: ContainerState) -> dict:
        out = {"name": cs.spec["name"], "image": cs.spec["image"], "imageID": "", "ready": cs.ready,
               "restartCount": cs.restarts, "state": cs.state, "started": cs.running is not None and cs.started}
        if cs.running is not None:
            out["containerID"] = f"agent://{cs.running.pid}"
        if cs.last_state:
            out["lastState"] = cs.last_state
        return out

    def status(self) -> dict:
        for kind in ("Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"):
            self.conditions.setdefault(kind, {"type": kind, "status": "False", "lastTransitionTime": now()})
        if not self.init:
            self.set_condition("Initialized", True)
        base = self.pod.get("status") or {}
        scheduled = [c for c in base.get("conditions") or [] if c["type"] == "PodScheduled"]
        status = {"phase": self.phase, "conditions": scheduled + list(self.conditions.values()),
                  "hostIP": base.get("hostIP"), "hostIPs": base.get("hostIPs"), "podIP": base.get("podIP"),
                  "podIPs": base.get("podIPs"), "startTime": self.started_at, "qosClass": base.get("qosClass"),
                  "containerStatuses": [self.container_status(cs) for cs in self.main]}
        if self.init:
            status["initContainerStatuses"] = [self.container_status(cs) for cs in self.init]
        if self.reason:
            status.update(reason=self.reason, message=self.message)
        return {k: v for k, v in status.items() if v is not None}

    def report(self) -> None:
        status = self.status()
        if status != self.saved and self.folder.is_dir():  # what a restarted agent adopts (pod_state.py)
            pids.write(self.folder / "status.json", json.dumps(status))
            self.saved = status
        if status == self.reported or not self.reporting:
            return
        meta = self.pod["metadata"]
        try:
            self.node.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
            self.reported = status
        except client.ApiException as exc:
            if exc.status == 404:
                self.stop_requested.set()  # the pod is gone: nothing to report to
            else:
                log.warning("%s: status not reported: %s %s", self.key, exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001 - the API server may be restarting; the next report retries
            log.warning("%s: status not reported: %s", self.key, exc)
