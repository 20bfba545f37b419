"""Rendering: the charts through `helm template`, the platform's objects, the RayJob's groups, the image.

The static checks and the node agent's image model read these rendered objects and image/Dockerfile,
never a restatement. Every place where a local render must differ is recorded in ``Substitutions``.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from loopback import services
from loopback.project_env import PROJECT_ENV

ROOT = services.PROJECT_DIR
VENV_BIN = services.VENV_BIN
NAMESPACE = PROJECT_ENV["NAMESPACE"]  # project.env: the names make, the scripts and the tests share
PLATFORM_RELEASE = PROJECT_ENV["PLATFORM_RELEASE"]
RAYJOB_RELEASE = PROJECT_ENV["RAYJOB_RELEASE"]
RAYJOB_CHART = ROOT / "charts" / "kuberay-mnist-rayjob"
PLATFORM_CHART = ROOT / "charts" / "kuberay-mnist-platform"
RAYJOB_ARGS = ("-f", str(RAYJOB_CHART / "values-cpu-kind.yaml"))
PLATFORM_ARGS = ("-f", str(PLATFORM_CHART / "values-dev.yaml"))
RAYJOB_GENERATED = ROOT / "k8s" / "rayjob-cpu-kind.yaml"
PLATFORM_GENERATED = ROOT / "k8s" / "platform-dev.yaml"
DOCKERFILE = ROOT / "image" / "Dockerfile"


class ContractError(AssertionError):
    """A contract between the charts, the image and the package is broken; the message says which side."""


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Substitutions:
    """Every place where the local run differs from what the manifests say, and why."""

    items: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, what: str, manifest: str, local: str, why: str) -> None:
        entry = (what, manifest, local, why)
        if entry not in self.items:
            self.items.append(entry)

    def render(self) -> str:
        lines = [f"substitutions ({len(self.items)}): manifest value -> local value (why)"]
        for what, manifest, local, why in self.items:
            lines.append(f"  - {what}: {manifest!s} -> {local!s}  ({why})")
        return "\n".join(lines)


# ------------------------------------------------------------------ helm


def helm_template(chart: Path, release: str, *args: str) -> list[dict]:
    helm = ROOT / ".tools" / "bin" / "helm"
    env = {**services.base_env(), "PATH": f"{helm.parent}:{services.base_env()['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "helm-template.sh"), str(chart), release, NAMESPACE, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"helm template {chart.name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def render_all(subs: Substitutions) -> tuple[dict, list[dict]]:
    """(RayJob object, platform objects): a fresh render, or k8s/*.yaml when helm is not installed."""
    if (ROOT / ".tools" / "bin" / "helm").exists() or shutil.which("helm"):
        rayjob_docs = helm_template(RAYJOB_CHART, RAYJOB_RELEASE, *RAYJOB_ARGS)
        platform_docs = helm_template(PLATFORM_CHART, PLATFORM_RELEASE, *PLATFORM_ARGS)
        generated = [d for d in yaml.safe_load_all(RAYJOB_GENERATED.read_text()) if d]
        if [d for d in generated if d.get("kind") == "RayJob"] != [d for d in rayjob_docs if d.get("kind") == "RayJob"]:
            say(f"NOTE: {RAYJOB_GENERATED.relative_to(ROOT)} differs from a fresh render of the chart "
                "(run `make manifests`); the harness uses the fresh render")
    else:
        rayjob_docs = [d for d in yaml.safe_load_all(RAYJOB_GENERATED.read_text()) if d]
        platform_docs = [d for d in yaml.safe_load_all(PLATFORM_GENERATED.read_text()) if d]
        subs.add("rendering", "helm template", "k8s/*.yaml", "helm is not installed (scripts/install-tools.sh helm)")
    rayjobs = [d for d in rayjob_docs if d.get("kind") == "RayJob"]
    assert len(rayjobs) == 1, f"expected one RayJob in the CPU profile, found {len(rayjobs)}"
    fill_placeholders(platform_docs, subs)
    return rayjobs[0], platform_docs


PLACEHOLDER_KEYS = "kuberay-mnist/placeholder-keys"


def fill_placeholders(docs: list[dict], subs: Substitutions) -> None:
    """Secrets whose keys the chart marks as placeholders (`helm template` cannot generate the dev password that
    `helm install` generates): give each such key a random value, as the install would."""
    for d in docs:
        keys = ((d.get("metadata") or {}).get("annotations") or {}).get(PLACEHOLDER_KEYS)
        if d.get("kind") != "Secret" or not keys:
            continue
        data = d.setdefault("stringData", {})
        names = [key.strip() for key in keys.split(",")]
        placeholder = str(data.get(names[0], ""))
        for key in names:
            data[key] = secrets.token_urlsafe(30)
            subs.add(f"Secret {d['metadata']['name']} key {key}", "a placeholder (helm template cannot generate it)",
                     "a random value (not shown)", "helm install generates it; see charts/README.md")
        # Keys made from the first one (a credentials file holding the password) get the same value, as the
        # chart writes the one generated password into both.
        for key, value in data.items():
            if key not in names and placeholder and placeholder in str(value):
                data[key] = str(value).replace(placeholder, data[names[0]])


# ------------------------------------------------------------------ the platform's objects


class PlatformView:
    def __init__(self, docs: list[dict]):
        self.docs = docs

    def _find(self, kind: str, name: str | None = None, component: str | None = None) -> dict:
        for d in self.docs:
            if d.get("kind") != kind:
                continue
            labels = d["metadata"].get("labels", {})
            if name is not None and d["metadata"]["name"] != name:
                continue
            if component is not None and labels.get("app.kubernetes.io/component") != component:
                continue
            return d
        raise ContractError(f"[platform chart] renders no {kind} {name or component}")

    def configmap(self, name: str) -> dict[str, str] | None:
        try:
            return {k: str(v) for k, v in (self._find("ConfigMap", name).get("data") or {}).items()}
        except ContractError:
            return None

    def secret(self, name: str) -> dict[str, str] | None:
        try:
            obj = self._find("Secret", name)
        except ContractError:
            return None
        out = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return out

    def deployment(self, component: str) -> dict:
        return self._find("Deployment", component=component)

    def bucket_job(self) -> dict:
        return self._find("Job", component="buckets")

    def job(self, component: str) -> dict:
        return self._find("Job", component=component)

    def service_port(self, component: str, port_name: str) -> tuple[str, int]:
        svc = self._find("Service", component=component)
        for p in svc["spec"]["ports"]:
            if p.get("name") == port_name:
                return svc["metadata"]["name"], int(p["port"])
        raise ContractError(f"[platform chart] Service {svc['metadata']['name']} has no port {port_name!r}")


# ------------------------------------------------------------------ the RayJob


def runtime_env_of(rayjob: dict) -> dict:
    return yaml.safe_load(rayjob["spec"].get("runtimeEnvYAML") or "") or {}


def groups(rayjob: dict) -> list[tuple[str, str, dict, int]]:
    """(role, group name, group spec, replicas) for the head and each worker group."""
    spec = rayjob["spec"]["rayClusterSpec"]
    out = [("head", "head", spec["headGroupSpec"], 1)]
    for g in spec.get("workerGroupSpecs", []):
        out.append(("worker", g["groupName"], g, int(g.get("replicas", g.get("minReplicas", 1)))))
    return out


def ray_container(group_spec: dict) -> dict:
    return group_spec["template"]["spec"]["containers"][0]


def entrypoint_argv(rayjob: dict) -> list[str]:
    return shlex.split(rayjob["spec"]["entrypoint"])


def console_scripts() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {}))


# ------------------------------------------------------------------ the image


@dataclass
class ImageSpec:
    """What image/Dockerfile gives every container: files in /app, ENV, USER, WORKDIR."""

    files: list[str]  # what it COPYs into /app besides the package (installed into the venv instead)
    env: dict[str, str]
    uid: int
    gid: int
    workdir: str


def image_spec(dockerfile: Path = DOCKERFILE) -> ImageSpec:
    text = dockerfile.read_text()
    logical = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    files: list[str] = []
    env: dict[str, str] = {}
    args: dict[str, str] = {}
    user, workdir = "0:0", "/"

    def expand(value: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), args.get(m.group(1), "")), value)

    for line in logical.splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if not words:
            continue
        op = words[0].upper()
        if op == "COPY":
            files += [s.rstrip("/") for s in words[1:-1] if not s.startswith("--")]
        elif op == "ARG" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            args.setdefault(key, expand(value))
        elif op == "ENV":
            for word in words[1:]:
                if "=" in word:
                    k, v = word.split("=", 1)
                    env[k] = expand(v)
        elif op == "USER":
            user = words[1]
        elif op == "WORKDIR":
            workdir = expand(words[1])
    uid, _, gid = user.partition(":")
    package = {"pyproject.toml", "README.md", "mnist_job"}  # installed into the image's Python, as in the venv
    return ImageSpec([f for f in files if f not in package], env, int(uid), int(gid or uid), workdir)
