"""DVC: which version of the dataset a run uses (dvc.lock), the remote's settings, and the pull.

A worker needs ``data/mnist``. Where the project folder already holds a verified copy (a laptop
after ``prepare``), it is used as is. Otherwise (a pod, or a worker of the local harness) the worker
``dvc pull``s it into its data cache (``MNIST_DATA_CACHE``): once per node, under a file lock on that
folder, because several Ray workers on one node share it and node ranks cannot tell nodes apart
(docs/design-notes.md). The pull happens in a small DVC workspace inside the cache: a ``.dvc`` file
for the one output, written from the project's dvc.lock, and the remote's settings. So it works where
the project folder is read-only or has no ``.git`` (a container image), and DVC does not parse the
whole pipeline to pull one folder (bench/dataset_ready.py times the pull).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mnist_job.core.config import DataParams, Runtime
from mnist_job.core.errors import DataError, InvalidInput, ServiceUnavailable
from mnist_job.core.files import write_atomically
from mnist_job.core.paths import Output
from mnist_job.data.format import MANIFEST, verify_dataset
from mnist_job.data.s3 import check_s3_location

logger = logging.getLogger(__name__)

# Where a command that pulls the dataset writes (checked before it runs: mnist_job/core/paths.py): the DVC
# output it pulls into the node's cache and the cache itself. `mnist-job pull-data` always pulls; train and
# evaluate only when MNIST_DATA_CACHE is set (else they read data.dir where it is).
PULL_OUTPUTS = (Output("data.dir", lambda args, params, runtime: params.data.dir, allow_absolute=False),
                Output("MNIST_DATA_CACHE", lambda args, params, runtime: runtime.data_cache))
CACHED_DATA_OUTPUTS = (
    Output("data.dir", lambda args, params, runtime: params.data.dir if runtime.data_cache else None,
           allow_absolute=False),
    Output("MNIST_DATA_CACHE", lambda args, params, runtime: runtime.data_cache),
)

def dvc_lock_out(project_dir: Path, out_path: str) -> dict | None:
    """The entry dvc.lock records for the output ``out_path`` (md5, size, nfiles, hash), or None."""
    lock = project_dir / "dvc.lock"
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == out_path:
                return out
    return None


def dvc_lock_hash(project_dir: Path, out_path: str) -> str | None:
    """The md5 DVC recorded for ``out_path`` in dvc.lock (what ``dvc pull`` fetches)."""
    out = dvc_lock_out(project_dir, out_path)
    return out.get("md5") if out else None


def dvc_remote_location(project_dir: Path, remote_url: str | None, md5: str) -> str:
    """Where the DVC remote keeps the object ``md5`` (DVC 3's layout: files/md5/<2 chars>/<rest>)."""
    url = remote_url or _default_remote_url(project_dir)[1]
    return f"{url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def dvc_executable() -> str:
    """The dvc next to this interpreter (a venv or the image), else the one on PATH."""
    candidate = Path(sys.executable).with_name("dvc")
    return str(candidate) if candidate.exists() else "dvc"


def _default_remote_url(project_dir: Path) -> tuple[str, str]:
    from configobj import ConfigObj  # dvc's own config reader

    config = ConfigObj(str(project_dir / ".dvc" / "config"))
    name = config.get("core", {}).get("remote")
    if not name:
        raise DataError(f"{project_dir}/.dvc/config names no default remote and MNIST_DVC_REMOTE_URL is unset")
    url = config.get(f'remote "{name}"', {}).get("url", "")
    if "://" not in url and not url.startswith("/"):
        # relative remote paths are relative to the config file's folder
        url = str((project_dir / ".dvc" / url).resolve())
    return name, url


def write_remote_config(workspace: Path, name: str, url: str, endpoint: str | None = None,
                        cache_dir: Path | None = None) -> None:
    """The workspace's ``.dvc/config.local``: no SCM, ``name`` as the default remote (its S3 endpoint), the cache.

    Written through DVC's own config object, so the file is what ``dvc remote add --local`` would write;
    the one writer of remote settings for the package, the benchmark and the tests.
    """
    from dvc.config import Config

    config = Config(dvc_dir=str(workspace / ".dvc"), validate=False)
    with config.edit("local") as local:
        local["core"].update({"no_scm": True, "remote": name})
        remote = {"url": url}
        if url.startswith("s3://") and endpoint:
            remote["endpointurl"] = endpoint
        local["remote"][name] = remote
        # hardlinks: the checkout from DVC's cache costs no second copy of the data
        local["cache"].update({"type": "hardlink,copy", **({"dir": str(cache_dir)} if cache_dir else {})})


def write_pull_workspace(project_dir: Path, workspace: Path, out_path: str, remote_url: str | None,
                         s3_endpoint: str | None, cache_dir: Path | None = None) -> str:
    """A DVC workspace in ``workspace`` that pulls (or pushes) ``out_path`` as dvc.lock records it.

    It holds ``<out_path>.dvc``, DVC's own file for one tracked output, instead of copies of dvc.yaml and
    dvc.lock: DVC then reads one small file rather than the pipeline. Returns the remote URL used.
    """
    out = dvc_lock_out(project_dir, out_path)
    if out is None:
        raise DataError(f"cannot pull {out_path}: {project_dir / 'dvc.lock'} is missing or records no such output "
                        "(the image must ship dvc.lock; `make data` writes it)")
    folder, name = posixpath.split(out_path)
    entry = {key: out[key] for key in ("md5", "size", "nfiles", "hash") if key in out}
    (workspace / ".dvc").mkdir(parents=True, exist_ok=True)
    (workspace / folder).mkdir(parents=True, exist_ok=True)
    for earlier in ("dvc.yaml", "dvc.lock"):  # copied by earlier versions; DVC refuses an output defined twice
        (workspace / earlier).unlink(missing_ok=True)
    write_atomically(workspace / f"{out_path}.dvc", yaml.safe_dump({"outs": [{**entry, "path": name}]},
                                                                 sort_keys=False))
    url = remote_url or _default_remote_url(project_dir)[1]
    write_remote_config(workspace, "pull", url, s3_endpoint, cache_dir)
    return url


def dvc_pull(project_dir: Path, workspace: Path, out_path: str, remote_url: str | None,
             s3_endpoint: str | None) -> Path:
    workspace.mkdir(parents=True, exist_ok=True)
    url = write_pull_workspace(project_dir, workspace, out_path, remote_url, s3_endpoint)
    if url.startswith("s3://"):
        # DVC reports a missing bucket as missing files; say what is wrong, and fast
        check_s3_location(url, s3_endpoint, "MNIST_DVC_REMOTE_URL" if remote_url else "the DVC remote")
    target = workspace / out_path
    shutil.rmtree(target, ignore_errors=True)  # never mix a previous partial pull with this one
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    started = time.monotonic()
    done = subprocess.run([dvc_executable(), "pull", "--force", f"{out_path}.dvc"], cwd=workspace,
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split())[-600:]
        if any(w in message for w in ("Could not connect", "connect timeout", "Connection refused",
                                      "EndpointConnectionError", "NoSuchBucket", "bucket does not exist")):
            raise ServiceUnavailable(f"dvc pull from {url} (endpoint {s3_endpoint or 'default'}) failed: {message}")
        if "missing-files" in message or "do not exist neither locally nor on remote" in message:
            raise DataError(f"the DVC remote {url} has no copy of {out_path} as dvc.lock records it "
                            f"({dvc_lock_hash(project_dir, out_path)}): push it with `dvc push {out_path}`")
        raise DataError(f"dvc pull of {out_path} from {url} failed: {message}")
    logger.info(f"data: pulled {out_path} from {url} into {target} in {time.monotonic() - started:.1f} s")
    return target


def ensure_dataset(data: DataParams, runtime: Runtime) -> Path:
    """A verified local copy of the prepared dataset (``data.dir``), pulled with DVC into
    ``runtime.data_cache`` (once per node) when the project does not hold one."""
    project_dir, data_dir, cache_dir = runtime.project_dir, data.dir, runtime.data_cache
    remote_url, s3_endpoint = runtime.dvc_remote_url, runtime.s3_endpoint
    local = runtime.path(data_dir)
    if cache_dir is None:
        if (local / MANIFEST).is_file():
            verify_dataset(local)
            return local
        cache_dir = project_dir / ".cache" / "dataset"
    from filelock import FileLock

    workspace = cache_dir / "dvc-workspace"
    pulled = workspace / data_dir
    if Path(data_dir).is_absolute() or not pulled.resolve().is_relative_to(workspace.resolve()):
        # the pull replaces that folder: it must lie inside the workspace this code owns
        raise InvalidInput(f"data.dir: {data_dir!r} must be a path inside the project to be pulled with DVC "
                           "(it names the DVC output in dvc.yaml)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / ".pull.lock")):
        if (pulled / MANIFEST).is_file():
            try:
                verify_dataset(pulled)
                logger.info(f"data: using {pulled}, pulled earlier on this node")
                return pulled
            except DataError as exc:
                logger.info(f"data: cached copy is not usable ({exc}); pulling again")
                # The checkout hardlinks DVC's cache objects: a file corrupted in place corrupted its cache
                # object too, which DVC trusts and would link again. Start from an empty cache.
                shutil.rmtree(workspace / ".dvc" / "cache", ignore_errors=True)
        dvc_pull(project_dir, workspace, data_dir, remote_url, s3_endpoint)
        verify_dataset(pulled)
        write_atomically(cache_dir / "PULLED", json.dumps({"path": str(pulled), "pid": os.getpid(), "time": time.time()}))
        return pulled
