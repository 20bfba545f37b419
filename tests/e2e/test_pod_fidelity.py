"""The pods run as rendered: read-only root, only the declared volumes writable, the pod's user, exactly its env.

And the proof that this matters: with DVC_SITE_CACHE_DIR taken out of the rendered env and the image's
ENV (today's bug: DVC 3 writes its site cache under /var/tmp/dvc), `mnist-job pull-data` in a worker
pod fails and says which path was not writable; with the charts as they are, the same pull succeeds.
Both go through the same pod sandboxes as the Ray nodes (tests/support/kuberay/sandbox.py).
"""

from __future__ import annotations

import shlex

import pytest

from tests.support import kuberay as kl
from tests.support.kuberay.env import ServiceMap
from tests.support.kuberay.rendering import image_spec
from tests.support.kuberay.sandbox import quantity

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FIX = "DVC_SITE_CACHE_DIR"


def _worker(e2e, services: ServiceMap, drop_env: tuple[str, ...] = ()) -> kl.RayPod:
    plan = kl.plan_cluster(e2e.rayjob, e2e.platform_view, services.scratch(), kl.Substitutions())
    pods = kl.plan_pods(e2e.rayjob, plan, e2e.root, kl.Substitutions(), drop_env=drop_env)
    return next(p for p in pods if p.role == "worker")


def _offline_services(e2e) -> ServiceMap:
    """The platform's Services mapped to ports nothing listens on: for checks that start no platform."""
    services = ServiceMap(kl.Substitutions())
    for component, port_name in (("minio", "s3"), ("mlflow", "http")):
        name, port = e2e.platform_view.service_port(component, port_name)
        services.add(name, port, "127.0.0.1:9")
    return services


PROBE = r"""
echo "user $(id -u) $(id -g) $(id -G)"
for p in / /etc /var/tmp "$MNIST_PROJECT_DIR" /tmp /dev/shm "$MNIST_DATA_CACHE" "$MNIST_PROJECT_DIR/.dvc/tmp"; do
  if ( : > "$p/.probe" ) 2>/dev/null; then echo "writable $p"; rm "$p/.probe"; else echo "read-only $p"; fi
done
echo "cache-entries $(ls -A "$MNIST_DATA_CACHE" | wc -l)"
df -k /tmp /dev/shm "$MNIST_DATA_CACHE" | awk 'NR > 1 {print "size", $6, $2}'
echo "pwd $(pwd)"
env -0 | tr '\0' '\n' | cut -d= -f1 | sed 's/^/env /'
""".strip()


def test_worker_pod_sandbox_is_the_rendered_pod(e2e):
    sandbox = _worker(e2e, _offline_services(e2e)).sandbox
    done = sandbox.run(["/bin/bash", "-c", PROBE], timeout=30)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    security = kl.groups(e2e.rayjob)[1][2]["template"]["spec"]["securityContext"]
    uid, gid, fs_group = security["runAsUser"], security["runAsGroup"], security["fsGroup"]
    assert f"user {uid} {gid} {fs_group}" in lines, lines[:1]
    cache, app = sandbox.env["MNIST_DATA_CACHE"], sandbox.env["MNIST_PROJECT_DIR"]
    for path in ("/", "/etc", "/var/tmp", app):
        assert f"read-only {path}" in lines, f"{path} must be read-only in the pod: {lines}"
    for path in ("/tmp", "/dev/shm", cache, f"{app}/.dvc/tmp"):
        assert f"writable {path}" in lines, f"{path} is a declared volume: it must be writable: {lines}"
    assert "cache-entries 0" in lines, "the data cache must start empty"
    sizes = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("size ")}
    pod_spec = kl.groups(e2e.rayjob)[1][2]["template"]["spec"]
    limits = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod_spec["volumes"] if "emptyDir" in v}
    mounted = {m["mountPath"]: m["name"] for m in pod_spec["containers"][0]["volumeMounts"]}
    expected = {path: int(quantity(limits[mounted[mount]]) // 1024)
                for path, mount in (("/tmp", "/tmp"), ("/dev/shm", "/dev/shm"), (cache, "/data-cache"))}
    assert sizes == expected, (sizes, expected)  # each tmpfs has its volume's sizeLimit (df -k: KiB)
    assert f"pwd {sandbox.mount}/app" in lines, "the image's WORKDIR"
    env_names = {line.split(" ", 1)[1] for line in lines if line.startswith("env ")} - {"PWD", "SHLVL", "_"}
    assert env_names == set(sandbox.env), (
        f"the pod's env must be exactly the rendered one: extra {sorted(env_names - set(sandbox.env))}, "
        f"missing {sorted(set(sandbox.env) - env_names)}")
    for name in ("RAY_CLUSTER_NAME", "RAY_ADDRESS", "FQ_RAY_IP", "KUBERAY_GEN_RAY_START_CMD", "RAY_AUTH_TOKEN",
                 "RAY_NODE_TYPE_NAME", "RAY_USAGE_STATS_KUBERAY_IN_USE", "HOSTNAME"):
        assert name in env_names, f"KubeRay/kubelet set {name} in a worker pod"
    assert not env_names & {"USER", "LOGNAME", "SHELL", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST"}, env_names


def _pull(pod: kl.RayPod):
    command = ["mnist-job", "pull-data"]
    done = pod.sandbox.run(command, timeout=240)
    output = (done.stdout + done.stderr).strip()
    print(f"$ {shlex.join(command)}  (pod {pod.name}, exit {done.returncode})\n{output[-3000:]}")
    return done.returncode, output


def test_without_dvc_site_cache_dir_the_pull_fails_naming_the_path(e2e, local_platform):
    image_env, container_env = image_spec().env, kl.ray_container(kl.groups(e2e.rayjob)[1][2]).get("env", [])
    assert FIX in image_env and any(e["name"] == FIX for e in container_env), (
        f"{FIX} must be set in image/Dockerfile's ENV and in the chart's rayjob.env")

    code, output = _pull(_worker(e2e, local_platform.services, drop_env=(FIX,)))
    assert code != 0, f"the pull must fail without {FIX}: {output[-2000:]}"
    assert "Read-only file system" in output and "/var/tmp/dvc" in output, (
        f"the failure must name the path that was not writable: {output[-2000:]}")
    assert "Traceback" not in output, "one clear error, no traceback"

    code, output = _pull(_worker(e2e, local_platform.services))
    assert code == 0 and "dataset ready" in output, output[-2000:]


def test_containers_of_a_pod_share_its_volumes_and_only_its_own(e2e):
    services = _offline_services(e2e)
    pod = _worker(e2e, services)
    other = _worker(e2e, services)
    (init, _), = pod.init  # KubeRay's wait-gcs-ready: same volumeMounts as the Ray container
    try:
        done = init.run(["/bin/bash", "-c", 'echo from-init > "$MNIST_DATA_CACHE/marker"'], timeout=30, keep_volumes=True)
        assert done.returncode == 0, done.stderr
        seen = pod.sandbox.run(["/bin/bash", "-c", 'cat "$MNIST_DATA_CACHE/marker"'], timeout=30, keep_volumes=True)
        assert seen.stdout.strip() == "from-init", f"the main container must see its init container's write: {seen}"
        assert (pod.data_cache / "marker").read_text().strip() == "from-init", "the harness reads the pod's volume"
        alone = other.sandbox.run(["/bin/bash", "-c", 'ls -A "$MNIST_DATA_CACHE" | wc -l'], timeout=30)
        assert alone.stdout.strip() == "0", f"another pod's data cache must be its own, and empty: {alone}"
    finally:
        pod.sandbox.volumes.stop()
    assert pod.sandbox.volumes.holder.alive() is False


CREDENTIALS_PROBE = r"""
for f in "$AWS_SHARED_CREDENTIALS_FILE" "$HOME/.mlflow/credentials"; do
  echo "file $(stat -c '%a %u %g' "$f")"
  if head -c1 "$f" >/dev/null 2>&1; then echo "readable"; else echo "unreadable"; fi
  if ( : >> "$f" ) 2>/dev/null; then echo "writable"; else echo "not-writable"; fi
done
if ( : > "$HOME/.probe" ) 2>/dev/null; then echo "home-writable"; fi
""".strip()


def test_credentials_are_read_only_secret_files_readable_through_fsgroup(e2e):
    """No S3 key or MLflow password in the pod's env; both are files of Secret volumes (mode 0440, owner root,
    group fsGroup, read-only) that the pod's user reads through fsGroup and a user outside the group cannot."""
    pod = _worker(e2e, _offline_services(e2e))
    sandbox = pod.sandbox
    assert not set(sandbox.env) & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_USERNAME",
                                   "MLFLOW_TRACKING_PASSWORD"}, sorted(sandbox.env)
    done = sandbox.run(["/bin/bash", "-c", CREDENTIALS_PROBE], timeout=30)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    fs_group = kl.groups(e2e.rayjob)[1][2]["template"]["spec"]["securityContext"]["fsGroup"]
    assert done.stdout.splitlines() == [f"file 440 0 {fs_group}", "readable", "not-writable"] * 2 + ["home-writable"]
    sandbox.gid, sandbox.groups = 4242, []  # the same uid outside the pod's fsGroup: refused
    done = sandbox.run(["/bin/bash", "-c", CREDENTIALS_PROBE], timeout=30)
    assert done.stdout.count("unreadable") == 2, done.stdout + done.stderr


def test_a_user_the_image_does_not_prove_is_refused(e2e):
    """A pod whose runAsUser is not the Dockerfile's last USER (the one that runs the package at build time, so
    the only one known to read the image's Python environment) is reported before anything runs."""
    import copy

    rayjob = copy.deepcopy(e2e.rayjob)
    for _, _, spec, _ in kl.groups(rayjob):
        spec["template"]["spec"]["securityContext"]["runAsUser"] = 1000
    plan = kl.plan_cluster(rayjob, e2e.platform_view, _offline_services(e2e).scratch(), kl.Substitutions())
    with pytest.raises(kl.ContractError, match=r"\[chart vs image\] .* runs as 1000:100, but image/Dockerfile"):
        kl.plan_pods(rayjob, plan, e2e.root, kl.Substitutions())


WHOAMI = ["python", "-c", "import os, pwd; print('account', pwd.getpwuid(os.getuid()).pw_name)"]


def test_the_pod_user_has_the_image_account_and_fails_without_it(e2e, monkeypatch, tmp_path):
    """The sandbox's /etc/passwd is the image's: the account image/Dockerfile makes for the pods' uid. Without that
    `useradd`, looking the user up fails, as DVC does on every pull (getpwuid)."""
    from tests.support.kuberay import image_model
    from tests.support.kuberay import sandbox as sandbox_module

    done = _worker(e2e, _offline_services(e2e)).sandbox.run(WHOAMI, timeout=30)
    assert done.returncode == 0 and "account mnist" in done.stdout, done.stdout + done.stderr
    dockerfile = tmp_path / "Dockerfile"
    text = (image_model.ROOT / "image" / "Dockerfile").read_text()
    dockerfile.write_text("\n".join(line for line in text.splitlines() if "useradd" not in line))
    monkeypatch.setattr(sandbox_module, "image_passwd", lambda: image_model.image_passwd(dockerfile))
    done = _worker(e2e, _offline_services(e2e)).sandbox.run(WHOAMI, timeout=30)
    assert done.returncode != 0 and "getpwuid(): uid not found: 10001" in done.stderr, done.stdout + done.stderr
