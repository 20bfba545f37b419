"""A stand-in for `kubectl` against a RayJob whose status moves through a given
sequence, for testing scripts/deploy-rayjob.sh where no Kubernetes API server can
run (these machines have none). It answers only the calls that script makes.

State lives in the JSON file named by $FAKE_KUBECTL_STATE:
  {"crd": true, "exists": false, "statuses": [{"jobDeploymentStatus": ..., "jobStatus": ...,
   "reason": ..., "message": ...}, ...], "polls": 0, "applied": [], "deleted": [],
   "secrets": {name: {annotation: value}}, "pods": [{"name", "labels", "phase", "env"}], "pod_queries": []}
Every read of .status.jobDeploymentStatus is one poll: it moves to the next status
(the last one repeats).

The same for a RayService (scripts/deploy-rayservice.sh): "statuses" then holds KubeRay
RayService status objects ({"conditions": [{"type": "Ready", "status": ..., "reason": ...,
"message": ...}], "activeServiceStatus": {"applicationStatuses": {...}}, ...}); every read of
the Ready condition's status is one poll, and the other jsonpaths the script reads (dotted
fields and [?(@.type=="...")] filters) are looked up in the current one. Pods are listed (`get pods -l k=v,... -o jsonpath=<the
script's name/phase/RAY_AUTH_MODE template>`) only while the RayJob exists.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def install(bin_dir: Path, state: dict) -> Path:
    """Write a `kubectl` executable into bin_dir and its state file; returns the state path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_path = bin_dir / "fake-kubectl-state.json"
    full = {"crd": True, "exists": False, "statuses": [], "polls": 0, "applied": [], "deleted": [], "secrets": {},
            "pods": [], "pod_queries": [], **state}
    state_path.write_text(json.dumps(full))
    exe = bin_dir / "kubectl"
    exe.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{Path(__file__).resolve()}' \"$@\"\n")
    exe.chmod(0o755)
    return state_path


def load(path: Path) -> dict:
    return json.loads(path.read_text())


READY_STATUS = 'conditions[?(@.type=="Ready")].status'


def lookup(status: dict, path: str) -> str:
    """A jsonpath below .status, as kubectl prints it: dotted fields, [?(@.type=="T")] filters; "" when absent."""
    value: object = status
    for part in re.findall(r'[^.\[]+(?:\[\?\(@\.\w+=="[^"]*"\)\])?', path):
        field, _, flt = part.partition("[")
        value = value.get(field) if isinstance(value, dict) else None
        if flt and isinstance(value, list):
            key, want = re.fullmatch(r'\?\(@\.(\w+)=="([^"]*)"\)\]', flt).groups()
            value = next((item for item in value if item.get(key) == want), None)
        if value is None:
            return ""
    return value if isinstance(value, str) else json.dumps(value)


def main(argv: list[str]) -> int:
    path = Path(os.environ["FAKE_KUBECTL_STATE"])
    state = load(path)
    args = list(argv)
    if args[:1] == ["-n"]:
        args = args[2:]
    verb = args[0] if args else ""
    rc = 0
    if verb == "get" and args[1] in ("rayjobs.ray.io", "rayservices.ray.io"):
        rc = 0 if state["crd"] else 1
    elif verb == "get" and args[1] == "rayservice":
        if not state["exists"]:
            print(f'Error from server (NotFound): rayservices.ray.io "{args[2]}" not found', file=sys.stderr)
            rc = 1
        elif "-o" in args:
            wanted = re.fullmatch(r"jsonpath=\{\.status\.(.+)\}", args[args.index("-o") + 1]).group(1)
            if wanted == READY_STATUS:
                state["polls"] += 1
            statuses = state["statuses"]
            current = statuses[min(max(state["polls"] - 1, 0), len(statuses) - 1)] if statuses else {}
            sys.stdout.write(lookup(current, wanted))
    elif verb == "get" and args[1] == "rayjob":
        if not state["exists"]:
            print(f'Error from server (NotFound): rayjobs.ray.io "{args[2]}" not found', file=sys.stderr)
            rc = 1
        else:
            if "-o" in args:
                field = re.fullmatch(r"jsonpath=\{\.status\.(\w+)\}", args[args.index("-o") + 1]).group(1)
                if field == "jobDeploymentStatus":
                    state["polls"] += 1
                statuses = state["statuses"]
                current = statuses[min(max(state["polls"] - 1, 0), len(statuses) - 1)] if statuses else {}
                sys.stdout.write(current.get(field, ""))
    elif verb == "get" and args[1] == "secret":
        annotations = state["secrets"].get(args[2])
        if annotations is None:
            print(f'Error from server (NotFound): secrets "{args[2]}" not found', file=sys.stderr)
            rc = 1
        elif "-o" in args:
            m = re.fullmatch(r"jsonpath=\{\.metadata\.annotations\.([\w./-]+)\}", args[args.index("-o") + 1])
            sys.stdout.write(annotations.get(m.group(1), ""))
    elif verb == "get" and args[1] == "pods":
        selector = dict(kv.split("=", 1) for kv in args[args.index("-l") + 1].split(","))
        template = args[args.index("-o") + 1]
        state["pod_queries"].append(selector)
        # The one template scripts/deploy-rayjob.sh uses: "<name> <phase> <RAY_AUTH_MODE of container 0>" per pod.
        assert all(part in template for part in ("{range .items[*]}", "{.metadata.name}", "{.status.phase}",
                                                 '{.spec.containers[0].env[?(@.name=="RAY_AUTH_MODE")].value}')), template
        for pod in state["pods"] if state["exists"] else []:
            if all(pod["labels"].get(k) == v for k, v in selector.items()):
                print(f"{pod['name']} {pod['phase']} {pod['env'].get('RAY_AUTH_MODE', '')}")
    elif verb == "apply":
        state["applied"].append(Path(args[args.index("-f") + 1]).read_text())
        state["exists"] = True
        print("applied")
    elif verb == "delete":
        state["deleted"].append(args[2])
        state["exists"] = False
    else:
        print(f"fake kubectl: unsupported call {argv}", file=sys.stderr)
        rc = 99
    path.write_text(json.dumps(state))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
