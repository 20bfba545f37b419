"""Static contract checks between the charts, the image and the package: no process started.

Each problem names the side that broke it ([RayJob chart], [platform chart], [mnist_job], ...).
"""

from __future__ import annotations

import copy
import difflib
import shlex
import urllib.parse
from pathlib import Path

from tests.support.kuberay.env import package_env_names, resolve_env
from tests.support.kuberay.rendering import (
    ROOT,
    VENV_BIN,
    ContractError,
    PlatformView,
    console_scripts,
    entrypoint_argv,
    groups,
    image_spec,
    ray_container,
    runtime_env_of,
)

# Env vars whose presence in the pods the contract requires, with what reads them. The
# MNIST_/MLFLOW_/AWS_ENDPOINT names are also checked against mnist_job/core/config.py (Runtime.from_env),
# so a rename on the package side is reported as such.
REQUIRED_ENV = {
    "MLFLOW_TRACKING_URI": "mnist_job (config.Runtime.from_env): without it the job logs to a pod-local SQLite",
    "AWS_ENDPOINT_URL": "mnist_job (config.Runtime.from_env), boto3, DVC and pyarrow: the MinIO endpoint",
    "MNIST_DVC_REMOTE_URL": "mnist_job (config.Runtime.from_env): where workers dvc pull from",
    "MNIST_DATA_CACHE": "mnist_job (config.Runtime.from_env): the per-pod cache the dataset is pulled into",
    "MNIST_PROJECT_DIR": "mnist_job (config.Runtime.from_env): the image's DVC metadata and params.yaml",
    "AWS_SHARED_CREDENTIALS_FILE": "boto3, DVC, pyarrow (the S3 credentials file, from a Secret volume)",
}

# Credential files every Ray container reads (env var naming the file, or a path under HOME), each of which
# must be a file of a Secret volume mounted there: (what names the path, what reads it).
CREDENTIAL_FILES = {
    "AWS_SHARED_CREDENTIALS_FILE": "boto3, DVC, pyarrow",
    "HOME:.mlflow/credentials": "MLflow's client (mlflow.utils.credentials)",
}


def credential_file_problems(pod_spec: dict, container: dict, env: dict[str, str], where: str) -> list[str]:
    """Each CREDENTIAL_FILES path must be a key of a Secret volume, mounted read-only at its folder."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", []) or []}
    problems = []
    for name, reader in CREDENTIAL_FILES.items():
        var, _, rest = name.partition(":")
        path = env.get(var, "")
        path = f"{path.rstrip('/')}/{rest}" if rest and path else path
        folder, _, file = path.rpartition("/")
        mount = next((m for m in container.get("volumeMounts", []) or [] if m["mountPath"].rstrip("/") == folder), None)
        secret = (volumes.get(mount["name"], {}) if mount else {}).get("secret")
        items = {i["path"] for i in (secret or {}).get("items", [])}
        if not path or secret is None or (items and file not in items) or not mount.get("readOnly"):
            problems.append(f"[RayJob chart] {where}: {path or var} (read by {reader}) is not a file of a Secret "
                            f"volume mounted read-only at {folder or '?'}")
    return problems


# Where the tools in the image write when these are unset: each must name a folder on a writable volume
# of every container that runs the package (the root filesystem is read-only).
WRITABLE_ENV = {
    "HOME": "the image user's home folder (read-only in the image)",
    "XDG_CACHE_HOME": "$HOME/.cache",
    "XDG_CONFIG_HOME": "$HOME/.config",
    "MPLCONFIGDIR": "matplotlib: $HOME/.config/matplotlib",
    "DVC_SITE_CACHE_DIR": "DVC 3: /var/tmp/dvc, opened on every dvc command",
}


def writable_env_problems(container: dict, env: dict[str, str], image_env: dict[str, str], where: str) -> list[str]:
    """Each WRITABLE_ENV name, from the container's env or else the image's ENV, must lie on a declared volume."""
    mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts", []) or [] if not m.get("readOnly")]
    problems = []
    for name, default in WRITABLE_ENV.items():
        value = env.get(name, image_env.get(name))
        if value is None:
            problems.append(f"[RayJob chart / image] {where}: {name} is unset, so the tools write to {default}, "
                            f"outside the writable volumes {mounts}")
        elif not any(value == m or value.startswith(m + "/") for m in mounts):
            problems.append(f"[RayJob chart / image] {where}: {name}={value} is not on a writable volume {mounts}")
    return problems


def entrypoint_params(rayjob: dict | str, params_file: Path):
    """Parse the entrypoint (a RayJob's, or a command line) exactly as mnist-job would: (args, effective Params)."""
    from mnist_job import cli
    from mnist_job.core import config as cfg

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


def preflight(rayjob: dict, platform: PlatformView, image_env: dict[str, str] | None = None) -> None:
    """Everything that can be found wrong without starting a process; raises ContractError.

    ``image_env``: the image's ENV (default: parsed from image/Dockerfile).
    """
    image_env = image_spec().env if image_env is None else image_env
    problems: list[str] = []
    known_by_package = package_env_names()
    runtime_vars = {str(k) for k in (runtime_env_of(rayjob).get("env_vars") or {})}
    for name, reader in REQUIRED_ENV.items():
        if reader.startswith("mnist_job") and name not in known_by_package:
            problems.append(f"[mnist_job] the package no longer reads {name} (mnist_job/core/config.py Runtime.from_env "
                            f"reads {sorted(known_by_package)}), but the charts provide it")
    for role, group, spec, _ in groups(rayjob):
        where = f"{role} group {group!r}"
        try:
            env = resolve_env(ray_container(spec), platform, where)
        except ContractError as exc:
            problems.append(str(exc))
            continue
        problems += writable_env_problems(ray_container(spec), env, image_env, where)
        problems += credential_file_problems(spec["template"]["spec"], ray_container(spec), env, where)
        available = set(env) | runtime_vars
        for name, reader in REQUIRED_ENV.items():
            if name not in available:
                close = difflib.get_close_matches(name, sorted(available), n=1, cutoff=0.75)
                hint = f"; it sets {close[0]} instead (renamed?)" if close else ""
                problems.append(f"[RayJob chart] manifest env of the {where} lacks {name} that {reader}{hint}")
    # the command must exist in the image: the package's console scripts or the image's Python env
    argv = entrypoint_argv(rayjob)
    scripts = console_scripts()
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

