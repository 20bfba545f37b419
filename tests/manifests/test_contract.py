"""The contract between the image, the package, the platform chart and the RayJob chart (its RayJob, and
the RayService it renders with rayService.enabled=true: the same env, Secrets, volumes and labels)."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest
import yaml
from manifest_helpers import (
    CHARTS,
    PLATFORM,
    PLATFORM_RELEASE,
    RAYJOB,
    RAYJOB_RELEASE,
    ROOT,
    by_kind,
    load_yaml,
    mounted_secrets,
    one,
    rayjob_pod_templates,
    workload_pod_templates,
)

REQUIRED_ENV = {
    "MLFLOW_TRACKING_URI": "configMapKeyRef",
    "AWS_ENDPOINT_URL": "configMapKeyRef",
    "AWS_DEFAULT_REGION": "configMapKeyRef",
    "MNIST_DVC_REMOTE_URL": "configMapKeyRef",
}
REQUIRED_LITERAL_ENV = {
    "MNIST_DATA_CACHE": "/data-cache",
    "MNIST_PROJECT_DIR": "/app",
    "RAY_TRAIN_V2_ENABLED": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    # a file of the S3 credentials Secret's volume, not the keys themselves (charts/README.md, "Credential files")
    "AWS_SHARED_CREDENTIALS_FILE": "/etc/kuberay-mnist/s3/credentials",
    "HOME": "/tmp/home",  # its .mlflow/credentials: the MLflow user's Secret file
}
SECRETISH = re.compile(r"(secret|password|passwd|token|access_?key|credential)", re.I)


def rayjob(render, profile="rayjob-gpu"):
    """The profile's RayJob, or its RayService for the rayservice-* profiles."""
    return one(render(profile), "RayService" if profile.startswith("rayservice-") else "RayJob")


# The Ray workloads' profiles: the training RayJob's and the serving RayService's, production and kind.
RAY_PROFILES = ["rayjob-gpu", "rayjob-cpu-kind", "rayservice-gpu", "rayservice-cpu-kind"]


def entrypoint_argv(rj: dict) -> list[str]:
    return shlex.split(rj["spec"]["entrypoint"])


def sets(argv: list[str]) -> dict[str, str]:
    out = {}
    for i, a in enumerate(argv):
        if a == "--set":
            k, v = argv[i + 1].split("=", 1)
            out[k] = v
    return out


def console_scripts() -> dict[str, str]:
    pyproject = ROOT / "pyproject.toml"
    assert pyproject.exists(), "pyproject.toml is missing"
    return tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})


# --------------------------------------------------------------------------- entrypoint


@pytest.mark.parametrize("profile", ["rayjob-gpu", "rayjob-cpu-kind"])
def test_entrypoint_is_a_declared_console_script(render, profile):
    argv = entrypoint_argv(rayjob(render, profile))
    scripts = console_scripts()
    assert argv[0] in scripts, f"entrypoint runs {argv[0]!r}, not in [project.scripts] {sorted(scripts)}"
    assert argv[1] == "train"
    assert argv[argv.index("--params") + 1] == "/app/params.yaml"


def test_every_command_is_a_declared_console_script_or_tool(render):
    """Containers of the project image run its console scripts or tools; MinIO's client image runs its shell."""
    allowed = set(console_scripts()) | {"mlflow", "python"}  # python: the image's, for the chart's files/*.py
    mc_image = load_yaml(PLATFORM / "values.yaml")["minio"]["mcImage"]["repository"]
    for profile in ("platform-dev", "rayjob-gpu-initcontainer"):
        for where, tmpl in workload_pod_templates(render(profile)).items():
            for c in tmpl["spec"].get("initContainers", []) + tmpl["spec"]["containers"]:
                if c["image"].startswith(f"{mc_image}:"):
                    assert c["command"][:2] == ["/bin/sh", "-ec"] and "mc admin" in c["args"][0], c
                elif "command" in c:
                    argv = c["command"] + c.get("args", [])
                    if argv[:2] == ["/bin/sh", "-ec"] and argv[2].endswith('exec "$@"'):
                        argv = argv[4:]  # a shell that reads a Secret file into the env, then execs its arguments
                    assert argv[0] in allowed, f"{where}/{c['name']} runs {argv[0]!r}"


def test_dockerfile_installs_the_project():
    text = (ROOT / "image" / "Dockerfile").read_text()
    assert re.search(r"^COPY .*pyproject\.toml", text, re.M), "Dockerfile must copy pyproject.toml"
    assert re.search(r"^COPY .*mnist_job/", text, re.M), "Dockerfile must copy the package"
    assert re.search(r"pip install --no-cache-dir --no-deps /app\b", text), "Dockerfile must `pip install --no-deps /app`"
    assert re.search(r"^WORKDIR /app$", text, re.M)
    for f in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config"):
        assert re.search(rf"^COPY .*{re.escape(f)}", text, re.M), f"Dockerfile must copy {f}"
    assert "dvc config --local core.no_scm true" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] == "10001:100", f"last USER must be 10001:100 (the charts' runAsUser), got {users}"
    # ...and that user runs what the pods run, at build time: the proof that it can read the environment
    assert re.search(r"^RUN useradd --uid 10001 --gid 100 .* mnist$", text, re.M), "uid 10001 needs an account"
    check = text[text.rindex("USER 10001:100"):]
    for step in ("mnist-job --help", "dvc --version", "import torch", "ray.train", "pyarrow.fs", "mnist_job.cli"):
        assert step in check, f"the build runs no `{step}` as the pods' user"
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert re.search(r"^ARG BASE_IMAGE=rayproject/ray$", text, re.M)
    assert re.search(r"^ARG BASE_TAG=\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-\$\{VARIANT\}$", text, re.M)
    assert re.search(r"^ARG RAY_VERSION=2\.60\.0$", text, re.M)


def test_dockerfile_installs_the_lock_before_the_code():
    """A code edit must not reinstall torch: the locked dependencies are their own
    layer, before mnist_job/ is copied, and nothing that changes per commit
    (GIT_COMMIT) is declared before them."""
    lines = (ROOT / "image" / "Dockerfile").read_text().splitlines()

    def first(pattern: str) -> int:
        idx = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert idx, f"no line matches {pattern!r}"
        return idx[0]

    lock_copy = first(r"^COPY .*requirements/")
    lock_install = first(r"pip install .*--no-deps .*-r ")
    code_copy = first(r"^COPY .*mnist_job/")
    assert lock_copy < lock_install < code_copy
    assert first(r"^ARG GIT_COMMIT") > first(r"pip install --no-cache-dir --no-deps /app")
    assert not any("GIT_COMMIT" in line for line in lines[:code_copy]), "GIT_COMMIT before the dependency layer busts its cache"
    text = "\n".join(lines)
    for arch, lock_arch in (("amd64", "x86_64"), ("arm64", "aarch64")):
        assert re.search(rf"{arch}\) arch={lock_arch} ;;", text), f"TARGETARCH {arch} -> lock {lock_arch}"
        assert (ROOT / "requirements" / f"lock-linux-{lock_arch}.txt").is_file()


def test_dockerfile_base_image_per_architecture():
    """Ray's arm64 images carry an -aarch64 suffix; the build picks the stage by TARGETARCH."""
    text = (ROOT / "image" / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert froms == [
        ("${BASE_IMAGE}:${BASE_TAG}@${BASE_DIGEST_AMD64}", "base-amd64"),
        ("${BASE_IMAGE}:${BASE_TAG}-aarch64@${BASE_DIGEST_ARM64}", "base-arm64"),
        ("base-${TARGETARCH}", ""),
    ], froms
    assert re.search(r"^ARG TARGETARCH$", text, re.M)


def test_dockerfile_takes_pinned_hashed_inputs_only():
    """Base images by digest (an ARG without default: no digest, no build), every pip install of requirements
    with --require-hashes and --no-deps, one index per pip call and never --extra-index-url."""
    text = (ROOT / "image" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
    for image in re.findall(r"^FROM (\S+)", text, re.M):
        if image.split("-$", 1)[0] in {s.split("-", 1)[0] for s in stages} and "@" not in image and ":" not in image:
            continue  # a stage (base-${TARGETARCH})
        digest = image.partition("@")[2]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}|\$\{BASE_DIGEST_[A-Z0-9]+\}", digest), f"FROM {image}: not by digest"
        if digest.startswith("${"):
            assert re.search(rf"^ARG {digest[2:-1]}$", text, re.M), f"{digest} must be an ARG without a default"
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "--extra-index-url" not in code and "--find-links" not in code and "--trusted-host" not in code
    installs = re.findall(r"pip install ([^;]*)", logical)
    assert installs, "no pip install found"
    for args in installs:
        assert args.count("--index-url") <= 1, args
        if " -r " in f" {args} ":
            assert "--require-hashes" in args and "--no-deps" in args, f"pip install {args}"
    assert re.search(r"--index-url \"\$\{TORCH_CPU_INDEX_URL\}\" -r \"\$\{torch_lock\}\"", logical)
    assert "requirements/torch-cpu-linux-" in text and "make lock-torch-cpu" in text


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_locks_carry_hashes(arch):
    """`make lock` writes a sha256 for every pin; the CPU torch pins come from `make lock-torch-cpu` on a machine
    that reaches download.pytorch.org (until then the file says so and the CPU image build stops on it)."""
    text = (ROOT / "requirements" / f"lock-linux-{arch}.txt").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert len(entries) > 100
    for entry in entries:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"no hash: {entry.splitlines()[0]}"
    torch_cpu = (ROOT / "requirements" / f"torch-cpu-linux-{arch}.txt").read_text()
    pins = lock_pins(ROOT / "requirements" / f"torch-cpu-linux-{arch}.txt")
    if pins:
        locked = lock_pins(ROOT / "requirements" / f"lock-linux-{arch}.txt")
        assert pins == {name: f"{locked[name]}+cpu" for name in ("torch", "torchvision")}, pins
        assert torch_cpu.count("--hash=sha256:") >= 2
    else:
        assert "NOT FILLED YET" in torch_cpu and "make lock-torch-cpu" in torch_cpu


def test_base_image_digests_file():
    """image/base-digests.txt (`make pin-base`): comments, or `<variant> <arch> sha256:<64 hex>` lines."""
    lines = [line for line in (ROOT / "image" / "base-digests.txt").read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("#") or re.fullmatch(r"(cpu|gpu) (amd64|arm64) sha256:[0-9a-f]{64}", line)
                         for line in lines), lines


def lock_pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_lock_matches_pyproject(arch):
    """requirements/lock-linux-<arch>.txt (`make lock`) pins every dependency of
    pyproject.toml, at the version pyproject pins, and is marked as generated."""
    path = ROOT / "requirements" / f"lock-linux-{arch}.txt"
    assert path.is_file(), f"{path.name} missing: run `make lock`"
    assert "make lock" in path.read_text().split("\n", 3)[1], "the header names the command that made it"
    pins = lock_pins(path)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower().replace("_", "-")
        assert name in pins, f"{name} (pyproject.toml) is not in {path.name}: run `make lock`"
        exact = re.search(r"==([^,;\s]+)", dep)
        if exact:
            assert pins[name] == exact.group(1), f"{name}: pyproject pins {exact.group(1)}, {path.name} has {pins[name]}: run `make lock`"
    assert "kuberay-mnist" not in pins, "the lock holds dependencies only; the package is installed after the code is copied"
    assert len(pins) > 50


def test_dockerignore_keeps_local_state_out():
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context is an allow-list"
    for must in (".venv", ".tools", "data", "outputs", "mlruns", ".git"):
        assert must in ignore
    for needed in ("!pyproject.toml", "!requirements/lock-linux-*.txt", "!mnist_job/", "!dvc.yaml", "!dvc.lock", "!params.yaml", "!.dvc/config"):
        assert needed in ignore


@pytest.mark.parametrize("profile,gpu,workers", [("rayjob-gpu", "true", "2"), ("rayjob-cpu-kind", "false", "2")])
def test_entrypoint_carries_the_values(render, profile, gpu, workers):
    rj = rayjob(render, profile)
    s = sets(entrypoint_argv(rj))
    assert s["train.num_workers"] == workers
    assert s["train.use_gpu"] == gpu
    assert s["train.run_name"] == RAYJOB_RELEASE == rj["metadata"]["name"]
    assert s["train.if_finished"] == "new-run", "kubectl apply of the same manifest after a finished run trains anew"
    assert re.fullmatch(r"s3://[a-z0-9.-]+/[\w./-]+", s["train.storage_path"]), s["train.storage_path"]
    assert s["train.output_dir"].startswith("/tmp/"), "the root filesystem is read-only"
    if profile == "rayjob-cpu-kind":
        assert s["train.epochs"] == "1" and int(s["data.train_subset"]) <= 20000


def test_entrypoint_quotes_odd_values(helm_template):
    res = helm_template(RAYJOB, "t", "--set", "job.extraArgs[0]=a b;rm -rf /", "--set-string", "job.set.mlflow\\.experiment=x y")
    assert res.returncode == 0, res.stderr
    argv = entrypoint_argv(one(res.docs, "RayJob"))
    assert "a b;rm -rf /" in argv and "mlflow.experiment=x y" in argv


@pytest.mark.parametrize("profile", RAY_PROFILES)
def test_runtime_env_only_env_vars(render, profile):
    spec = rayjob(render, profile)["spec"]
    if "serveConfigV2" in spec:  # a RayService: each Serve application's runtime_env
        apps = yaml.safe_load(spec["serveConfigV2"])["applications"]
        runtime_envs = [app["runtime_env"] for app in apps]
        assert [app["import_path"] for app in apps] == ["mnist_job.serving.app:app_builder"]
    else:
        runtime_envs = [yaml.safe_load(spec["runtimeEnvYAML"])]
    for runtime_env in runtime_envs:
        assert set(runtime_env) == {"env_vars"}, "code and deps are baked in the image: only env_vars"
        for k, v in runtime_env["env_vars"].items():
            assert isinstance(v, str)
            assert not SECRETISH.search(k), f"runtimeEnvYAML is visible in the Ray dashboard: no {k}"


# --------------------------------------------------------------------------- env and references


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("profile", [*RAY_PROFILES, "rayjob-gpu-initcontainer"])
def test_pod_env_is_identical_and_complete(render, profile):
    """Every container that runs the package gets the same env; a RayJob's submitter gets its subset without
    endpoints and credentials (test_the_submitter_gets_no_s3_credentials_or_endpoints); a RayService has none."""
    templates = rayjob_pod_templates(rayjob(render, profile))
    has_submitter = not profile.startswith("rayservice-")
    assert ("submitter" in templates) == has_submitter
    assert "head" in templates and any(k.startswith("worker:") for k in templates)
    envs = {}
    for role, t in templates.items():
        for c in t["spec"].get("initContainers", []) + t["spec"]["containers"][:1]:
            env = c.get("env", [])
            if role != "submitter" and c in t["spec"]["containers"]:  # a Ray container: its own image too
                image = [e for e in env if e["name"] == "MNIST_IMAGE"]
                assert image == [{"name": "MNIST_IMAGE", "value": c["image"]}], f"{role}/{c['name']}: {image}"
            envs[f"{role}/{c['name']}"] = [e for e in env if e["name"] != "MNIST_IMAGE"]
    submitter = envs.pop(next(k for k in envs if k.startswith("submitter/"))) if has_submitter else None
    first = next(iter(envs.values()))
    for where, env in envs.items():
        assert env == first, f"{where} env differs from the others"
    if has_submitter:
        assert submitter == [e for e in first if "valueFrom" not in e and e["name"] != "AWS_SHARED_CREDENTIALS_FILE"], \
            "the submitter: the same, less the references and the credentials file"
    m = {e["name"]: e for e in first}
    for name, source in REQUIRED_ENV.items():
        assert name in m, f"missing env {name}"
        ref = m[name].get("valueFrom", {}).get(source)
        assert ref and ref["key"] == name, f"{name} must come from a {source} key named {name}"
    for name, value in REQUIRED_LITERAL_ENV.items():
        assert m.get(name, {}).get("value") == value, f"{name} must be {value!r}"


@pytest.mark.parametrize("profile", [*RAY_PROFILES, "rayjob-gpu-initcontainer"])
def test_tool_caches_are_on_writable_volumes(render, profile):
    # The root filesystem is read-only: HOME, XDG dirs, matplotlib's and DVC's site cache must point at a
    # volume of every container that runs the package (DVC 3 otherwise writes /var/tmp/dvc and fails).
    from tests.support.kuberay.contract import writable_env_problems
    from tests.support.kuberay.rendering import image_spec

    image_env = image_spec().env
    problems = []
    for role, t in rayjob_pod_templates(rayjob(render, profile)).items():
        for c in t["spec"].get("initContainers", []) + t["spec"]["containers"][:1]:
            env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            problems += writable_env_problems(c, env, image_env, f"{role}/{c['name']}")
    assert not problems, "\n".join(problems)


def refs(docs: list[dict]) -> set[tuple[str, str, str]]:
    """(kind, name, key) of every configMapKeyRef / secretKeyRef and ConfigMap / Secret volume item in pod templates."""
    out = set()
    for t in workload_pod_templates(docs).values():
        for v in t["spec"].get("volumes", []) or []:
            for kind, field, name_key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
                if field in v:
                    assert kind == "ConfigMap" or v[field].get("items"), f"volume {v['name']}: which keys?"
                    out |= {(kind, v[field][name_key], i["key"]) for i in v[field].get("items", [])}
        for c in t["spec"].get("initContainers", []) + t["spec"]["containers"]:
            for e in c.get("env", []):
                vf = e.get("valueFrom", {})
                if "configMapKeyRef" in vf:
                    out.add(("ConfigMap", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"]))
                if "secretKeyRef" in vf:
                    out.add(("Secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]))
            for ef in c.get("envFrom", []):
                raise AssertionError(f"envFrom hides which keys are needed: {ef}")
    return out


def provided(docs: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for d in docs:
        if d["kind"] == "ConfigMap":
            out |= {("ConfigMap", d["metadata"]["name"], k) for k in d.get("data", {})}
        if d["kind"] == "Secret":
            keys = set(d.get("data", {})) | set(d.get("stringData", {}))
            out |= {("Secret", d["metadata"]["name"], k) for k in keys}
    return out


@pytest.mark.parametrize("profile", ["rayjob-cpu-kind", "rayservice-cpu-kind"])
def test_rayjob_references_exist_in_platform_dev(render, profile):
    """The kind profiles run against the dev platform: everything they read is there, its dev Secret included."""
    needed = refs(render(profile))
    assert {k for k, _, _ in needed} == {"ConfigMap", "Secret"}
    missing = needed - provided(render("platform-dev"))
    assert not missing, f"referenced by {profile} but not defined by the platform (dev): {sorted(missing)}"


@pytest.mark.parametrize("profile", ["rayjob-gpu", "rayjob-gpu-initcontainer", "rayservice-gpu"])
def test_production_rayjob_uses_the_training_user_never_root_or_dev_keys(render, profile):
    """The GPU (production) profile reads the platform's ConfigMap, the training workload's own S3 user and MLflow
    user (the RayService: the read-only serving user instead), all of which the platform renders (default profile)
    or names (production profile); never the root keys (credentials.existingSecret) and never the dev profile's
    Secret."""
    needed = refs(render(profile))
    values = load_yaml(PLATFORM / "values.yaml")["credentials"]
    training = f"{PLATFORM_RELEASE}-s3-training"
    mlflow_user = "serving" if profile.startswith("rayservice-") else "training"
    assert {n for k, n, _ in needed if k == "Secret"} == {training, f"{PLATFORM_RELEASE}-mlflow-{mlflow_user}"}
    assert not needed - provided(render("platform-default"))
    production = load_yaml(PLATFORM / "values-production.yaml")["credentials"]["workloads"]
    assert production["trainingSecret"] == training and not production["create"]
    dev_secrets = {d["metadata"]["name"] for d in by_kind(render("platform-dev"), "Secret")}
    assert values["existingSecret"] not in dev_secrets, "the dev Secret must not take the production Secret's name"


def test_platform_references_exist(render):
    """The platform's own pods only reference what it defines (dev) or the existing Secret (default)."""
    dev = render("platform-dev")
    assert refs(dev) - provided(dev) == set()
    default = render("platform-default")
    existing = load_yaml(PLATFORM / "values.yaml")["credentials"]["existingSecret"]
    leftovers = refs(default) - provided(default)
    assert leftovers and {(k, n) for k, n, _ in leftovers} == {("Secret", existing)}
    # ...and the RayJob default points at the training workload's Secret the platform makes, not the root one.
    rj_values = load_yaml(RAYJOB / "values.yaml")["platform"]
    assert rj_values["credentialsSecret"] == f"{PLATFORM_RELEASE}-s3-training" != existing
    assert ("ConfigMap", rj_values["endpointsConfigMap"], "AWS_ENDPOINT_URL") in provided(default)


def test_buckets_agree(render):
    dev = render("platform-dev")
    job = one(dev, "Job", f"{PLATFORM_RELEASE}-buckets")
    created = {a.split("=", 1)[1] for a in job["spec"]["template"]["spec"]["containers"][0]["command"] if a.startswith("--bucket=")}
    cm = one(dev, "ConfigMap", f"{PLATFORM_RELEASE}-endpoints")["data"]
    assert cm["MNIST_DVC_REMOTE_URL"].startswith("s3://")
    assert cm["MNIST_DVC_REMOTE_URL"][5:].split("/")[0] in created
    mlflow = one(dev, "Deployment", "mnist-platform-mlflow")["spec"]["template"]["spec"]["containers"][0]["args"]
    art = [a for a in mlflow if a.startswith("--artifacts-destination=")][0].split("=", 1)[1]
    assert art.startswith("s3://") and art[5:] in created
    for profile in ("rayjob-gpu", "rayjob-cpu-kind"):
        storage = sets(entrypoint_argv(rayjob(render, profile)))["train.storage_path"]
        assert storage[5:].split("/")[0] in created, f"{profile}: checkpoints bucket {storage} is not created"


def test_endpoints_point_at_platform_services(render):
    dev = render("platform-dev")
    cm = one(dev, "ConfigMap", f"{PLATFORM_RELEASE}-endpoints")["data"]
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in by_kind(dev, "Service")}
    for key in ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"):
        m = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", cm[key])
        assert m, cm[key]
        assert int(m.group(2)) in services.get(m.group(1), set()), f"{key}={cm[key]} matches no Service port"
    mlflow = one(dev, "Deployment", "mnist-platform-mlflow")["spec"]["template"]["spec"]["containers"][0]
    hosts = [a for a in mlflow["args"] if a.startswith("--allowed-hosts=")][0].split("=", 1)[1].split(",")
    host = cm["MLFLOW_TRACKING_URI"][len("http://"):]
    assert host in hosts and host.split(":")[0] in hosts
    assert "mnist-platform-mlflow.mnist.svc.cluster.local:5000" in hosts
    e = env_map(mlflow)
    assert e["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert e["MLFLOW_S3_ENDPOINT_URL"]["value"] == cm["AWS_ENDPOINT_URL"]
    for flag in ("--backend-store-uri=sqlite:////mlflow/mlflow.db", "--serve-artifacts", "--host=0.0.0.0", "--workers=1",
                 "--app-name=basic-auth", "--cors-allowed-origins=http://localhost:5000,http://127.0.0.1:5000"):
        assert flag in mlflow["args"]


# --------------------------------------------------------------------------- secrets


def leaves(tree, path=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, path + (str(k),))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from leaves(v, path + (str(i),))
    else:
        yield path, tree


VALUES_FILES = sorted(CHARTS.glob("*/values*.yaml"))
# A user name, not a secret: the dev profile's MinIO user (its password is generated at install).
NOT_SECRET = {("values-dev.yaml", "credentials.dev.accessKeyId")}


@pytest.mark.parametrize("values", VALUES_FILES, ids=[f"{v.parent.name}/{v.name}" for v in VALUES_FILES])
def test_no_secret_values_in_values_files(values):
    for path, value in leaves(load_yaml(values)):
        key = path[-1]
        if (values.name, ".".join(path)) in NOT_SECRET or isinstance(value, bool):
            continue  # switches such as allowDevelopmentCredentials name no secret
        if SECRETISH.search(key) and not re.search(r"(existingSecret|credentialsSecret|Secret)$", key):
            assert value in ("", None), f"{values.name}: {'.'.join(path)} holds a value; secrets belong in a Secret"


def dev_secret(docs: list[dict]) -> dict:
    return one(docs, "Secret", f"{PLATFORM_RELEASE}-dev-s3-credentials")


def test_dev_secret_has_its_own_name_and_mark(render):
    secret = dev_secret(render("platform-dev"))
    annotations = secret["metadata"]["annotations"]
    assert annotations["kuberay-mnist/development-credentials"] == "true"
    existing = load_yaml(PLATFORM / "values.yaml")["credentials"]["existingSecret"]
    assert secret["metadata"]["name"] != existing


def test_no_fixed_dev_password_is_committed(render):
    """`helm template` cannot generate the dev password (helm install does, and keeps it across upgrades with a
    lookup): it renders a placeholder and names it, so no password is committed in k8s/."""
    secret = dev_secret(render("platform-dev"))
    placeholder = secret["stringData"]["AWS_SECRET_ACCESS_KEY"]
    assert placeholder.startswith("placeholder-"), placeholder
    assert secret["metadata"]["annotations"]["kuberay-mnist/placeholder-keys"] == "AWS_SECRET_ACCESS_KEY"
    assert "secretAccessKey" not in load_yaml(PLATFORM / "values-dev.yaml")["credentials"]["dev"]
    committed = [d for d in yaml.safe_load_all((ROOT / "k8s" / "platform-dev.yaml").read_text()) if d]
    committed_secret = one(committed, "Secret", secret["metadata"]["name"])
    assert committed_secret["stringData"]["AWS_SECRET_ACCESS_KEY"] == placeholder
    assert "data" not in committed_secret
    # The password the dev profile used to carry is gone from every committed text file.
    old = "minio-dev-only-" + "not-a-secret"
    for f in [*(ROOT / "charts").rglob("*"), *(ROOT / "k8s").glob("*"), *(ROOT / "docs").glob("*.md"),
              *(ROOT / "scripts").glob("*"), ROOT / "README.md"]:
        if f.is_file():
            assert old not in f.read_text(errors="replace"), f"{f.relative_to(ROOT)} still holds the old dev password"


@pytest.mark.parametrize("profile", ["platform-dev", "platform-default", *RAY_PROFILES])
def test_configmaps_hold_no_secrets(render, profile):
    value = dev_secret(render("platform-dev"))["stringData"]["AWS_SECRET_ACCESS_KEY"]
    for cm in by_kind(render(profile), "ConfigMap"):
        for k in cm.get("data", {}):
            assert not SECRETISH.search(k), f"ConfigMap {cm['metadata']['name']} key {k} looks secret"
    for d in render(profile):
        if d["kind"] != "Secret":
            assert value not in yaml.safe_dump(d), f"{d['kind']}/{d['metadata']['name']} contains the secret"


def test_default_platform_creates_only_generated_secrets(render):
    """Not the root S3 Secret (it exists beforehand); the MLflow admin, training and serving user and the two
    per-workload MinIO users, whose passwords `helm install` generates: under `helm template` each is a named
    placeholder, so no password is committed."""
    secrets = {d["metadata"]["name"]: d for d in by_kind(render("platform-default"), "Secret")}
    assert set(secrets) == {f"{PLATFORM_RELEASE}-{n}" for n in ("mlflow-admin", "mlflow-training", "mlflow-serving",
                                                                 "s3-mlflow", "s3-training")}
    for secret in secrets.values():
        placeholders = secret["metadata"]["annotations"]["kuberay-mnist/placeholder-keys"].split(",")
        assert placeholders and all(secret["stringData"][k].startswith("placeholder-") for k in placeholders)
        assert {"password", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"} & set(placeholders)


# --------------------------------------------------------------------------- network policies


def test_network_policies_admit_exactly_the_job_pods(render):
    dev = render("platform-dev")
    pols = {p["metadata"]["name"]: p for p in by_kind(dev, "NetworkPolicy")}
    client = load_yaml(PLATFORM / "values.yaml")["networkPolicy"]["clientLabel"]
    client_sel = {client["key"]: str(client["value"])}
    for target in ("mnist-platform-minio", "mnist-platform-mlflow"):
        pol = pols[target]
        assert pol["spec"]["policyTypes"] == ["Ingress"]
        selectors = [f["podSelector"]["matchLabels"] for r in pol["spec"]["ingress"] for f in r["from"]]
        assert client_sel in selectors, f"{target} does not admit the job pods"
        for r in pol["spec"]["ingress"]:
            for f in r["from"]:
                assert set(f) == {"podSelector"}, "no namespaceSelector/ipBlock: same-namespace pods only"
    # every platform pod is selected by a policy
    pods = {k: t["metadata"]["labels"] for k, t in workload_pod_templates(dev).items()}
    for where, labels in pods.items():
        assert any(all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items()) for p in pols.values()), where
    # the Ray pods of the RayJob and the RayService carry the client label, the submitter does not need it
    for profile in RAY_PROFILES:
        rj_client = load_yaml(RAYJOB / "values.yaml")["platform"]["clientLabel"]
        assert rj_client == client
        for role, t in rayjob_pod_templates(rayjob(render, profile)).items():
            has = t["metadata"]["labels"].get(client["key"]) == str(client["value"])
            assert has == (role != "submitter"), f"{profile} {role}: client label {'missing' if not has else 'not needed'}"
        # and do not accidentally match the platform's own selectors
        head_labels = rayjob_pod_templates(rayjob(render, profile))["head"]["metadata"]["labels"]
        for p in pols.values():
            sel = p["spec"]["podSelector"]["matchLabels"]
            assert not all(head_labels.get(k) == v for k, v in sel.items())


@pytest.mark.parametrize("profile", ["rayjob-gpu", "rayjob-cpu-kind"])
def test_the_submitter_gets_no_s3_credentials_or_endpoints(render, profile):
    """It only runs `ray job submit/logs` against the dashboard: least privilege, nothing to leak."""
    spec = rayjob(render, profile)["spec"]
    submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
    names = {e["name"] for e in submitter.get("env", [])}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_TRACKING_URI",
                        "MNIST_DVC_REMOTE_URL", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}, names
    assert not submitter.get("envFrom"), "no ConfigMap or Secret wholesale either"
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in submitter.get("env", []))
    assert not mounted_secrets(spec["submitterPodTemplate"], submitter), "no credentials file either"
    head_template = spec["rayClusterSpec"]["headGroupSpec"]["template"]
    head = head_template["spec"]["containers"][0]
    assert {"AWS_SHARED_CREDENTIALS_FILE", "MLFLOW_TRACKING_URI"} <= {e["name"] for e in head["env"]}, "the Ray pods do"
    assert mounted_secrets(head_template, head) == {f"{PLATFORM_RELEASE}-s3-training",
                                                    f"{PLATFORM_RELEASE}-mlflow-training"}, "the training user's files"


@pytest.mark.parametrize("profile", RAY_PROFILES)
def test_the_rayservice_reads_mlflow_as_the_serving_user_the_rayjob_as_the_training_user(render, profile):
    """Every Ray pod (head and workers) mounts one MLflow user's file at ~/.mlflow: the RayService's the platform's
    serving user (READ only: tests/tracking/test_mlflow_auth.py, tests/kubernetes/test_rayservice.py), never the
    training user, which may move the champion alias; the RayJob's the training user."""
    serving = profile.startswith("rayservice-")
    want, never = (("mlflow-serving", "mlflow-training") if serving else ("mlflow-training", "mlflow-serving"))
    values = load_yaml(RAYJOB / "values.yaml")["platform"]
    assert values["mlflowServingCredentialsSecret"] == f"{PLATFORM_RELEASE}-mlflow-serving"
    for role, template in rayjob_pod_templates(rayjob(render, profile)).items():
        if role == "submitter":
            continue
        container = template["spec"]["containers"][0]
        assert mounted_secrets(template, container) == {f"{PLATFORM_RELEASE}-s3-training",
                                                        f"{PLATFORM_RELEASE}-{want}"}, (profile, role)
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "mlflow-credentials"]
        assert mount["mountPath"] == "/tmp/home/.mlflow" and mount["readOnly"], (profile, role)
        assert f"{PLATFORM_RELEASE}-{never}" not in yaml.safe_dump(template), (profile, role)


@pytest.mark.parametrize("profile", ["platform-dev", "platform-default", "platform-production"])
def test_only_minio_and_the_bucket_job_hold_the_root_keys(render, profile):
    """Each workload reads its own S3 user: MLflow <release>-s3-mlflow; the root keys stay in MinIO and the bucket
    job (whose minio-users container makes the per-workload users, where MinIO runs in the cluster)."""
    docs = render(profile)
    root = (f"{PLATFORM_RELEASE}-dev-s3-credentials" if profile == "platform-dev"
            else load_yaml(PLATFORM / "values.yaml")["credentials"]["existingSecret"])
    holders = set()
    for where, tmpl in workload_pod_templates(docs).items():
        for c in tmpl["spec"]["containers"]:
            names = mounted_secrets(tmpl, c)
            if root in names:
                holders.add(f"{where}/{c['name']}")
            if c["name"] == "mlflow":
                assert f"{PLATFORM_RELEASE}-s3-mlflow" in names and root not in names, names
    expected = {f"Job/{PLATFORM_RELEASE}-buckets/ensure-buckets"}
    if profile != "platform-production":
        expected |= {f"Deployment/{PLATFORM_RELEASE}-minio/minio", f"Job/{PLATFORM_RELEASE}-buckets/minio-users"}
    assert holders == expected
