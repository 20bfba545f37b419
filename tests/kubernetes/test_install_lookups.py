"""What the charts decide only at `helm install`/`upgrade`, through `lookup`: the generated dev password, and the
refusal of development credentials on the production path.

The real API server answers helm's lookup: each test puts the Secrets it needs in a namespace of its own and
renders into it with `helm template --dry-run=server`, as the admin (or a user the admin impersonates); plain
`helm template` (tests/manifests) never looks anything up. That an upgrade keeps the generated passwords is
test_platform.py's, on the installed release.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from loopback.project_env import PROJECT_ENV
from tests.support.local_cluster import PLATFORM_RELEASE, ROOT, TOOLS, LocalCluster

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

PLATFORM, RAYJOB = "charts/kuberay-mnist-platform", "charts/kuberay-mnist-rayjob"
RAYJOB_RELEASE = PROJECT_ENV["RAYJOB_RELEASE"]
DEV_SECRET = f"{PLATFORM_RELEASE}-dev-s3-credentials"
PROD_SECRET = "mnist-platform-s3-credentials"  # the root keys: the bucket job and MinIO only
S3_MLFLOW, S3_TRAINING = f"{PLATFORM_RELEASE}-s3-mlflow", f"{PLATFORM_RELEASE}-s3-training"  # per-workload users
MLFLOW_ADMIN, MLFLOW_TRAINING = f"{PLATFORM_RELEASE}-mlflow-admin", f"{PLATFORM_RELEASE}-mlflow-training"
MLFLOW_SERVING = f"{PLATFORM_RELEASE}-mlflow-serving"
DEV_MARK = {"kuberay-mnist/development-credentials": "true"}
PLACEHOLDER_KEYS = "kuberay-mnist/placeholder-keys"
CREDS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "a-real-secret-key",
         "credentials": "[default]\naws_access_key_id = id\naws_secret_access_key = a-real-secret-key\n"}
OLD_STYLE = {k: CREDS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}  # no `credentials` file
GENERATED = re.compile(r"[A-Za-z0-9]{40}")


@dataclass
class Scratch:
    """A namespace for one test's objects: the platform release in `mnist` is shared by the whole folder."""

    cluster: LocalCluster
    name: str
    folder: Path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        return self.cluster.kubectl(*args, "--namespace", self.name)

    def secret(self, name: str, data: dict[str, str], annotations: dict[str, str] | None = None,
               release: str | None = None) -> None:
        """Create or change a Secret; kubectl apply drops the annotations and keys an earlier apply set and this
        one lacks. With ``release``, owned by that Helm release (an upgrade adopts nothing else)."""
        meta = {"name": name, "annotations": dict(annotations or {}), "labels": {}}
        if release:
            meta["labels"]["app.kubernetes.io/managed-by"] = "Helm"
            meta["annotations"].update({"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": self.name})
        manifest = self.folder / f"{name}.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {
            k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}))
        self.kubectl("apply", "-f", str(manifest))

    def render(self, chart: str, release: str, *args: str) -> subprocess.CompletedProcess:
        """`helm template --dry-run=server` into this namespace: the lookups go to the API server."""
        return self.cluster.run(str(TOOLS / "helm"), "template", release, chart, "--namespace", self.name,
                                "--dry-run=server", "--disable-openapi-validation", *args, check=False)

    def rendered(self, chart: str, release: str, *args: str) -> list[dict]:
        proc = self.render(chart, release, *args)
        assert proc.returncode == 0, proc.stderr
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    def refusal(self, chart: str, release: str, *args: str) -> str:
        """The error of a render that must fail."""
        proc = self.render(chart, release, *args)
        assert proc.returncode != 0, f"{chart} rendered; a refusal was expected"
        return proc.stderr


def scratch_name() -> str:
    return f"lookups-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def scratch(cluster, tmp_path):
    space = Scratch(cluster, scratch_name(), tmp_path)
    cluster.kubectl("create", "namespace", space.name)
    yield space
    cluster.kubectl("delete", "namespace", space.name, "--wait=false")


@pytest.fixture
def new_namespace(cluster, tmp_path):
    """A fresh install's: the release namespace does not exist yet (--create-namespace makes it after rendering),
    so the chart's cluster check finds kube-system instead."""
    return Scratch(cluster, scratch_name(), tmp_path)


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} rendered"
    return found[0]


def platform(values: str) -> tuple[str, ...]:
    """The platform chart, its release and one of its values files: the start of a render's arguments."""
    return PLATFORM, PLATFORM_RELEASE, "-f", f"{PLATFORM}/{values}"


def test_install_generates_a_random_dev_password(new_namespace):
    first, second = (one(new_namespace.rendered(*platform("values-dev.yaml")), "Secret", DEV_SECRET) for _ in (1, 2))
    key = first["stringData"]["AWS_SECRET_ACCESS_KEY"]
    assert GENERATED.fullmatch(key), key
    assert key != second["stringData"]["AWS_SECRET_ACCESS_KEY"], "two installs got the same password"
    assert PLACEHOLDER_KEYS not in first["metadata"]["annotations"]
    assert first["metadata"]["annotations"]["kuberay-mnist/development-credentials"] == "true"


def test_install_generates_the_mlflow_passwords(new_namespace):
    """The MLflow admin's password, its Flask secret key and the training and serving users' passwords: random at
    install (test_platform.py: an upgrade keeps them, and the files the server and the clients read hold them)."""
    generated = []
    for _ in (1, 2):
        docs = new_namespace.rendered(*platform("values-dev.yaml"))
        admin, training = one(docs, "Secret", MLFLOW_ADMIN), one(docs, "Secret", MLFLOW_TRAINING)
        serving = one(docs, "Secret", MLFLOW_SERVING)
        values = [admin["stringData"]["password"], admin["stringData"]["flask-secret-key"],
                  training["stringData"]["MLFLOW_TRACKING_PASSWORD"], serving["stringData"]["MLFLOW_TRACKING_PASSWORD"]]
        assert all(GENERATED.fullmatch(v) for v in values) and len(set(values)) == 4, values
        assert f"mlflow_tracking_password = {values[3]}" in serving["stringData"]["credentials"]
        for secret in (admin, training, serving):
            assert PLACEHOLDER_KEYS not in (secret["metadata"].get("annotations") or {})
        generated.append(values)
    assert not set(generated[0]) & set(generated[1]), "two installs got the same password"


def test_upgrade_replaces_a_placeholder(scratch):
    """A release's Secret that holds the public placeholder (k8s/platform-dev.yaml's, applied and adopted): an
    upgrade replaces it with a generated password instead of keeping it."""
    committed = [d for d in yaml.safe_load_all((ROOT / "k8s" / "platform-dev.yaml").read_text()) if d]
    placeholder = one(committed, "Secret", DEV_SECRET)["stringData"]["AWS_SECRET_ACCESS_KEY"]
    scratch.secret(DEV_SECRET, {"AWS_SECRET_ACCESS_KEY": placeholder}, DEV_MARK, release=PLATFORM_RELEASE)
    secret = one(scratch.rendered(*platform("values-dev.yaml")), "Secret", DEV_SECRET)
    assert GENERATED.fullmatch(secret["stringData"]["AWS_SECRET_ACCESS_KEY"]), secret["stringData"]


def test_a_user_who_may_not_read_kube_system_can_upgrade(scratch):
    """The cluster check asks the release namespace first; kube-system only when that does not exist yet. The user
    here administers the release namespace only: the built-in `admin` role, bound there (helm also reads every
    object it would install, so a Role over Secrets and ConfigMaps alone is refused for that). A forbidden lookup
    fails the render (helm passes over NotFound only), so a render proves kube-system was never asked."""
    user = f"{scratch.name}-deployer"
    # the controller-manager publishes it into every namespace, a moment after the namespace is made
    scratch.kubectl("wait", "--for=create", "configmap/kube-root-ca.crt", "--timeout=30s")
    scratch.kubectl("create", "rolebinding", "deployer", "--clusterrole=admin", f"--user={user}")
    cannot = scratch.cluster.kubectl("auth", "can-i", "get", "namespace/kube-system", f"--as={user}", check=False)
    assert cannot.stdout.strip() == "no", cannot.stdout
    secret = one(scratch.rendered(*platform("values-dev.yaml"), "--kube-as-user", user), "Secret", DEV_SECRET)
    assert GENERATED.fullmatch(secret["stringData"]["AWS_SECRET_ACCESS_KEY"])


@pytest.mark.parametrize("values", ["values.yaml", "values-production.yaml"])
def test_production_platform_refuses_development_credentials(scratch, values):
    if values == "values-production.yaml":  # no MinIO: the per-workload Secrets exist beforehand
        scratch.secret(S3_MLFLOW, CREDS)
        scratch.secret(S3_TRAINING, CREDS)
    scratch.secret(PROD_SECRET, CREDS, DEV_MARK)
    assert (f'credentials.existingSecret: Secret "{PROD_SECRET}" carries kuberay-mnist/development-credentials=true'
            in scratch.refusal(*platform(values)))
    scratch.secret(PROD_SECRET, CREDS)
    generated = {MLFLOW_ADMIN, MLFLOW_TRAINING, MLFLOW_SERVING} | (
        {S3_MLFLOW, S3_TRAINING} if values == "values.yaml" else set())
    assert {d["metadata"]["name"] for d in scratch.rendered(*platform(values)) if d["kind"] == "Secret"} == generated, (
        "never the root S3 Secret; the per-workload S3 users only where the chart makes them in MinIO")
    scratch.kubectl("delete", "secret", PROD_SECRET)
    assert f'Secret "{PROD_SECRET}" not found in namespace "{scratch.name}"' in scratch.refusal(*platform(values))


def test_production_platform_needs_the_per_workload_secrets(scratch):
    scratch.secret(PROD_SECRET, CREDS)
    scratch.secret(S3_MLFLOW, CREDS)
    assert (f'credentials.workloads.trainingSecret: Secret "{S3_TRAINING}" not found'
            in scratch.refusal(*platform("values-production.yaml")))


def test_rayjob_chart_refuses_development_credentials_outside_the_kind_profile(scratch):
    scratch.secret(S3_TRAINING, CREDS, DEV_MARK)
    assert (f'platform.credentialsSecret: Secret "{S3_TRAINING}" holds development credentials'
            in scratch.refusal(RAYJOB, RAYJOB_RELEASE))
    rayjob = one(scratch.rendered(RAYJOB, RAYJOB_RELEASE, "-f", f"{RAYJOB}/values-cpu-kind.yaml"), "RayJob")
    assert rayjob["metadata"]["annotations"]["kuberay-mnist/development-credentials-allowed"] == "true"
    scratch.secret(S3_TRAINING, CREDS)
    scratch.rendered(RAYJOB, RAYJOB_RELEASE)


@pytest.mark.parametrize("values", ["values.yaml", "values-production.yaml"])
def test_production_secrets_without_the_credentials_file_are_refused(scratch, values):
    """The pods read S3 credentials only from the Secret key `credentials` (an AWS shared credentials file): a Secret
    made the old way (two keys) fails the install, naming the key and how to make it."""
    scratch.secret(S3_MLFLOW, CREDS)
    scratch.secret(S3_TRAINING, CREDS)
    scratch.secret(PROD_SECRET, OLD_STYLE)
    error = scratch.refusal(*platform(values))
    assert f'credentials.existingSecret: Secret "{PROD_SECRET}" has no key "credentials"' in error, error
    assert f"kubectl create secret generic {PROD_SECRET} --from-file=credentials=" in error
    if values == "values-production.yaml":
        scratch.secret(S3_TRAINING, OLD_STYLE)
        scratch.secret(PROD_SECRET, CREDS)
        assert (f'credentials.workloads.trainingSecret: Secret "{S3_TRAINING}" has no key "credentials"'
                in scratch.refusal(*platform(values)))


def test_rayjob_chart_refuses_secrets_without_the_credentials_file(scratch):
    scratch.secret(S3_TRAINING, OLD_STYLE)
    error = scratch.refusal(RAYJOB, RAYJOB_RELEASE)
    assert f'platform.credentialsSecret: Secret "{S3_TRAINING}" has no key "credentials"' in error, error


def test_rayservice_refuses_a_serving_secret_without_the_credentials_file(scratch):
    """The RayService's MLflow user Secret gets the same key check as the training one (a RayJob never mounts it)."""
    scratch.secret(S3_TRAINING, CREDS)
    scratch.secret(MLFLOW_SERVING, {"MLFLOW_TRACKING_USERNAME": "mnist-serving"})
    error = scratch.refusal(RAYJOB, RAYJOB_RELEASE, "--set", "rayService.enabled=true")
    assert f'platform.mlflowServingCredentialsSecret: Secret "{MLFLOW_SERVING}" has no key "credentials"' in error, error
    assert one(scratch.rendered(RAYJOB, RAYJOB_RELEASE), "RayJob")
