"""The platform chart's pieces, run locally: S3 stand-in, the bucket Job's pod, the MLflow Deployment's pod.

moto_server stands for MinIO (no containers here). The bucket Job and the MLflow server run the
rendered command in a pod sandbox (sandbox.py) with the rendered env; the dataset is pushed with DVC
from the developer's side, as scripts/kind-up.sh does.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import services
from tests.support.kuberay.env import ServiceMap, container_base_env, resolve_env, rewrite_token
from tests.support.kuberay.rendering import (
    PLATFORM_RELEASE,
    ROOT,
    VENV_BIN,
    Phases,
    PlatformView,
    Substitutions,
    image_spec,
    say,
)
from tests.support.kuberay.sandbox import PodSandbox, pod_sandbox


@dataclass
class LocalPlatform:
    s3: services.S3Server
    mlflow: services.MlflowServer
    services: ServiceMap
    endpoints: dict[str, str]  # the endpoints ConfigMap, mapped to loopback
    credentials: dict[str, str]
    bucket_job_output: str
    dvc_push_output: str
    mlflow_users_output: str
    mlflow_admin: tuple[str, str]  # (user, password) from the rendered admin Secret
    pods: list[PodSandbox] = field(default_factory=list)  # long-running pods (their volumes end with them)

    def s3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3.endpoint, region_name=self.endpoints.get("AWS_DEFAULT_REGION"),
                            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"])

    def mlflow_admin_uri(self) -> str:
        """The MLflow server's URI with the admin's credentials in it (the requests library sends them)."""
        user, password = (urllib.parse.quote(part, safe="") for part in self.mlflow_admin)
        return self.mlflow.uri.replace("://", f"://{user}:{password}@", 1)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.s3_client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]

    def stop(self) -> None:
        for stop in (self.mlflow.stop, self.s3.process.stop, *(pod.volumes.stop for pod in self.pods)):
            try:
                stop()
            except Exception as exc:  # noqa: BLE001
                say(f"stopping: {exc}")


def workload_sandbox(kind_name: str, obj: dict, platform: PlatformView, svc: ServiceMap, root: Path,
                     subs: Substitutions) -> tuple[PodSandbox, list[str]]:
    """(sandbox, command) of the first container of a Deployment/Job, its env and paths made local."""
    pod_spec = obj["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    name = obj["metadata"]["name"]
    image = image_spec()
    env = {**container_base_env(image.env, name, platform, svc), **resolve_env(container, platform, kind_name)}
    sandbox = pod_sandbox(name, pod_spec, container, env, image, root, subs, svc, sources=platform)
    command = [rewrite_token(word, sandbox.prefixes, str(sandbox.mount))
               for word in [*(container.get("command") or []), *(container.get("args") or [])]]
    return sandbox, command


def start_platform(platform: PlatformView, root: Path, subs: Substitutions, phases: Phases) -> LocalPlatform:
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
        with phases.run("platform: bucket job pod (mnist-job ensure-buckets)"):
            bucket_output, _ = run_job("bucket job", platform.bucket_job(), platform, svc, root, subs)
        credentials = root_credentials(platform)
        with phases.run("platform: mlflow server pod (the Deployment's command)"):
            mlflow, mlflow_pod = _start_mlflow(platform, root, svc, subs)
            mlflow_name, mlflow_port = platform.service_port("mlflow", "http")
            svc.add(mlflow_name, mlflow_port, f"127.0.0.1:{mlflow.port}")
        with phases.run("platform: mlflow users job pod (training user, EDIT on its experiment and model)"):
            users_output, _ = run_job("mlflow users job", platform.job("mlflow-users"), platform, svc, root, subs)
        admin = platform.secret(f"{PLATFORM_RELEASE}-mlflow-admin") or {}
        endpoints = {k: svc.url(v) for k, v in endpoints_cm.items()}
        with phases.run("platform: dvc push data/mnist (kind-up's dataset step)"):
            push_output = dvc_push(root / "dvc-push", endpoints, credentials, ROOT)
        return LocalPlatform(s3, mlflow, svc, endpoints, credentials, bucket_output, push_output, users_output,
                             (admin.get("username", ""), admin.get("password", "")), [mlflow_pod])
    except BaseException:
        if mlflow is not None:
            mlflow_pod.volumes.stop()
        for process in (mlflow, s3.process if s3 else None):
            if process is not None:
                process.stop()
        raise


def root_credentials(platform: PlatformView) -> dict[str, str]:
    """AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the credentials file the bucket job mounts (what kind-up's
    dvc push uses, and the harness's own S3 reads)."""
    volumes = platform.bucket_job()["spec"]["template"]["spec"]["volumes"]
    (name,) = [v["secret"]["secretName"] for v in volumes if v["name"] == "s3-credentials"]
    ini = configparser.ConfigParser()
    ini.read_string((platform.secret(name) or {})["credentials"])
    return {"AWS_ACCESS_KEY_ID": ini["default"]["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": ini["default"]["aws_secret_access_key"]}


# Containers of the platform's Jobs the harness cannot run, and why.
_NOT_RUN = {"minio-users": "mc admin needs MinIO's admin API, which moto_server lacks; moto takes any key, so the "
                           "per-workload keys are used but not enforced here (tests/manifests/test_s3_policies.py "
                           "enforces the rendered policies in moto's IAM)"}


def run_job(kind_name: str, job: dict, platform: PlatformView, svc: ServiceMap, root: Path,
            subs: Substitutions) -> tuple[str, dict[str, str]]:
    """A Job's pod run once to its end (capped at 120 s): (its output, its env); RuntimeError when it fails."""
    sandbox, command = workload_sandbox(kind_name, job, platform, svc, root, subs)
    for other in job["spec"]["template"]["spec"]["containers"][1:]:
        subs.add(f"{kind_name} container {other['name']}", other["image"], "not run",
                 _NOT_RUN.get(other["name"], "the harness runs a Job's first container only"))
    done = sandbox.run(command, timeout=min(float(job["spec"].get("activeDeadlineSeconds", 600)), 120.0))
    output = done.stdout + done.stderr
    (root / "logs" / f"{job['metadata']['name']}.log").write_text(output)
    say(output.strip())
    if done.returncode != 0:
        raise RuntimeError(f"{kind_name} {shlex.join(command)} failed (exit {done.returncode}): {output[-1500:]}")
    return output, sandbox.env


def _start_mlflow(platform: PlatformView, root: Path, svc: ServiceMap,
                  subs: Substitutions) -> tuple[services.MlflowServer, PodSandbox]:
    sandbox, command = workload_sandbox("mlflow", platform.deployment("mlflow"), platform, svc, root, subs)
    port = services.free_port()
    local = []
    for word in command:
        key, _, value = word.partition("=")
        if key == "--port":
            word = f"--port={port}"
            subs.add("mlflow server --port", value, str(port), "one loopback for every pod: a free port")
        elif key == "--backend-store-uri" and value.startswith("sqlite:///"):
            word = f"{key}=sqlite:///{sandbox.pod_path(value[len('sqlite:///'):])}"
            subs.add("mlflow server --backend-store-uri", value, word.partition("=")[2], "a path this host does not have")
        local.append(word)
    server = services.MlflowServer(None, f"http://127.0.0.1:{port}", port, sandbox.argv(local), sandbox.env,
                                   root / "logs")
    try:
        server.restart()
    except BaseException:
        sandbox.volumes.stop()
        raise
    sandbox.process = server.process
    say(f"mlflow server pod {sandbox.name}: {shlex.join(local)}")
    return server, sandbox


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
    say(output[-1])
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
