#!/usr/bin/env python3
"""Check that the pods of some rendered manifests fit the cluster's nodes, before
anything is installed (scripts/kind-up.sh runs it on the fresh kind node).

    kubectl get nodes -o json > nodes.json
    kubectl get pods -A -o json > pods.json        # what already runs (kube-system)
    scripts/check-node-capacity.py --nodes nodes.json --pods pods.json \
        --exclude-namespace mnist platform.yaml rayjob.yaml operator.yaml

Counts CPU and memory requests (a container without requests asks for its limits,
as Kubernetes defaults them): Deployments and StatefulSets x replicas, Jobs, Pods,
and a RayJob's head, workers x replicas and submitter. Running pods in the excluded
namespaces are skipped (they would be counted twice on a re-run). Compares the sum
with the allocatable CPU and memory of the schedulable nodes, and each pod with the
largest node.

Exit 0: it fits; 1: it does not (the message says what to change); 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
HINT = (
    "give the kind node more CPUs/memory (Docker Desktop: Settings > Resources; colima/podman: the VM's --cpus/--memory),"
    " or lower the requests in charts/kuberay-mnist-rayjob/values-cpu-kind.yaml (ray.workers.resources.requests,"
    " ray.head.resources.requests; or ray.workers.replicas together with job.numWorkers)"
)


class BadInput(Exception):
    pass


def quantity(q) -> float:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", str(q).strip())
    if not m or m.group(2) not in _UNITS:
        raise BadInput(f"not a Kubernetes quantity: {q!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def container_requests(c: dict) -> tuple[float, float]:
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cpu = req.get("cpu", lim.get("cpu", 0))
    mem = req.get("memory", lim.get("memory", 0))
    return quantity(cpu), quantity(mem)


def pod_requests(spec: dict) -> tuple[float, float]:
    """Effective requests of a pod: max(sum of containers, largest init container)."""
    main = [container_requests(c) for c in spec.get("containers", [])]
    init = [container_requests(c) for c in spec.get("initContainers", [])]
    cpu = max([sum(c for c, _ in main)] + [c for c, _ in init])
    mem = max([sum(m for _, m in main)] + [m for _, m in init])
    return cpu, mem


def manifest_pods(docs: list[dict]) -> list[tuple[str, dict]]:
    """(label, pod spec) for every pod the objects would create."""
    pods = []
    for d in docs:
        kind, name = d.get("kind"), (d.get("metadata") or {}).get("name", "?")
        spec = d.get("spec") or {}
        if kind in ("Deployment", "StatefulSet"):
            for i in range(int(spec.get("replicas", 1))):
                pods.append((f"{kind}/{name}#{i}", spec["template"]["spec"]))
        elif kind == "Job":
            for i in range(int(spec.get("parallelism", 1))):
                pods.append((f"Job/{name}#{i}", spec["template"]["spec"]))
        elif kind == "Pod":
            pods.append((f"Pod/{name}", spec))
        elif kind == "RayJob":
            cluster = spec["rayClusterSpec"]
            pods.append((f"RayJob/{name}/head", cluster["headGroupSpec"]["template"]["spec"]))
            for g in cluster.get("workerGroupSpecs", []):
                for i in range(int(g.get("replicas", 1))):
                    pods.append((f"RayJob/{name}/{g['groupName']}#{i}", g["template"]["spec"]))
            if "submitterPodTemplate" in spec:
                pods.append((f"RayJob/{name}/submitter", spec["submitterPodTemplate"]["spec"]))
    return pods


def running_pods(pods_json: dict, exclude: set[str]) -> list[tuple[str, dict]]:
    out = []
    for p in pods_json.get("items", []):
        meta = p.get("metadata", {})
        if meta.get("namespace") in exclude or p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        out.append((f"running {meta.get('namespace')}/{meta.get('name')}", p["spec"]))
    return out


def schedulable_nodes(nodes_json: dict) -> list[tuple[str, float, float]]:
    out = []
    for n in nodes_json.get("items", []):
        spec = n.get("spec", {})
        if spec.get("unschedulable") or any(t.get("effect") == "NoSchedule" for t in spec.get("taints", [])):
            continue
        alloc = n.get("status", {}).get("allocatable", {})
        out.append((n["metadata"]["name"], quantity(alloc.get("cpu", 0)), quantity(alloc.get("memory", 0))))
    return out


def gib(b: float) -> str:
    return f"{b / 2**30:.1f} GiB"


def check(nodes: list[tuple[str, float, float]], pods: list[tuple[str, dict]]) -> list[str]:
    """Problems found (empty: it fits)."""
    if not nodes:
        return ["no schedulable node (all are cordoned or tainted NoSchedule)"]
    problems = []
    need = [(label, *pod_requests(spec)) for label, spec in pods]
    cpu_need, mem_need = sum(c for _, c, _ in need), sum(m for _, _, m in need)
    cpu_have, mem_have = sum(c for _, c, _ in nodes), sum(m for _, _, m in nodes)
    big_cpu, big_mem = max(c for _, c, _ in nodes), max(m for _, _, m in nodes)
    if cpu_need > cpu_have:
        problems.append(f"CPU: the pods request {cpu_need:.2f} CPUs, the nodes have {cpu_have:.2f} allocatable")
    if mem_need > mem_have:
        problems.append(f"memory: the pods request {gib(mem_need)}, the nodes have {gib(mem_have)} allocatable")
    for label, c, m in need:
        if c > big_cpu or m > big_mem:
            problems.append(f"{label} requests {c:.2f} CPUs and {gib(m)}: more than the largest node ({big_cpu:.2f} CPUs, {gib(big_mem)})")
    return problems


def load_yaml_docs(path: Path) -> list[dict]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"{path}: {exc}") from exc


def load_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", required=True, type=Path, help="`kubectl get nodes -o json` output")
    ap.add_argument("--pods", type=Path, help="`kubectl get pods -A -o json` output (pods already running)")
    ap.add_argument("--exclude-namespace", action="append", default=[], help="skip running pods of this namespace")
    ap.add_argument("manifests", nargs="+", type=Path, help="rendered YAML whose pods must fit")
    args = ap.parse_args(argv)
    try:
        nodes = schedulable_nodes(load_json(args.nodes))
        pods = running_pods(load_json(args.pods), set(args.exclude_namespace)) if args.pods else []
        for m in args.manifests:
            pods += manifest_pods(load_yaml_docs(m))
        problems = check(nodes, pods)
    except (BadInput, KeyError, TypeError, ValueError) as exc:
        print(f"check-node-capacity: invalid input: {exc}", file=sys.stderr)
        return 2
    need_cpu = sum(pod_requests(s)[0] for _, s in pods)
    need_mem = sum(pod_requests(s)[1] for _, s in pods)
    print(
        f"check-node-capacity: {len(pods)} pods request {need_cpu:.2f} CPUs and {gib(need_mem)};"
        f" {len(nodes)} schedulable node(s) have {sum(c for _, c, _ in nodes):.2f} CPUs and"
        f" {gib(sum(m for _, _, m in nodes))} allocatable"
    )
    if problems:
        for p in problems:
            print(f"check-node-capacity: does not fit: {p}", file=sys.stderr)
        print(f"check-node-capacity: to fix it, {HINT}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
