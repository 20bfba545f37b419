"""Do what KubeRay and the platform chart do, with real local processes, from the rendered charts.

The harness reads everything from the rendered manifests (never restating them):

* platform chart (values-dev): the endpoints ConfigMap, the S3 credentials Secret, the
  Services (DNS name -> port), the MLflow Deployment's command and env, the bucket Job's
  command and env;
* RayJob chart (values-cpu-kind): head/worker rayStartParams, resource limits, replicas,
  container env/envFrom, entrypoint, runtimeEnvYAML, activeDeadlineSeconds, authOptions;
* image/Dockerfile: what the image puts in /app (its COPY lines) and its ENV.

What cannot be the same on one loopback-only machine is substituted, and every
substitution is recorded in ``Substitutions`` and printed. The rules:

* Service DNS names (``mnist-platform-minio:9000`` and its ``.mnist.svc...`` forms) map to
  the loopback port of the local stand-in (moto_server for MinIO, ``mlflow server``).
* Pod paths (volume mounts and the image's /app) map to ``<root>/pod/X``, one path for
  every pod, as in Kubernetes, where every pod sees its own /app and /data-cache at the same
  path: each Ray node runs in its own mount namespace (``unshare -m``) in which
  ``<root>/pod`` is a bind mount of that node's folder ``<root>/pods/<name>``. So a path the
  driver passes to the workers (the package hands its Runtime to them) means the worker's own
  folder, and each worker's data cache starts empty and is filled by its own ``dvc pull``.
  The MLflow server and the bucket job (one process each) get their folder written out.
* Fixed ports (6379, 8265, 10001, 5000, 9000) become free loopback ports; CPUs from the
  limits are scaled down to fit this machine; commands from the image (``mnist-job``,
  ``mlflow``, ``ray``) are the venv's console scripts (the image pip-installs the same
  pinned package).
"""

from __future__ import annotations

import ast
import copy
import difflib
import json
import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support import services

ROOT = services.PROJECT_DIR
VENV_BIN = services.VENV_BIN
NAMESPACE = "mnist"
PLATFORM_RELEASE = "mnist-platform"
RAYJOB_RELEASE = "mnist-train"
RAYJOB_CHART = ROOT / "charts" / "kuberay-mnist-rayjob"
PLATFORM_CHART = ROOT / "charts" / "kuberay-mnist-platform"
RAYJOB_ARGS = ("-f", str(RAYJOB_CHART / "values-cpu-kind.yaml"))
PLATFORM_ARGS = ("-f", str(PLATFORM_CHART / "values-dev.yaml"), "--set", "kuberay-operator.enabled=false")
RAYJOB_GENERATED = ROOT / "k8s" / "rayjob-cpu-kind.yaml"
PLATFORM_GENERATED = ROOT / "k8s" / "platform-dev.yaml"
# Overrides the harness may append to the entrypoint (each printed as a substitution); none by
# default: the CPU profile runs as rendered.
ENTRYPOINT_OVERRIDES = tuple(o for o in os.environ.get("MNIST_E2E_OVERRIDES", "").split(",") if o)
# The harness's own cap on the job, under the manifest's activeDeadlineSeconds (CI must stay fast).
JOB_CAP_S = float(os.environ.get("MNIST_E2E_JOB_CAP_S", "600"))
# Env vars whose presence in the pods the contract requires, with what reads them. The
# MNIST_/MLFLOW_/AWS_ENDPOINT names are also checked against mnist_job/config.py (Runtime.from_env),
# so a rename on the package side is reported as such.
REQUIRED_ENV = {
    "MLFLOW_TRACKING_URI": "mnist_job (config.Runtime.from_env): without it the job logs to a pod-local SQLite",
    "AWS_ENDPOINT_URL": "mnist_job (config.Runtime.from_env), boto3, DVC and pyarrow: the MinIO endpoint",
    "MNIST_DVC_REMOTE_URL": "mnist_job (config.Runtime.from_env): where workers dvc pull from",
    "MNIST_DATA_CACHE": "mnist_job (config.Runtime.from_env): the per-pod cache the dataset is pulled into",
    "MNIST_PROJECT_DIR": "mnist_job (config.Runtime.from_env): the image's DVC metadata and params.yaml",
    "AWS_ACCESS_KEY_ID": "boto3, DVC, pyarrow (S3 credentials)",
    "AWS_SECRET_ACCESS_KEY": "boto3, DVC, pyarrow (S3 credentials)",
}
CREDENTIAL_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


class ContractError(AssertionError):
    """A contract between the charts, the image and the package is broken; the message says which side."""


def _say(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------ bookkeeping


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


@dataclass
class Phases:
    times: list[tuple[str, float]] = field(default_factory=list)

    def run(self, name: str):
        phases = self

        class _Timer:
            def __enter__(self):
                self.t0 = time.monotonic()
                _say(f"==> {name}")
                return self

            def __exit__(self, *exc):
                seconds = time.monotonic() - self.t0
                phases.times.append((name, seconds))
                _say(f"<== {name}: {seconds:.1f} s{' (failed)' if exc[0] else ''}")
                return False

        return _Timer()

    def render(self) -> str:
        total = sum(s for _, s in self.times)
        rows = [f"  {name:<72} {seconds:7.1f} s" for name, seconds in self.times]
        return "\n".join(["phase timings:", *rows, f"  {'total':<72} {total:7.1f} s"])


# ------------------------------------------------------------------ rendering


def helm_template(chart: Path, release: str, *args: str) -> list[dict]:
    helm = ROOT / ".tools" / "bin" / "helm"
    env = {**os.environ, "PATH": f"{helm.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
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
            _say(f"NOTE: {RAYJOB_GENERATED.relative_to(ROOT)} differs from a fresh render of the chart "
                 "(run `make manifests`); the harness uses the fresh render")
    else:
        rayjob_docs = [d for d in yaml.safe_load_all(RAYJOB_GENERATED.read_text()) if d]
        platform_docs = [d for d in yaml.safe_load_all(PLATFORM_GENERATED.read_text()) if d]
        subs.add("rendering", "helm template", "k8s/*.yaml", "helm is not installed (scripts/install-tools.sh helm)")
    rayjobs = [d for d in rayjob_docs if d.get("kind") == "RayJob"]
    assert len(rayjobs) == 1, f"expected one RayJob in the CPU profile, found {len(rayjobs)}"
    return rayjobs[0], platform_docs


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
        import base64

        out = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return out

    def deployment_container(self, component: str) -> dict:
        return self._find("Deployment", component=component)["spec"]["template"]["spec"]["containers"][0]

    def bucket_job(self) -> dict:
        return self._find("Job", component="buckets")

    def services(self) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == "Service"]

    def service_port(self, component: str, port_name: str) -> tuple[str, int]:
        svc = self._find("Service", component=component)
        for p in svc["spec"]["ports"]:
            if p.get("name") == port_name:
                return svc["metadata"]["name"], int(p["port"])
        raise ContractError(f"[platform chart] Service {svc['metadata']['name']} has no port {port_name!r}")


class ServiceMap:
    """Cluster DNS names of the platform's Services -> the loopback address of the local stand-in."""

    def __init__(self, subs: Substitutions):
        self.subs = subs
        self.table: dict[tuple[str, int], str] = {}

    def add(self, service: str, port: int, local: str, namespace: str = NAMESPACE) -> None:
        for host in (service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                     f"{service}.{namespace}.svc.cluster.local"):
            self.table[(host, port)] = local
        self.subs.add("service DNS", f"{service}:{port}", local, "no cluster DNS; the stand-in listens on loopback")

    def url(self, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return value
        port = parts.port or (443 if parts.scheme == "https" else 80)
        local = self.table.get((parts.hostname, port))
        if local is None:
            if "." not in parts.hostname or parts.hostname.endswith(".svc.cluster.local"):
                raise ContractError(f"[chart] {value} names a Service the platform chart does not define")
            return value
        return urllib.parse.urlunsplit(parts._replace(netloc=local))


# ------------------------------------------------------------------ env resolution


def resolve_env(container: dict, platform: PlatformView, where: str) -> dict[str, str]:
    """The container's env as the kubelet computes it: envFrom first, then env (later wins)."""
    out: dict[str, str] = {}
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            data = platform.configmap(ref["name"])
            kind = "ConfigMap"
        else:
            ref = source["secretRef"]
            data = platform.secret(ref["name"])
            kind = "Secret"
        if data is None:
            if ref.get("optional"):
                continue
            raise ContractError(f"[RayJob chart vs platform chart] {where}: envFrom {kind} {ref['name']!r} is not "
                                f"rendered by the platform chart")
        out.update({prefix + k: v for k, v in data.items()})
    for item in container.get("env", []) or []:
        name = item["name"]
        if "value" in item:
            out[name] = str(item["value"])
            continue
        source = item.get("valueFrom", {})
        for kind, ref_key, getter in (("ConfigMap", "configMapKeyRef", platform.configmap),
                                      ("Secret", "secretKeyRef", platform.secret)):
            if ref_key in source:
                ref = source[ref_key]
                data = getter(ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    what = f"{kind} {ref['name']!r}" if data is None else f"key {ref['key']!r} of {kind} {ref['name']!r}"
                    hint = ""
                    if data is not None:
                        close = difflib.get_close_matches(ref["key"], list(data), n=1)
                        hint = f" (it has {close[0]!r}: renamed on one side?)" if close else f" (it has {sorted(data)})"
                    raise ContractError(f"[RayJob chart vs platform chart] {where}: env {name} refers to {what}, "
                                        f"which the platform chart does not define{hint}")
                out[name] = data[ref["key"]]
                break
        else:
            if source:
                raise ContractError(f"[harness] {where}: env {name}: valueFrom {sorted(source)} is not supported here")
    return out


def package_env_names() -> set[str]:
    """The env var names mnist_job's config module reads (``get("NAME")`` in Runtime.from_env)."""
    tree = ast.parse((ROOT / "mnist_job" / "config.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "get":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


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


def image_layout(dockerfile: Path = ROOT / "image" / "Dockerfile") -> tuple[list[str], dict[str, str]]:
    """(files the image COPYs into /app besides the package sources, the image's ENV)."""
    text = dockerfile.read_text()
    logical = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    files: list[str] = []
    env: dict[str, str] = {}
    for line in logical.splitlines():
        words = shlex.split(line, comments=True) if line.strip() else []
        if not words:
            continue
        if words[0] == "COPY":
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            files += [s.rstrip("/") for s in sources]
        elif words[0] == "ENV":
            for word in words[1:]:
                if "=" in word:
                    k, v = word.split("=", 1)
                    env[k] = v
    package = {"pyproject.toml", "README.md", "mnist_job"}  # installed into the image's Python, as in the venv
    return [f for f in files if f not in package], env


def entrypoint_argv(rayjob: dict) -> list[str]:
    return shlex.split(rayjob["spec"]["entrypoint"])


def entrypoint_params(rayjob: dict | str, params_file: Path):
    """Parse the entrypoint (a RayJob's, or a command line) exactly as mnist-job would: (args, effective Params)."""
    from mnist_job import cli
    from mnist_job import config as cfg

    argv = (shlex.split(rayjob) if isinstance(rayjob, str) else entrypoint_argv(rayjob))[1:]
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        raise ContractError(f"[RayJob chart] entrypoint arguments are rejected by `mnist-job` (exit {exc.code}): "
                            f"{shlex.join(argv)}") from None
    flags = cli.TRAIN_FLAGS if args.command == "train" else {}
    given = {key: getattr(args, name, None) for name, (_, key, _) in flags.items()}
    try:
        params = cfg.load_params(params_file, args.overrides, given)
    except Exception as exc:  # noqa: BLE001 (InvalidInput: a --set the package no longer accepts)
        raise ContractError(f"[RayJob chart vs mnist_job] entrypoint params are invalid for the package: {exc}") from None
    return args, params


# ------------------------------------------------------------------ static contract checks


def preflight(rayjob: dict, platform: PlatformView) -> list[str]:
    """Everything that can be found wrong without starting a process. Returns notes; raises ContractError."""
    problems: list[str] = []
    notes: list[str] = []
    known_by_package = package_env_names()
    runtime_vars = {str(k) for k in (runtime_env_of(rayjob).get("env_vars") or {})}
    for name, reader in REQUIRED_ENV.items():
        if reader.startswith("mnist_job") and name not in known_by_package:
            problems.append(f"[mnist_job] the package no longer reads {name} (mnist_job/config.py Runtime.from_env "
                            f"reads {sorted(known_by_package)}), but the charts provide it")
    for role, group, spec, _ in groups(rayjob):
        where = f"{role} group {group!r}"
        try:
            env = resolve_env(ray_container(spec), platform, where)
        except ContractError as exc:
            problems.append(str(exc))
            continue
        available = set(env) | runtime_vars
        for name, reader in REQUIRED_ENV.items():
            if name not in available:
                close = difflib.get_close_matches(name, sorted(available), n=1, cutoff=0.75)
                hint = f"; it sets {close[0]} instead (renamed?)" if close else ""
                problems.append(f"[RayJob chart] manifest env of the {where} lacks {name} that {reader}{hint}")
    # the command must exist in the image: the package's console scripts or the image's Python env
    argv = entrypoint_argv(rayjob)
    scripts = _console_scripts()
    if not argv:
        problems.append("[RayJob chart] the entrypoint is empty")
    elif argv[0] not in scripts and not (VENV_BIN / argv[0]).exists():
        problems.append(f"[RayJob chart] entrypoint command {argv[0]!r} does not exist in the image (the package "
                        f"provides {sorted(scripts)}; the image's Python env has ray, python, dvc, mlflow, ...)")
    elif argv[0] in scripts:
        with_local_params = copy.deepcopy(rayjob)
        try:
            _, params = entrypoint_params(with_local_params, ROOT / "params.yaml")
        except ContractError as exc:
            problems.append(str(exc))
            params = None
        if params is not None:
            # the buckets the job writes to / reads from must be created by the platform's bucket job
            created = {a.split("=", 1)[1] for a in platform.bucket_job()["spec"]["template"]["spec"]["containers"][0]
                       ["command"] if a.startswith("--bucket=")}
            head_env = resolve_env(ray_container(groups(rayjob)[0][2]), platform, "head")
            wanted = {"train.storage_path": params.train.storage_path,
                      "MNIST_DVC_REMOTE_URL": head_env.get("MNIST_DVC_REMOTE_URL", "")}
            for what, url in wanted.items():
                if url.startswith("s3://"):
                    bucket = urllib.parse.urlsplit(url).netloc
                    if bucket not in created:
                        problems.append(f"[charts] {what} = {url}: bucket {bucket!r} is not created by the platform's "
                                        f"bucket job (it creates {sorted(created)}); the job would exit 3")
            workers = sum(r for role, _, _, r in groups(rayjob) if role == "worker")
            if params.train.num_workers > workers:
                problems.append(f"[RayJob chart] train.num_workers={params.train.num_workers} > {workers} worker pods")
    if problems:
        raise ContractError("contract broken:\n  " + "\n  ".join(problems))
    return notes


def _console_scripts() -> set[str]:
    import tomllib

    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("scripts", {}))


# ------------------------------------------------------------------ path rewriting


def rewrite_pod_path(value: str, prefixes: list[str], root: str) -> str:
    """``/X/...`` -> ``root/X/...`` when /X is one of the pod's mount points (or /app); else unchanged."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        if value == prefix or value.startswith(prefix.rstrip("/") + "/"):
            return root + value
    return value


def rewrite_token(token: str, prefixes: list[str], root: str) -> str:
    """A command-line word: a path, or key=path (as in --set train.output_dir=/tmp/outputs)."""
    if token.startswith("/"):
        return rewrite_pod_path(token, prefixes, root)
    if "=" in token:
        key, value = token.split("=", 1)
        if value.startswith("/"):
            return f"{key}={rewrite_pod_path(value, prefixes, root)}"
    return token


def pod_prefixes(container: dict) -> list[str]:
    mounts = [m["mountPath"] for m in container.get("volumeMounts", []) if m["mountPath"] != "/dev/shm"]
    return sorted(set(mounts) | {"/app"})


# ------------------------------------------------------------------ the platform, locally


@dataclass
class LocalPlatform:
    s3: services.S3Server
    mlflow: services.MlflowServer
    services: ServiceMap
    endpoints: dict[str, str]  # the endpoints ConfigMap, mapped to loopback
    credentials: dict[str, str]
    bucket_job_output: str
    dvc_push_output: str

    def s3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3.endpoint, region_name=self.endpoints.get("AWS_DEFAULT_REGION"),
                            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"])

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.s3_client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]

    def stop(self) -> None:
        for stop in (self.mlflow.stop, self.s3.process.stop):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001
                _say(f"stopping: {exc}")


def _container_env(container: dict, platform: PlatformView, where: str, svc: ServiceMap, pod_root: Path,
                   subs: Substitutions) -> dict[str, str]:
    env = resolve_env(container, platform, where)
    prefixes = pod_prefixes(container)
    out = {}
    for name, value in env.items():
        local = svc.url(value)
        local = rewrite_pod_path(local, prefixes, str(pod_root))
        if local != value and name not in CREDENTIAL_VARS:
            subs.add(f"{where} env {name}", value, local.replace(str(pod_root), f"<{pod_root.name}>"),
                     "service DNS / pod path")
        out[name] = local
    return out


def base_process_env(pod_root: Path, image_env: dict[str, str] | None = None) -> dict[str, str]:
    """A pod's starting environment: PATH with the image's Python first, the image's ENV, TMPDIR -> its /tmp."""
    env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": os.environ.get("LANG", "C.UTF-8"),
           "TMPDIR": str(pod_root / "tmp")}
    for k, v in (image_env or {}).items():
        env[k] = rewrite_pod_path(v, ["/app"], str(pod_root))
    return env


def start_platform(platform: PlatformView, root: Path, subs: Substitutions, phases: Phases,
                   project_dir: Path = ROOT) -> LocalPlatform:
    log_dir = root / "logs"
    svc = ServiceMap(subs)
    s3 = mlflow = None
    try:
        with phases.run("platform: S3 stand-in (moto_server for MinIO)"):
            s3 = services.start_s3(log_dir)
            minio_name, minio_port = platform.service_port("minio", "s3")
            svc.add(minio_name, minio_port, s3.endpoint.split("://", 1)[1])
            subs.add("MinIO", "quay.io/minio/minio (Deployment mnist-platform-minio)", f"moto_server {s3.endpoint}",
                     "no containers here; moto accepts any credentials and keeps buckets in memory")
        endpoints_cm = platform.configmap(f"{PLATFORM_RELEASE}-endpoints") or {}
        job = platform.bucket_job()
        container = job["spec"]["template"]["spec"]["containers"][0]
        with phases.run("platform: bucket job (mnist-job ensure-buckets)"):
            pod = root / "pods" / "buckets"
            (pod / "tmp").mkdir(parents=True, exist_ok=True)
            env = {**base_process_env(pod), **_container_env(container, platform, "bucket job", svc, pod, subs)}
            command = [_local_command(container["command"][0], subs), *container["command"][1:]]
            deadline = min(float(job["spec"].get("activeDeadlineSeconds", 600)), 120.0)
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=deadline, cwd=pod)
            bucket_output = done.stdout + done.stderr
            (log_dir / "bucket-job.log").write_text(bucket_output)
            _say(bucket_output.strip())
            if done.returncode != 0:
                raise RuntimeError(f"bucket job {shlex.join(container['command'])} failed (exit {done.returncode}): "
                                   f"{bucket_output[-1500:]}")
        credentials = {k: v for k, v in env.items() if k in CREDENTIAL_VARS}
        with phases.run("platform: mlflow server (the Deployment's command)"):
            mlflow = _start_mlflow(platform, root, svc, subs)
            mlflow_name, mlflow_port = platform.service_port("mlflow", "http")
            svc.add(mlflow_name, mlflow_port, f"127.0.0.1:{mlflow.port}")
        endpoints = {k: svc.url(v) for k, v in endpoints_cm.items()}
        with phases.run("platform: dvc push data/mnist (kind-up's dataset step)"):
            push_output = dvc_push(root / "dvc-push", endpoints, credentials, project_dir)
        return LocalPlatform(s3, mlflow, svc, endpoints, credentials, bucket_output, push_output)
    except BaseException:
        for process in (mlflow, s3.process if s3 else None):
            if process is not None:
                process.stop()
        raise


def _local_command(name: str, subs: Substitutions) -> str:
    local = VENV_BIN / name
    if not local.exists():
        raise ContractError(f"[chart] command {name!r} is not in the image's Python env ({VENV_BIN})")
    subs.add("command", name, str(local), "the image's console script = the venv's (same pinned package)")
    return str(local)


def _start_mlflow(platform: PlatformView, root: Path, svc: ServiceMap, subs: Substitutions) -> services.MlflowServer:
    container = platform.deployment_container("mlflow")
    pod = root / "pods" / "mlflow"
    for mount in container.get("volumeMounts", []):
        (pod / mount["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    prefixes = pod_prefixes(container)
    port = services.free_port()
    command = list(container["command"])
    args = [_local_command(command[0], subs)]
    words = command[1:]
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and "=" not in word and i + 1 < len(words) and not words[i + 1].startswith("--"):
            key, value, i = word, words[i + 1], i + 2
        elif word.startswith("--") and "=" in word:
            (key, value), i = word.split("=", 1), i + 1
        else:
            args.append(word)
            i += 1
            continue
        local = value
        if key == "--backend-store-uri" and value.startswith("sqlite:///"):
            local = "sqlite:///" + rewrite_pod_path(value[len("sqlite:///"):], prefixes, str(pod))
        elif key == "--host":
            local = "127.0.0.1"
        elif key == "--port":
            local = str(port)
        if local != value:
            subs.add(f"mlflow server {key}", value, local.replace(str(pod), "<mlflow-pod>"),
                     "bind loopback only / free port / the PVC is a local folder")
        args.append(f"{key}={local}")
    env = {**base_process_env(pod), **_container_env(container, platform, "mlflow", svc, pod, subs)}
    server = services.MlflowServer(None, f"http://127.0.0.1:{port}", port, args, env, root / "logs")
    server.restart()
    _say(f"mlflow server: {shlex.join(args)}")
    return server


def dvc_push(workspace: Path, endpoints: dict[str, str], credentials: dict[str, str], project_dir: Path) -> str:
    """Push data/mnist to the manifest's DVC remote from a throw-away copy of the DVC metadata + data.

    The same steps as scripts/kind-up.sh (remote add --local, endpointurl, push), in a copy so the
    repository's .dvc/config is never touched. The copy has no DVC cache: its data/mnist output is
    committed into the copy's own cache first, and must hash to the md5 in dvc.lock.
    """
    for rel in ("dvc.yaml", "dvc.lock", ".dvc/config"):
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_dir / rel, workspace / rel)
    shutil.copytree(project_dir / "data" / "mnist", workspace / "data" / "mnist")
    env = {**services.base_env(), **credentials, "AWS_DEFAULT_REGION": endpoints.get("AWS_DEFAULT_REGION", "us-east-1")}
    dvc = str(VENV_BIN / "dvc")
    url = endpoints["MNIST_DVC_REMOTE_URL"]
    output = []
    for cmd in ([dvc, "config", "--local", "core.no_scm", "true"],
                [dvc, "remote", "add", "--local", "--force", "platform", url],
                [dvc, "remote", "modify", "--local", "platform", "endpointurl", endpoints["AWS_ENDPOINT_URL"]],
                [sys.executable, "-c", _COMMIT_SNIPPET],
                [dvc, "push", "-r", "platform", "data/mnist"]):
        done = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
        text = (done.stdout + done.stderr).strip()
        output.append(f"$ {shlex.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:4]))}\n{text}")
        if done.returncode != 0 or "missing" in text.lower() and "cache" in text.lower():
            raise RuntimeError(f"dvc push to {url} (endpoint {endpoints['AWS_ENDPOINT_URL']}) failed: {text[-1500:]}")
    _say(output[-1])
    return "\n".join(output)


_COMMIT_SNIPPET = """
from dvc.repo import Repo
repo = Repo('.')
with repo.lock:
    out = next(o for o in repo.index.outs if o.def_path == 'data/mnist')
    locked = out.hash_info.value
    out.save()
    assert out.hash_info.value == locked, f'data/mnist hashes to {out.hash_info.value}, dvc.lock says {locked}'
    out.commit()
    print('committed data/mnist', locked)
"""


# ------------------------------------------------------------------ the Ray cluster, locally


@dataclass
class Pod:
    name: str
    role: str
    group: str
    root: Path  # the pod's folder as the harness sees it
    mount: Path  # the same folder as the pod's processes see it (bind mount in their mount namespace)
    env: dict[str, str]
    cpus_manifest: float
    cpus_local: int

    def host_path(self, path: str | Path) -> Path:
        """A path the pod's processes use -> where the harness finds it."""
        return self.root / Path(path).relative_to(self.mount)

    @property
    def data_cache(self) -> Path:
        return self.host_path(self.env["MNIST_DATA_CACHE"])


@dataclass
class LocalRayCluster:
    cluster: services.RayCluster
    pods: list[Pod]
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self) -> None:
        for process in reversed(self.cluster.processes()):
            process.stop(timeout=8)  # gcs_server may ignore SIGTERM for long: SIGKILL sooner


def _quantity(q) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    units = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return float(m.group(1)) * units[m.group(2)]


def _install_image_files(app: Path, project_dir: Path) -> None:
    """What the image has in /app for the job: the Dockerfile's COPYs (minus the installed package)."""
    files, _ = image_layout()
    for rel in files:
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_dir / rel, app / rel)
    # RUN dvc config --local core.no_scm true && mkdir -p /app/.dvc/tmp
    (app / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    (app / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)


def pod_mount_point(root: Path) -> Path:
    """Where every Ray pod sees its own folder (like /app and /data-cache in every pod)."""
    (root / "pod").mkdir(exist_ok=True)
    return root / "pod"


def in_pod_namespace(pod: Pod, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace where ``pod.mount`` is a bind mount of ``pod.root``."""
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "pod", str(pod.root),
            str(pod.mount), *argv]


def plan_pods(rayjob: dict, platform: PlatformView, svc: ServiceMap, root: Path, subs: Substitutions,
              project_dir: Path = ROOT, cpus_available: int | None = None) -> list[Pod]:
    cpus_available = cpus_available or os.cpu_count() or 2
    _, image_env = image_layout()
    pods = []
    for role, group, spec, replicas in groups(rayjob):
        container = ray_container(spec)
        params = {k: str(v) for k, v in (spec.get("rayStartParams") or {}).items()}
        limit = container.get("resources", {}).get("limits", {}).get("cpu", "1")
        cpus = float(params.get("num-cpus", _quantity(limit)))
        for i in range(replicas):
            name = "head" if role == "head" else f"{group}-{i}"
            pod_root, mount = root / "pods" / name, pod_mount_point(root)
            for volume in container.get("volumeMounts", []):
                if volume["mountPath"] != "/dev/shm":
                    (pod_root / volume["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
            _install_image_files(pod_root / "app", project_dir)
            env = {**base_process_env(mount, image_env),
                   **_container_env(container, platform, f"{role} {group}", svc, mount, subs)}
            pod = Pod(name, role, group, pod_root, mount, env, cpus, int(cpus))
            for var in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "TMPDIR"):
                if var in env and env[var].startswith(str(mount)):
                    pod.host_path(env[var]).mkdir(parents=True, exist_ok=True)
            pods.append(pod)
    workers = [p for p in pods if p.role == "worker"]
    total = sum(p.cpus_manifest for p in workers)
    if total > cpus_available:
        for p in workers:
            p.cpus_local = max(1, math.floor(p.cpus_manifest * cpus_available / total))
        subs.add("worker CPUs", f"{len(workers)} x {workers[0].cpus_manifest:g} (limits.cpu)",
                 f"{len(workers)} x {workers[0].cpus_local}", f"this machine has {cpus_available} cores")
    return pods


def start_ray(rayjob: dict, pods: list[Pod], root: Path, subs: Substitutions, timeout: float = 180) -> LocalRayCluster:
    """`ray start --head` and one `ray start --address` per worker pod, from the manifest's rayStartParams."""
    spec = rayjob["spec"]["rayClusterSpec"]
    auth = (spec.get("authOptions") or {}).get("mode", "disabled")
    token = secrets.token_hex(16) if auth == "token" else ""
    gcs_port, dashboard_port, client_port = services.free_port(), services.free_port(), services.free_port()
    address = f"127.0.0.1:{gcs_port}"
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    subs.add("ray ports", "6379 / 8265 / 10001 (head Service)", f"{gcs_port} / {dashboard_port} / {client_port}",
             "several nodes share one loopback: free ports")
    subs.add("ray --node-ip-address", "the pod IP", "127.0.0.1", "one host, loopback-only network namespace")
    subs.add("ray --temp-dir", "/tmp/ray", f"{pods[0].mount}/ray", "each pod has its own /tmp")
    subs.add("pod filesystem", "/app, /data-cache, /tmp (image + emptyDirs)",
             f"{pods[0].mount}/X = bind mount of <root>/pods/<pod>/X in the node's own mount namespace",
             "no containers; same path in every pod, different content, as in Kubernetes")
    specs = []
    by_group = {g: s for _, g, s, _ in groups(rayjob)}
    for pod in pods:
        group_spec = by_group[pod.group]
        container = ray_container(group_spec)
        params = {k: str(v) for k, v in (group_spec.get("rayStartParams") or {}).items()}
        args = [str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={pod.mount / 'ray'}",
                "--disable-usage-stats"]
        if pod.role == "head":
            args += ["--head", f"--port={gcs_port}", f"--dashboard-port={dashboard_port}",
                     f"--ray-client-server-port={client_port}"]
            params.setdefault("dashboard-host", "0.0.0.0")  # what KubeRay sets on the head
        else:
            args += [f"--address={address}"]
        # KubeRay: num-cpus and memory from the container limits unless rayStartParams set them
        params["num-cpus"] = str(pod.cpus_local)
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits and "memory" not in params:
            params["memory"] = str(int(_quantity(limits["memory"])))
        if "object-store-memory" not in params:
            shm = next((v.get("emptyDir", {}).get("sizeLimit") for v in group_spec["template"]["spec"].get("volumes", [])
                        if v.get("name") == "dshm"), None)
            cap = _quantity(shm) if shm else 512 * 2**20
            params["object-store-memory"] = str(int(min(0.3 * _quantity(limits.get("memory", "2Gi")), cap)))
        params["dashboard-agent-listen-port"] = str(services.free_port())
        for key, value in params.items():
            if value.lower() == "true" and key in ("block", "include-dashboard", "disable-usage-stats"):
                args.append(f"--{key}")
            else:
                args.append(f"--{key}={value}")
        env = {**pod.env, "RAY_AUTH_MODE": auth}
        if token:
            env["RAY_AUTH_TOKEN"] = token  # KubeRay: from the Secret it generates for authOptions.mode=token
        specs.append(services.RayNodeSpec(f"ray-{pod.name}", in_pod_namespace(pod, args), env, cwd=pod.root / "app"))
        _say(f"{pod.name}: {shlex.join(a.replace(str(root), '<root>') for a in args[1:])}")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    cluster = services.start_ray_nodes(specs[0], specs[1:], address, dashboard, root / "logs", timeout, headers=headers)
    return LocalRayCluster(cluster, pods, token)


# ------------------------------------------------------------------ the submitter


def job_submission(rayjob: dict, pods: list[Pod], subs: Substitutions) -> tuple[str, dict]:
    """(entrypoint, runtime_env) as the submitter sends them, pod paths mapped to the pods' mount point."""
    head_container = ray_container(groups(rayjob)[0][2])
    prefixes = pod_prefixes(head_container)
    var = str(pods[0].mount)
    original = rayjob["spec"]["entrypoint"]
    words = [rewrite_token(w, prefixes, var) for w in shlex.split(original)]
    for before, after in zip(shlex.split(original), words, strict=True):
        if before != after:
            subs.add("entrypoint word", before, after, "image path -> the pod's folder")
    if words and words[0] in _console_scripts():
        for override in ENTRYPOINT_OVERRIDES:
            words += ["--set", override]
            subs.add("entrypoint override", "(none)", f"--set {override}", "appended by the harness (MNIST_E2E_OVERRIDES)")
    entrypoint = shlex.join(words)
    runtime_env = runtime_env_of(rayjob)
    env_vars = {}
    for k, v in (runtime_env.get("env_vars") or {}).items():
        local = rewrite_pod_path(str(v), prefixes, var)
        if local != v:
            subs.add(f"runtimeEnvYAML env_vars.{k}", v, local, "image path / emptyDir -> the pod's folder")
        env_vars[str(k)] = local
    runtime_env = {**runtime_env, "env_vars": env_vars}
    return entrypoint, runtime_env


@dataclass
class JobOutcome:
    submission_id: str
    status: str
    message: str
    logs: str
    seconds: float
    log_file: Path


def submit_and_follow(cluster: LocalRayCluster, rayjob: dict, entrypoint: str, runtime_env: dict, log_dir: Path,
                      cap_s: float, echo: bool = True) -> JobOutcome:
    """What KubeRay's submitter does (`ray job submit ... -- <entrypoint>` and tail the logs), via the Jobs API."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    deadline_s = float(rayjob["spec"].get("activeDeadlineSeconds") or cap_s)
    limit = min(deadline_s, cap_s)
    client = JobSubmissionClient(cluster.cluster.dashboard, headers=cluster.headers)
    submission_id = f"{rayjob['metadata']['name']}-{secrets.token_hex(3)}"
    started = time.monotonic()
    client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id)
    log_file = log_dir / f"job-{submission_id}.log"
    seen = 0
    status = None
    while True:
        status = client.get_job_status(submission_id)
        logs = client.get_job_logs(submission_id)
        if len(logs) > seen:
            chunk = logs[seen:]
            log_file.write_text(logs)
            if echo:
                for line in chunk.splitlines():
                    print(f"  | {line}", flush=True)
            seen = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        if time.monotonic() - started > limit:
            client.stop_job(submission_id)
            status = "DEADLINE_EXCEEDED"
            break
        time.sleep(2)
    info = client.get_job_info(submission_id)
    logs = client.get_job_logs(submission_id)
    log_file.write_text(logs)
    return JobOutcome(submission_id, str(getattr(status, "value", status)), info.message or "", logs,
                      time.monotonic() - started, log_file)


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
