"""What the charts decide only at `helm install`/`upgrade`, through `lookup`: the generated dev password (kept on
upgrade), and the refusal of development credentials on the production path.

`helm template --dry-run=server` renders with lookups against tests/support/fake_kube_api.py, a stand-in API
server (no real one can run on these machines); plain `helm template` (the other tests) never looks anything up.
"""

from __future__ import annotations

import re
import sys

import pytest
import yaml
from manifest_helpers import NAMESPACE, PLATFORM, PLATFORM_RELEASE, RAYJOB, RAYJOB_RELEASE, ROOT, one, run

sys.path.insert(0, str(ROOT))
from tests.support import fake_kube_api as api  # noqa: E402

DEV_SECRET = f"{PLATFORM_RELEASE}-dev-s3-credentials"
PROD_SECRET = "mnist-platform-s3-credentials"  # the root keys: the bucket job and MinIO only
S3_MLFLOW, S3_TRAINING = f"{PLATFORM_RELEASE}-s3-mlflow", f"{PLATFORM_RELEASE}-s3-training"  # per-workload users
DEV_MARK = {"kuberay-mnist/development-credentials": "true"}
PLACEHOLDER_KEYS = "kuberay-mnist/placeholder-keys"
CREDS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "a-real-secret-key",
         "credentials": "[default]\naws_access_key_id = id\naws_secret_access_key = a-real-secret-key\n"}
MLFLOW_ADMIN, MLFLOW_TRAINING = f"{PLATFORM_RELEASE}-mlflow-admin", f"{PLATFORM_RELEASE}-mlflow-training"
MLFLOW_SERVING = f"{PLATFORM_RELEASE}-mlflow-serving"
NEW_CLUSTER = dict([api.namespace("kube-system")])  # the release namespace does not exist yet (--create-namespace)


def install_render(tools, tmp_path, objects: dict, chart, release, *args):
    with api.FakeKubeAPI(objects) as server:
        env = {"KUBECONFIG": str(server.kubeconfig(tmp_path))}
        proc = run([str(tools / "helm"), "template", release, str(chart), "--namespace", NAMESPACE, "--dry-run=server",
                    "--disable-openapi-validation", *args], extra_env=env, timeout=120)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d] if proc.returncode == 0 else []
    return proc, docs, server.requests


def dev_render(tools, tmp_path, objects):
    proc, docs, requests = install_render(tools, tmp_path, objects, PLATFORM, PLATFORM_RELEASE,
                                          "-f", str(PLATFORM / "values-dev.yaml"))
    assert proc.returncode == 0, proc.stderr
    return one(docs, "Secret", DEV_SECRET), requests


def test_install_generates_a_random_dev_password(tools, tmp_path):
    first, requests = dev_render(tools, tmp_path, NEW_CLUSTER)
    second, _ = dev_render(tools, tmp_path, NEW_CLUSTER)
    key = first["stringData"]["AWS_SECRET_ACCESS_KEY"]
    assert re.fullmatch(r"[A-Za-z0-9]{40}", key), key
    assert key != second["stringData"]["AWS_SECRET_ACCESS_KEY"], "two installs got the same password"
    assert PLACEHOLDER_KEYS not in first["metadata"]["annotations"]
    assert first["metadata"]["annotations"]["kuberay-mnist/development-credentials"] == "true"
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{DEV_SECRET}" in requests, "it did not look for an existing Secret"


def test_upgrade_keeps_the_dev_password(tools, tmp_path):
    kept = {"AWS_ACCESS_KEY_ID": "minio-dev", "AWS_SECRET_ACCESS_KEY": "generated-at-the-first-install-0123456789"}
    objects = dict([api.namespace("kube-system"), api.namespace(NAMESPACE), api.configmap(NAMESPACE, "kube-root-ca.crt"),
                    api.secret(NAMESPACE, DEV_SECRET, kept, DEV_MARK, release=PLATFORM_RELEASE)])
    secret, _ = dev_render(tools, tmp_path, objects)
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == kept["AWS_SECRET_ACCESS_KEY"]


def test_install_generates_the_mlflow_passwords_and_an_upgrade_keeps_them(tools, tmp_path):
    """The MLflow admin's password, its Flask secret key and the training and serving users' passwords: random at
    install, kept on upgrade (the admin's is what the auth store was created with; a new one would lock the users
    Job out)."""
    generated = {}
    for attempt in (1, 2):
        proc, docs, requests = install_render(tools, tmp_path, NEW_CLUSTER, PLATFORM, PLATFORM_RELEASE,
                                              "-f", str(PLATFORM / "values-dev.yaml"))
        assert proc.returncode == 0, proc.stderr
        admin, training = one(docs, "Secret", MLFLOW_ADMIN), one(docs, "Secret", MLFLOW_TRAINING)
        serving = one(docs, "Secret", MLFLOW_SERVING)
        values = [admin["stringData"]["password"], admin["stringData"]["flask-secret-key"],
                  training["stringData"]["MLFLOW_TRACKING_PASSWORD"], serving["stringData"]["MLFLOW_TRACKING_PASSWORD"]]
        assert all(re.fullmatch(r"[A-Za-z0-9]{40}", v) for v in values) and len(set(values)) == 4, values
        assert f"mlflow_tracking_password = {values[3]}" in serving["stringData"]["credentials"]
        for secret in (admin, training, serving):
            assert PLACEHOLDER_KEYS not in (secret["metadata"].get("annotations") or {})
        generated[attempt] = values
    assert not set(generated[1]) & set(generated[2]), "two installs got the same password"
    kept_admin = {"username": "admin", "password": "first-install-admin-0123456789", "flask-secret-key": "first-key-012345"}
    kept_training = {"MLFLOW_TRACKING_USERNAME": "mnist-training", "MLFLOW_TRACKING_PASSWORD": "first-install-train-0123"}
    kept_serving = {"MLFLOW_TRACKING_USERNAME": "mnist-serving", "MLFLOW_TRACKING_PASSWORD": "first-install-serve-0123"}
    objects = dict([api.namespace("kube-system"), api.namespace(NAMESPACE), api.configmap(NAMESPACE, "kube-root-ca.crt"),
                    api.secret(NAMESPACE, MLFLOW_ADMIN, kept_admin, {}, release=PLATFORM_RELEASE),
                    api.secret(NAMESPACE, MLFLOW_TRAINING, kept_training, {}, release=PLATFORM_RELEASE),
                    api.secret(NAMESPACE, MLFLOW_SERVING, kept_serving, {}, release=PLATFORM_RELEASE)])
    proc, docs, _ = install_render(tools, tmp_path, objects, PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / "values-dev.yaml"))
    assert proc.returncode == 0, proc.stderr
    admin = one(docs, "Secret", MLFLOW_ADMIN)["stringData"]
    assert {k: admin[k] for k in kept_admin} == kept_admin
    assert "admin_password = first-install-admin-0123456789" in admin["basic_auth.ini"], "the file the server reads"
    training = one(docs, "Secret", MLFLOW_TRAINING)["stringData"]
    assert training["MLFLOW_TRACKING_PASSWORD"] == kept_training["MLFLOW_TRACKING_PASSWORD"]
    assert "mlflow_tracking_password = first-install-train-0123" in training["credentials"]
    serving = one(docs, "Secret", MLFLOW_SERVING)["stringData"]
    assert serving["MLFLOW_TRACKING_PASSWORD"] == kept_serving["MLFLOW_TRACKING_PASSWORD"]
    assert "mlflow_tracking_password = first-install-serve-0123" in serving["credentials"]


def test_upgrade_replaces_a_placeholder(tools, tmp_path):
    """A release's Secret that holds the public placeholder (k8s/platform-dev.yaml's, applied and adopted): an
    upgrade replaces it with a generated password instead of keeping it."""
    committed = [d for d in yaml.safe_load_all((ROOT / "k8s" / "platform-dev.yaml").read_text()) if d]
    placeholder = one(committed, "Secret", DEV_SECRET)["stringData"]["AWS_SECRET_ACCESS_KEY"]
    objects = dict([api.namespace("kube-system"), api.namespace(NAMESPACE), api.configmap(NAMESPACE, "kube-root-ca.crt"),
                    api.secret(NAMESPACE, DEV_SECRET, {"AWS_SECRET_ACCESS_KEY": placeholder}, DEV_MARK,
                               release=PLATFORM_RELEASE)])
    secret, _ = dev_render(tools, tmp_path, objects)
    assert secret["stringData"]["AWS_SECRET_ACCESS_KEY"] not in (placeholder, "")


def test_a_user_who_may_not_read_kube_system_can_upgrade(tools, tmp_path):
    """The cluster check asks the release namespace first; kube-system only when that does not exist yet."""
    objects = dict([api.configmap(NAMESPACE, "kube-root-ca.crt")])
    objects["namespaces/kube-system"] = None  # 403
    secret, requests = dev_render(tools, tmp_path, objects)
    assert re.fullmatch(r"[A-Za-z0-9]{40}", secret["stringData"]["AWS_SECRET_ACCESS_KEY"])
    assert "/api/v1/namespaces/kube-system" not in requests


@pytest.mark.parametrize("values", ["values.yaml", "values-production.yaml"])
def test_production_platform_refuses_development_credentials(tools, tmp_path, values):
    cluster = [api.namespace("kube-system"), api.namespace(NAMESPACE), api.configmap(NAMESPACE, "kube-root-ca.crt")]
    if values == "values-production.yaml":  # no MinIO: the per-workload Secrets exist beforehand
        cluster += [api.secret(NAMESPACE, S3_MLFLOW, CREDS), api.secret(NAMESPACE, S3_TRAINING, CREDS)]
    marked = dict([*cluster, api.secret(NAMESPACE, PROD_SECRET, CREDS, DEV_MARK)])
    proc, _, _ = install_render(tools, tmp_path, marked, PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / values))
    assert proc.returncode != 0
    assert f'credentials.existingSecret: Secret "{PROD_SECRET}" carries kuberay-mnist/development-credentials=true' in proc.stderr
    real = dict([*cluster, api.secret(NAMESPACE, PROD_SECRET, CREDS)])
    proc, docs, _ = install_render(tools, tmp_path, real, PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / values))
    assert proc.returncode == 0, proc.stderr
    generated = {MLFLOW_ADMIN, MLFLOW_TRAINING, MLFLOW_SERVING} | (
        {S3_MLFLOW, S3_TRAINING} if values == "values.yaml" else set())
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"} == generated, (
        "never the root S3 Secret; the per-workload S3 users only where the chart makes them in MinIO")
    missing = dict([c for c in cluster if c[0].endswith(("kube-system", NAMESPACE, "kube-root-ca.crt"))])
    proc, _, _ = install_render(tools, tmp_path, missing, PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / values))
    assert proc.returncode != 0 and f'Secret "{PROD_SECRET}" not found in namespace "{NAMESPACE}"' in proc.stderr


def test_production_platform_needs_the_per_workload_secrets(tools, tmp_path):
    cluster = [api.namespace("kube-system"), api.namespace(NAMESPACE), api.configmap(NAMESPACE, "kube-root-ca.crt"),
               api.secret(NAMESPACE, PROD_SECRET, CREDS), api.secret(NAMESPACE, S3_MLFLOW, CREDS)]
    proc, _, _ = install_render(tools, tmp_path, dict(cluster), PLATFORM, PLATFORM_RELEASE,
                                "-f", str(PLATFORM / "values-production.yaml"))
    assert proc.returncode != 0
    assert f'credentials.workloads.trainingSecret: Secret "{S3_TRAINING}" not found' in proc.stderr


def test_rayjob_chart_refuses_development_credentials_outside_the_kind_profile(tools, tmp_path):
    cluster = [api.namespace("kube-system"), api.namespace(NAMESPACE)]
    gpu = dict([*cluster, api.secret(NAMESPACE, S3_TRAINING, CREDS, DEV_MARK)])
    proc, _, _ = install_render(tools, tmp_path, gpu, RAYJOB, RAYJOB_RELEASE)
    assert proc.returncode != 0
    assert f'platform.credentialsSecret: Secret "{S3_TRAINING}" holds development credentials' in proc.stderr
    proc, docs, _ = install_render(tools, tmp_path, dict([*cluster, api.secret(NAMESPACE, S3_TRAINING, CREDS)]),
                                   RAYJOB, RAYJOB_RELEASE)
    assert proc.returncode == 0, proc.stderr
    kind = dict([*cluster, api.secret(NAMESPACE, S3_TRAINING, CREDS, DEV_MARK)])
    proc, docs, _ = install_render(tools, tmp_path, kind, RAYJOB, RAYJOB_RELEASE, "-f", str(RAYJOB / "values-cpu-kind.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert one(docs, "RayJob")["metadata"]["annotations"]["kuberay-mnist/development-credentials-allowed"] == "true"


@pytest.mark.parametrize("values", ["values.yaml", "values-production.yaml"])
def test_production_secrets_without_the_credentials_file_are_refused(tools, tmp_path, values):
    """The pods read S3 credentials only from the Secret key `credentials` (an AWS shared credentials file): a Secret
    made the old way (two keys) fails the install, naming the key and how to make it."""
    old_style = {k: CREDS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    cluster = [api.namespace("kube-system"), api.namespace(NAMESPACE), api.configmap(NAMESPACE, "kube-root-ca.crt"),
               api.secret(NAMESPACE, S3_MLFLOW, CREDS), api.secret(NAMESPACE, S3_TRAINING, CREDS)]
    proc, _, _ = install_render(tools, tmp_path, dict([*cluster, api.secret(NAMESPACE, PROD_SECRET, old_style)]),
                                PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / values))
    assert proc.returncode != 0
    assert f'credentials.existingSecret: Secret "{PROD_SECRET}" has no key "credentials"' in proc.stderr, proc.stderr
    assert f"kubectl create secret generic {PROD_SECRET} --from-file=credentials=" in proc.stderr
    if values == "values-production.yaml":
        cluster[-1] = api.secret(NAMESPACE, S3_TRAINING, old_style)
        proc, _, _ = install_render(tools, tmp_path, dict([*cluster, api.secret(NAMESPACE, PROD_SECRET, CREDS)]),
                                    PLATFORM, PLATFORM_RELEASE, "-f", str(PLATFORM / values))
        assert proc.returncode != 0
        assert f'credentials.workloads.trainingSecret: Secret "{S3_TRAINING}" has no key "credentials"' in proc.stderr


def test_rayjob_chart_refuses_secrets_without_the_credentials_file(tools, tmp_path):
    cluster = [api.namespace("kube-system"), api.namespace(NAMESPACE)]
    old_style = {k: CREDS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc, _, _ = install_render(tools, tmp_path, dict([*cluster, api.secret(NAMESPACE, S3_TRAINING, old_style)]),
                                RAYJOB, RAYJOB_RELEASE)
    assert proc.returncode != 0
    assert f'platform.credentialsSecret: Secret "{S3_TRAINING}" has no key "credentials"' in proc.stderr, proc.stderr


def test_rayservice_refuses_a_serving_secret_without_the_credentials_file(tools, tmp_path):
    """The RayService's MLflow user Secret gets the same key check as the training one (a RayJob never mounts it)."""
    cluster = [api.namespace("kube-system"), api.namespace(NAMESPACE), api.secret(NAMESPACE, S3_TRAINING, CREDS),
               api.secret(NAMESPACE, MLFLOW_SERVING, {"MLFLOW_TRACKING_USERNAME": "mnist-serving"})]
    proc, _, _ = install_render(tools, tmp_path, dict(cluster), RAYJOB, RAYJOB_RELEASE, "--set", "rayService.enabled=true")
    assert proc.returncode != 0
    assert f'platform.mlflowServingCredentialsSecret: Secret "{MLFLOW_SERVING}" has no key "credentials"' in proc.stderr, (
        proc.stderr)
    proc, docs, _ = install_render(tools, tmp_path, dict(cluster), RAYJOB, RAYJOB_RELEASE)
    assert proc.returncode == 0 and one(docs, "RayJob"), proc.stderr
