"""The local Kubernetes cluster for tests: started by the user's own script (scripts/cluster-up.sh) in a state
folder of the test session's, driven with the real kubectl, helm and make, read through the API.

The control plane, the KubeRay operator and the Kubernetes objects are upstream's; only the node is ours
(tests/support/node_agent). Each helper says what a user would type.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from loopback.polling import wait_until
from loopback.project_env import PROJECT_ENV
from tests.support.port_forward import port_forward

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
NAMESPACE = PROJECT_ENV["NAMESPACE"]
PLATFORM_RELEASE = PROJECT_ENV["PLATFORM_RELEASE"]


def operator_source() -> Path:
    """The KubeRay operator's module (its CRDs and RBAC), at the version cluster-tools/go.mod pins."""
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", "github.com/ray-project/kuberay/ray-operator"],
                         cwd=ROOT / "cluster-tools", capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@dataclass
class LocalCluster:
    state: Path

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "RAY_ADDRESS"))}
        env.update(KUBECONFIG=str(self.kubeconfig), CLUSTER_STATE=str(self.state),
                   PATH=f"{TOOLS}:{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}")
        env.update(extra)
        return env

    def run(self, *argv: str, timeout: float = 120, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run(list(argv), cwd=ROOT, env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(TOOLS / "kubectl"), *args, timeout=timeout, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def items(self, *args: str) -> list[dict]:
        return self.get(*args)["items"]

    def wait_rayjob(self, name: str, timeout: float, namespace: str = NAMESPACE) -> dict:
        """Until the RayJob's jobDeploymentStatus is terminal (KubeRay's Complete, Failed, ValidationFailed)."""
        last = {}

        def ended() -> bool:
            last.update(self.get("rayjob", name, "-n", namespace))
            return last.get("status", {}).get("jobDeploymentStatus") in ("Complete", "Failed", "ValidationFailed")

        wait_until(ended, timeout, lambda: f"RayJob {name} did not end in {timeout} s: {last.get('status')}\n"
                   f"{self.diagnostics(namespace)}", interval=3)
        return last

    def wait_succeeded(self, name: str, timeout: float, namespace: str = NAMESPACE) -> dict:
        """The RayJob once it ended, asserted Complete with its Ray job SUCCEEDED."""
        rayjob = self.wait_rayjob(name, timeout, namespace)
        status = rayjob["status"]
        assert (status["jobDeploymentStatus"], status.get("jobStatus")) == ("Complete", "SUCCEEDED"), (
            f"{json.dumps(status, indent=1)}\n{self.diagnostics(namespace)}")
        assert status.get("startTime") and status.get("endTime"), status
        return rayjob

    def diagnostics(self, namespace: str = NAMESPACE) -> str:
        pods = self.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        agent = (self.state / "logs" / "node-agent.log")
        tail = "\n".join(agent.read_text(errors="replace").splitlines()[-30:]) if agent.exists() else ""
        return f"pods:\n{pods}\nnode agent (last lines):\n{tail}"

    def secret_value(self, name: str, key: str, namespace: str = NAMESPACE) -> str:
        return base64.b64decode(self.get("secret", name, "-n", namespace)["data"][key]).decode()

    def through_api(self, path: str, body: bytes | None = None, content_type: str = "application/json",
                    timeout: float = 30) -> tuple[int, bytes]:
        """(status, body) of a request to the API server as the admin: a Service's proxy path, for example."""
        pki = self.state / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        headers = {"Content-Type": content_type} if body is not None else {}
        request = urllib.request.Request(f"https://127.0.0.1:16443{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def ray_dashboard(self, release: str, path: str, namespace: str = NAMESPACE) -> dict:
        """GET ``path`` on the Ray dashboard of a chart release's head pod, at its pod IP (the host is on the pods'
        bridge), with the cluster's Ray token (the Secret KubeRay made, named in the head's RAY_AUTH_TOKEN)."""
        (head,) = self.items("pods", "-n", namespace, "-l", f"kuberay-mnist/rayjob={release},ray.io/node-type=head",
                             "--field-selector=status.phase=Running")
        env = {e["name"]: e for e in head["spec"]["containers"][0]["env"]}
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        token = self.secret_value(ref["name"], ref["key"], namespace)
        request = urllib.request.Request(f"http://{head['status']['podIP']}:8265{path}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def outage(self, *components: str, seconds: float) -> None:
        """Components of the cluster stopped in this order, down together for `seconds`, started again in the
        reverse order: what the scripts' --only does for a developer (scripts/cluster-down.sh, cluster-up.sh)."""
        for component in components:
            self.run("bash", "scripts/cluster-down.sh", "--only", component, timeout=60)
        time.sleep(seconds)
        for component in reversed(components):
            self.run("bash", "scripts/cluster-up.sh", "--only", component, timeout=180)

    def cluster_ip(self, service: str, namespace: str = NAMESPACE) -> str:
        return self.get("service", service, "-n", namespace)["spec"]["clusterIP"]

    def s3_keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys under a prefix in the platform's MinIO, read with its development credentials."""
        import boto3

        secret = f"{PLATFORM_RELEASE}-dev-s3-credentials"
        s3 = boto3.client("s3", endpoint_url=f"http://{self.cluster_ip(f'{PLATFORM_RELEASE}-minio')}:9000",
                          aws_access_key_id=self.secret_value(secret, "AWS_ACCESS_KEY_ID"),
                          aws_secret_access_key=self.secret_value(secret, "AWS_SECRET_ACCESS_KEY"),
                          region_name="us-east-1")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def server_url(self) -> str:
        """The API server's URL, as the kubeconfig names it."""
        return yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]

    def apply_edited(self, manifest: str, edit, folder: Path) -> dict:
        """`kubectl apply` of a repository manifest after `edit(object)`: the user's file with one change."""
        path, rayjob = edited_manifest(manifest, edit, folder)
        self.kubectl("apply", "-f", str(path))
        return rayjob


def edited_manifest(manifest: str, edit, folder: Path) -> tuple[Path, dict]:
    """A repository manifest written to ``folder`` after ``edit(rayjob)``, and its RayJob as edited."""
    docs = [d for d in yaml.safe_load_all((ROOT / manifest).read_text()) if d]
    (rayjob,) = [d for d in docs if d["kind"] == "RayJob"]
    edit(rayjob)
    path = folder / Path(manifest).name
    path.write_text(yaml.safe_dump_all(docs))
    return path, rayjob


@dataclass
class MlflowReader:
    """The platform's MLflow server, read over its REST API from the host (its ClusterIP is a bridge address),
    as the admin (or, with ``as_user``, a user of one of the platform's MLflow user Secrets), with the Host header
    the server allows (its Service name)."""

    url: str
    user: str
    password: str
    host: str

    @classmethod
    def of(cls, cluster: LocalCluster) -> MlflowReader:
        service = f"{PLATFORM_RELEASE}-mlflow"
        return cls(f"http://{cluster.cluster_ip(service)}:5000", "admin",
                   cluster.secret_value(f"{PLATFORM_RELEASE}-mlflow-admin", "password"), f"{service}:5000")

    @classmethod
    def as_user(cls, cluster: LocalCluster, secret: str) -> MlflowReader:
        """Signed in as the user of a platform MLflow user Secret (<release>-mlflow-training, -serving)."""
        admin = cls.of(cluster)
        return cls(admin.url, cluster.secret_value(secret, "MLFLOW_TRACKING_USERNAME"),
                   cluster.secret_value(secret, "MLFLOW_TRACKING_PASSWORD"), admin.host)

    def status(self, path: str, body: dict | None = None) -> int:
        """The HTTP status of a request (``call`` raises on an error status)."""
        try:
            self.call(path, body)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200

    def call(self, path: str, body: dict | None = None) -> dict:
        credentials = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{path}", data=None if body is None else json.dumps(body).encode(),
            headers={"Host": self.host, "Authorization": f"Basic {credentials}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def run_named(self, experiment: str, run_name: str) -> dict:
        exp = self.call(f"experiments/get-by-name?{urllib.parse.urlencode({'experiment_name': experiment})}")["experiment"]
        runs = self.call("runs/search", {"experiment_ids": [exp["experiment_id"]],
                                         "filter": f"attributes.run_name = '{run_name}'"}).get("runs", [])
        assert len(runs) == 1, f"expected one MLflow run named {run_name!r}, found {len(runs)}"
        return runs[0]

    def metric_history(self, run_id: str, key: str) -> list[dict]:
        query = urllib.parse.urlencode({"run_id": run_id, "metric_key": key})
        return self.call(f"metrics/get-history?{query}").get("metrics", [])

    def model_versions(self, run_id: str) -> list[dict]:
        query = urllib.parse.urlencode({"filter": f"run_id = '{run_id}'"})
        return self.call(f"model-versions/search?{query}").get("model_versions", [])


@contextlib.contextmanager
def mlflow_as_a_user(cluster: LocalCluster, secret: str = f"{PLATFORM_RELEASE}-mlflow-training"):
    """The environment of a user who port-forwarded the platform's MLflow and signed in as the user of ``secret``:
    ``MLFLOW_TRACKING_URI`` at localhost and that user's name and password (tests/support/port_forward.py)."""
    with port_forward(cluster.cluster_ip(f"{PLATFORM_RELEASE}-mlflow"), 5000) as port:
        yield {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
               "MLFLOW_TRACKING_USERNAME": cluster.secret_value(secret, "MLFLOW_TRACKING_USERNAME"),
               "MLFLOW_TRACKING_PASSWORD": cluster.secret_value(secret, "MLFLOW_TRACKING_PASSWORD")}


def start(state: Path, timeout: float = 600) -> LocalCluster:
    cluster = LocalCluster(state)
    started = time.monotonic()
    done = cluster.run("bash", "scripts/cluster-up.sh", timeout=timeout, check=False)
    print(f"\nlocal cluster: cluster-up in {time.monotonic() - started:.0f} s (state {state})\n{done.stdout[-1500:]}",
          flush=True)
    if done.returncode != 0:
        stop(cluster)
        raise AssertionError(f"cluster-up failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return cluster


def stop(cluster: LocalCluster) -> None:
    done = cluster.run("bash", "scripts/cluster-down.sh", timeout=180, check=False)
    print(f"\nlocal cluster: {done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr}", flush=True)
