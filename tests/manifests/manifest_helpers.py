"""Shared constants and helpers of the manifest tests (imported by conftest and tests)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loopback.project_env import PROJECT_ENV
from tests.support.local_cluster import operator_source

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
CHARTS = ROOT / "charts"
PLATFORM = CHARTS / "kuberay-mnist-platform"
RAYJOB = CHARTS / "kuberay-mnist-rayjob"
NAMESPACE = PROJECT_ENV["NAMESPACE"]  # project.env: the names make, the scripts and the tests share
PLATFORM_RELEASE = PROJECT_ENV["PLATFORM_RELEASE"]
RAYJOB_RELEASE = PROJECT_ENV["RAYJOB_RELEASE"]
TUNE_RELEASE = PROJECT_ENV["TUNE_RELEASE"]
SERVE_RELEASE = PROJECT_ENV["SERVE_RELEASE"]
# Kubernetes versions the rendered objects must validate against (strict).
K8S_VERSIONS = ("1.29", "1.33", "1.35")


def crds_dir() -> Path:
    """The CRDs of the KubeRay operator that the local cluster runs, from its Go module (cluster-tools/go.mod
    pins it; `make cluster-tools` downloads it); KUBERAY_CRDS_DIR: another version's."""
    env = os.environ.get("KUBERAY_CRDS_DIR")
    return Path(env) if env else operator_source() / "config" / "crd" / "bases"


@dataclass(frozen=True)
class Profile:
    """One `helm template` invocation of a chart with a values profile."""

    id: str
    chart: Path
    release: str
    values: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()

    def args(self) -> list[str]:
        out: list[str] = []
        for v in self.values:
            out += ["-f", str(self.chart / v)]
        for s in self.sets:
            out += ["--set", s]
        return out


KUEUE_QUEUE = "team-a"
PROFILES = {
    p.id: p
    for p in (
        Profile("rayjob-gpu", RAYJOB, RAYJOB_RELEASE),
        Profile("rayjob-cpu-kind", RAYJOB, RAYJOB_RELEASE, ("values-cpu-kind.yaml",)),
        Profile("rayjob-tune", RAYJOB, TUNE_RELEASE, ("values-tune.yaml",)),
        Profile("rayjob-tune-cpu-kind", RAYJOB, TUNE_RELEASE, ("values-cpu-kind.yaml", "values-tune.yaml")),
        Profile("rayjob-gpu-initcontainer", RAYJOB, RAYJOB_RELEASE, (), ("job.pullDataInitContainer=true",)),
        Profile("rayjob-gpu-kueue", RAYJOB, RAYJOB_RELEASE, (), (f"rayJob.labels.kueue\\.x-k8s\\.io/queue-name={KUEUE_QUEUE}",)),
        Profile("rayservice-gpu", RAYJOB, SERVE_RELEASE, (), ("rayService.enabled=true",)),
        Profile("rayservice-cpu-kind", RAYJOB, SERVE_RELEASE, ("values-cpu-kind.yaml",), ("rayService.enabled=true",)),
        Profile("platform-default", PLATFORM, PLATFORM_RELEASE),
        Profile("platform-dev", PLATFORM, PLATFORM_RELEASE, ("values-dev.yaml",)),
        Profile("platform-production", PLATFORM, PLATFORM_RELEASE, ("values-production.yaml",)),
    )
}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    docs: list[dict] = field(default_factory=list)


def run(cmd: list[str], extra_env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}", **(extra_env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rayjob_pod_templates(rayjob: dict) -> dict[str, dict]:
    """role -> pod template (head, each worker group, submitter) of a RayJob or a RayService."""
    spec = rayjob["spec"]
    cluster = spec.get("rayClusterSpec") or spec["rayClusterConfig"]  # a RayJob's, or a RayService's
    out = {"head": cluster["headGroupSpec"]["template"]}
    for g in cluster.get("workerGroupSpecs", []):
        out[f"worker:{g['groupName']}"] = g["template"]
    if "submitterPodTemplate" in spec:
        out["submitter"] = spec["submitterPodTemplate"]
    return out


def workload_pod_templates(docs: list[dict]) -> dict[str, dict]:
    """'<Kind>/<name>[/<role>]' -> pod template, for every object that makes pods."""
    out: dict[str, dict] = {}
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out[f"{kind}/{name}"] = d["spec"]["template"]
        elif kind in ("RayJob", "RayService"):
            for role, t in rayjob_pod_templates(d).items():
                out[f"{kind}/{name}/{role}"] = t
    return out


def mounted_secrets(template: dict, container: dict) -> set[str]:
    """Names of the Secrets whose volumes ``container`` mounts (the pods read credentials only as such files)."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", []) or []}
    return {volumes[m["name"]]["secret"]["secretName"] for m in container.get("volumeMounts", []) or []
            if "secret" in volumes.get(m["name"], {})}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())



_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DEC = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 10**-3}


def _parse(q) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m:
        raise ValueError(f"bad quantity {q!r}")
    num, unit = float(m.group(1)), m.group(2)
    if unit in _BIN:
        return num * _BIN[unit]
    if unit in _DEC:
        return num * _DEC[unit]
    raise ValueError(f"bad unit in {q!r}")


def cpu(q) -> float:
    return _parse(q)


def mem(q) -> float:
    return _parse(q)
