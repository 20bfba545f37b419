"""The node: registered with the API server, its Lease renewed, its pods watched and run, its logs served.

Runs with the node's own credentials (CN system:node:<name>, group system:nodes), so the Node authorizer and
the NodeRestriction admission plugin hold it to what a kubelet may do.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path

from kubernetes import client, watch

from tests.support.node_agent import pod_state
from tests.support.node_agent.dns import DnsServer
from tests.support.node_agent.network import AddressPool
from tests.support.node_agent.pod_sandbox import Node, log_path, now
from tests.support.node_agent.pod_worker import PodWorker
from tests.support.node_agent.service_map import ServiceMap

log = logging.getLogger("node-agent")
LEASE_S, RENEW_S, STATUS_S = 40, 10, 30  # the kubelet's lease duration and renew interval
TERMINAL = ("Succeeded", "Failed")


def micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Agent:
    def __init__(self, api: client.ApiClient, name: str, host_ip: str, bridge: str, pod_cidr: str, state: Path,
                 cpu: str, memory: str, kube_version: str):
        self.core, self.coordination = client.CoreV1Api(api), client.CoordinationV1Api(api)
        self.name, self.cpu, self.memory, self.kube_version = name, cpu, memory, kube_version
        state.mkdir(parents=True, exist_ok=True)
        self.services = ServiceMap(self.core, bridge, host_ip)
        self.dns = DnsServer(host_ip, self.services.lookup)
        allocatable = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "20Gi"}
        self.node = Node(self.core, name, host_ip, bridge, AddressPool(pod_cidr, host_ip, state), allocatable, state,
                         self.services)
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    # ------------------------------------------------------------ the Node and its Lease

    def node_status(self) -> dict:
        t = now()
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": t,
                 "message": "node agent is posting ready status (tests/support/node_agent)"}
        pressure = [{"type": kind, "status": "False", "reason": f"KubeletHas{ok}", "lastHeartbeatTime": t}
                    for kind, ok in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                                     ("PIDPressure", "SufficientPID"))]
        uname = platform.uname()
        return {"capacity": self.node.allocatable, "allocatable": self.node.allocatable,
                "conditions": [*pressure, ready],
                "addresses": [{"type": "InternalIP", "address": self.node.host_ip},
                              {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"kubeletVersion": self.kube_version, "kubeProxyVersion": "",
                             "containerRuntimeVersion": "node-agent://1", "operatingSystem": "linux",
                             "architecture": "amd64", "osImage": "kuberay-mnist node agent",
                             "kernelVersion": uname.release, "machineID": self.name, "systemUUID": self.name,
                             "bootID": str(int(time.time() - time.monotonic()))}}

    def register(self) -> None:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        try:
            self.core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=self.name, labels=labels)))
            log.info("node %s registered", self.name)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            log.info("node %s was registered before", self.name)
        self.core.patch_node_status(self.name, {"status": self.node_status()})

    def renew_lease(self) -> None:
        body = {"metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_S, "renewTime": micro_now()}}
        try:
            self.coordination.patch_namespaced_lease(self.name, "kube-node-lease", body)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self.stopped.wait(RENEW_S):
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= STATUS_S:
                    self.core.patch_node_status(self.name, {"status": self.node_status()})
                    last_status = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting; try again
                log.warning("heartbeat: %s", exc)

    # ------------------------------------------------------------ pods

    def handle(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self.lock:
            worker = self.workers.get(uid)
        if worker is None and (pod.get("status") or {}).get("phase") not in TERMINAL:
            worker = self.adopt(pod)
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            if worker is not None and not worker.deleting:
                worker.deleting = True
                worker.request_stop(meta.get("deletionGracePeriodSeconds"))
                threading.Thread(target=self.finish_deletion, args=(worker, kind == "DELETED"), daemon=True).start()
            elif kind != "DELETED":
                self.delete_now(pod)
            return
        if worker is None and (pod.get("status") or {}).get("phase") not in TERMINAL:
            if (pod.get("status") or {}).get("podIP") and pod["spec"].get("restartPolicy") == "Never":
                self.fail_orphan(pod)  # it ran under an earlier agent, and its containers went with it
                return
            worker = PodWorker(self.node, pod)
            with self.lock:
                self.workers[uid] = worker
            log.info("pod %s/%s: starting", meta["namespace"], meta["name"])
            worker.start()

    def adopt(self, pod: dict) -> PodWorker | None:
        """The pod's worker, when an earlier agent left its containers running (pod_state.py)."""
        worker = pod_state.adopt(self.node, pod)
        if worker is not None:
            with self.lock:
                self.workers[worker.uid] = worker
            running = {cs.spec["name"]: cs.running.pid for cs in worker.init + worker.main if cs.running}
            log.info("pod %s: adopted from an earlier agent: containers running %s", worker.key, running)
            worker.start()
        return worker

    def finish_deletion(self, worker: PodWorker, gone: bool) -> None:
        worker.finished.wait()
        if not gone:
            self.delete_now(worker.pod)
        with self.lock:
            self.workers.pop(worker.uid, None)
        worker.forget()
        log.info("pod %s: deleted", worker.key)

    def delete_now(self, pod: dict) -> None:
        meta = pod["metadata"]
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0,
                                            body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                        preconditions={"uid": meta["uid"]}))
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s/%s not deleted: %s", meta["namespace"], meta["name"], exc.reason)

    def fail_orphan(self, pod: dict) -> None:
        meta = pod["metadata"]
        status = {"phase": "Failed", "reason": "NodeAgentRestarted",
                  "message": "the node agent restarted; this pod's containers ended with it (restartPolicy Never)"}
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        except client.ApiException as exc:
            log.warning("pod %s/%s: %s", meta["namespace"], meta["name"], exc.reason)

    def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.name}"
        while not self.stopped.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)
                body = json.loads(listed.data)
                for pod in body["items"]:
                    self.handle("ADDED", pod)
                with self.lock:
                    known = {p["metadata"]["uid"] for p in body["items"]} | set(self.workers)
                for uid in pod_state.forget_unlisted(self.node, known):
                    log.info("pod %s: deleted while no agent ran; its containers killed", uid)
                version = body["metadata"]["resourceVersion"]
                for event in watch.Watch().stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                                  resource_version=version, timeout_seconds=300,
                                                  allow_watch_bookmarks=False):
                    if self.stopped.is_set():
                        return
                    self.handle(event["type"], event["raw_object"])
            except Exception as exc:  # noqa: BLE001 - relist after any break (API server restart, 410 Gone)
                log.warning("pod watch: %s; listing again", exc)
                self.stopped.wait(1)

    # ------------------------------------------------------------ run

    def run(self) -> None:
        self.register()
        self.renew_lease()
        self.services.start()
        self.dns.start()
        threading.Thread(target=self.heartbeat, daemon=True, name="heartbeat").start()
        threading.Thread(target=self.watch_pods, daemon=True, name="pod-watch").start()
        log.info("node %s ready: pods on %s, cpu %s, memory %s (pid %d)", self.name, self.node.pool.network,
                 self.cpu, self.memory, os.getpid())

    def shutdown(self, drain: bool) -> None:
        """With ``drain``, stop every pod's containers and sandbox (the API objects stay, as when a kubelet's node
        goes down); without, leave them running for the next agent to adopt, as a kubelet's restart leaves its
        containers to the container runtime."""
        self.stopped.set()
        with self.lock:
            workers = list(self.workers.values()) if drain else []
        for worker in workers:
            worker.request_stop(5, report=False)
        for worker in workers:
            worker.finished.wait(30)
        self.services.stop()

    def log_file(self, namespace: str, pod: str, container: str, previous: bool):
        """The log of a container on this node (kubelet_api.py), and whether it is still running."""
        path = log_path(self.node.state, namespace, pod, container)
        if previous:
            path = path.with_suffix(".previous")
        with self.lock:
            worker = next((w for w in self.workers.values() if w.key == f"{namespace}/{pod}"), None)
        states = [] if worker is None else [cs for cs in worker.init + worker.main if cs.spec["name"] == container]

        def running() -> bool:
            return bool(states) and states[0].running is not None and not worker.finished.is_set()

        return path, running
