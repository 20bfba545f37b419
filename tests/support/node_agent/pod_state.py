"""A pod's state on the node's disk, so that a restarted agent adopts the pod's containers instead of starting
new ones, as a kubelet finds its containers still running under the container runtime after a restart.

Under the pod's folder (``<state>/pods/<uid>``): ``holder.pid``, the sandbox's holder (network.py), in pids.py's
format; ``status.json``, the pod's status as the agent last computed it (pod_worker.py writes it atomically at
each change: containers' states, start times, restart counts, conditions); and in each container's folder its
shim's files (shim.py: its PID, the container's, how it ended) and whom it runs as (container.py). The pod's IP
is the address pool's (network.py), the logs stay in ``<state>/logs``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.node_agent import container as containers
from tests.support.node_agent import pids
from tests.support.node_agent.network import PodNetwork, veth_name
from tests.support.node_agent.pod_sandbox import ContainerState, Node
from tests.support.node_agent.pod_worker import PodWorker


def adopt(node: Node, pod: dict) -> PodWorker | None:
    """A worker for ``pod`` that goes on with what an earlier agent left running, or None when its sandbox is
    gone (then whatever of it is left is killed, and the pod starts anew or fails as before)."""
    worker = PodWorker(node, pod)
    holder = pids.alive(worker.folder / "holder.pid")
    status = worker.folder / "status.json"
    if holder is None or not status.exists():
        kill_leftovers(worker.folder)
        return None
    ip = node.pool.take(worker.uid)  # the address it had: the pool's file keeps it
    worker.network = PodNetwork(worker.key, ip, node.pool.network.prefixlen, str(node.pool.gateway), node.bridge,
                                veth_name(worker.uid), pids.Group(holder))
    worker.add_to_service_map()
    restore(worker, json.loads(status.read_text()))
    return worker


def restore(worker: PodWorker, status: dict) -> None:
    worker.phase, worker.reason, worker.message = status["phase"], status.get("reason"), status.get("message")
    worker.started_at = status.get("startTime", worker.started_at)
    worker.conditions = {c["type"]: c for c in status.get("conditions", []) if c["type"] != "PodScheduled"}
    saved = {s["name"]: s for s in status.get("initContainerStatuses", []) + status.get("containerStatuses", [])}
    for cs in worker.init + worker.main:
        if cs.spec["name"] in saved:
            restore_container(worker, cs, saved[cs.spec["name"]])


def restore_container(worker: PodWorker, cs: ContainerState, saved: dict) -> None:
    """A container as it was: running (its process adopted; if it ended meanwhile, the worker's next poll reads
    its exit code from the shim's file and restarts it by the pod's restartPolicy), ended for good, or waiting
    (started again)."""
    cs.restarts, cs.last_state, cs.state = saved["restartCount"], saved.get("lastState") or {}, saved["state"]
    cs.done = "terminated" in cs.state  # a worker records an exit as terminated only when it restarts nothing
    if "running" in cs.state:
        cs.running = containers.adopt(worker.folder / "containers" / cs.spec["name"],
                                      cs.state["running"]["startedAt"])
        if cs.running is None:
            cs.state = {"waiting": {"reason": "ContainerCreating"}}
            return
        worker.set_probes(cs)
        cs.ready, cs.started = saved["ready"], saved.get("started", False)


def kill_leftovers(folder: Path) -> None:
    """SIGKILL to what still runs of a pod no agent will run again: its containers, their shims, its holder."""
    for pid_file in [*folder.glob("containers/*/pid"), *folder.glob("containers/*/shim.pid"), folder / "holder.pid"]:
        if (pid := pids.alive(pid_file)) is not None:
            pids.stop_group(pid, 0)


def forget_unlisted(node: Node, listed: set[str]) -> list[str]:
    """Pods gone from the API while no agent ran (their folders' names are not in ``listed``, the UIDs of the
    pods the API binds to this node, and of those a worker runs): killed, their files and addresses freed."""
    gone = [f for f in (node.state / "pods").glob("*") if f.name not in listed]
    for folder in gone:
        kill_leftovers(folder)
        node.pool.release(folder.name)
        shutil.rmtree(folder, ignore_errors=True)
    return [f.name for f in gone]
