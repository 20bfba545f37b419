"""``mnist-job``'s arguments: one subcommand per stage or use of the model, each flag a shortcut for --set."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnist_job.core import config as cfg
from mnist_job.core.errors import JobError
from mnist_job.core.tuning_params import TuneParams

# CLI flag -> dotted params key. Each flag is a shortcut for --set KEY=VALUE.
TRAIN_FLAGS = {
    "epochs": (cfg.TrainParams, "train.epochs", int),
    "batch_size": (cfg.TrainParams, "train.batch_size", int),
    "learning_rate": (cfg.TrainParams, "train.learning_rate", float),
    "num_workers": (cfg.TrainParams, "train.num_workers", int),
    "cpus_per_worker": (cfg.TrainParams, "train.cpus_per_worker", int),
    "use_gpu": (cfg.TrainParams, "train.use_gpu", str),
    "max_failures": (cfg.TrainParams, "train.max_failures", int),
    "storage_path": (cfg.TrainParams, "train.storage_path", str),
    "run_name": (cfg.TrainParams, "train.run_name", str),
    "output_dir": (cfg.TrainParams, "train.output_dir", str),
    "train_subset": (cfg.DataParams, "data.train_subset", int),
    "test_subset": (cfg.DataParams, "data.test_subset", int),
    "experiment": (cfg.MlflowParams, "mlflow.experiment", str),
}
TUNE_FLAGS = {
    "trials": (TuneParams, "tune.trials", int),
    "max_concurrent": (TuneParams, "tune.max_concurrent", int),
    "budget_s": (TuneParams, "tune.budget_s", float),
    "max_epochs": (TuneParams, "tune.max_epochs", int),
    "study_name": (TuneParams, "tune.study_name", str),
    "experiment": (cfg.MlflowParams, "mlflow.experiment", str),
}
DATA_FLAGS = {
    "source": (cfg.DataParams, "data.source", str),
    "idx_dir": (cfg.DataParams, "data.idx_dir", str),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: usage line + message, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def output_path(value: str) -> Path:
    """The type of a flag that names a path its command writes. Every such flag is one of the command's declared
    outputs (mnist_job/cli/commands.py), checked before the command runs; tests/code/test_commands.py fails
    when one is not."""
    return Path(value)


def _add_kube(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default=None,
                        help="default: the manifest's, else the kubeconfig context's namespace")
    parser.add_argument("--stuck-after", type=float, default=300.0, metavar="SECONDS",
                        help="a pod that cannot start this long (image, scheduling, quota) fails the job (default 300)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=None, metavar="FILE",
                        help="params file (default: params.yaml in the project folder, if present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one param, dotted key as in the file, YAML value (repeatable), "
                             "e.g. --set train.epochs=3")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the job's debug lines, every rank's lines and Ray's and the libraries' own "
                             "output (otherwise in the run's log file, <train.output_dir>/train.log)")


def _add_flags(parser: argparse.ArgumentParser, flags: dict) -> None:
    for name, (section, key, kind) in flags.items():
        field = key.split(".", 1)[1]
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                            metavar=field.upper() if kind is not str else "VALUE",
                            help=f"{_field_help(section, field)}; same as --set {key}=...")


def _field_help(section: type, name: str) -> str:
    field = section.model_fields[name]
    return f"{field.description} (default: {field.default!r})"


def _embedded_store() -> str:
    """What MLFLOW_TRACKING_URI defaults to here, as Runtime decides it."""
    try:
        return cfg.Runtime.from_env({**os.environ, "MLFLOW_TRACKING_URI": ""}).mlflow_uri
    except JobError:  # a bad setting is reported when the command runs, not by --help
        return "SQLite under the project's mlruns/"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnist-job", description="Train an MNIST CNN with Ray Train, tracked in MLflow, data versioned with DVC; use the model.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog=f"Environment: MLFLOW_TRACKING_URI (default: {_embedded_store()}), AWS_ENDPOINT_URL, "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, MNIST_DVC_REMOTE_URL, MNIST_DATA_CACHE, "
                            "MNIST_PROJECT_DIR (default: the current folder), RAY_ADDRESS (default: a local Ray).\n"
                            "Exit codes: 0 ok, 2 invalid input, 3 service unreachable, 4 dataset missing or corrupt, "
                            "130/143 stopped by SIGINT/SIGTERM.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # in this order in --help: the pipeline's stages, work across runs, a node's data, the model's uses, the cluster
    for add_group in (_add_data_stages, _add_training, _add_compare, _add_tune_and_ci, _add_pull_data, _add_registry,
                      _add_serve, _add_cluster):
        add_group(sub)
    return parser


def _add_data_stages(sub) -> None:
    p = sub.add_parser("fetch", help="download or copy raw MNIST into data.raw_dir, verified by SHA-256")
    _add_common(p)
    _add_flags(p, DATA_FLAGS)
    p.add_argument("--force", action="store_true", help="fetch again even if verified raw files are present")

    p = sub.add_parser("prepare", help="build the checksummed dataset (data.dir) that DVC tracks")
    _add_common(p)
    p.add_argument("--force", action="store_true", help="rebuild even if the dataset is up to date")
    p.add_argument("--transform", choices=["none", "blur"], default="none",
                   help="blur: every image Gaussian-blurred (sigma 1 px), for the blurred variant "
                        "(dvc.yaml stage prepare-blurred writes it to data/mnist-blurred)")


def _add_training(sub) -> None:
    p = sub.add_parser("train", help="train with Ray Train on N workers, track in MLflow, register the model",
                       description="Train the CNN with ray.train.torch.TorchTrainer. Checks MLflow, S3 and the "
                                   "dataset first; logs params, per-epoch metrics, plots and the model to MLflow; "
                                   "checkpoints every epoch to train.storage_path; rerunning an unfinished train.run_name "
                                   "resumes it.")
    _add_common(p)
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="a named variant (see: mnist-job presets), applied over the params file and under --set")
    _add_flags(p, TRAIN_FLAGS)

    p = sub.add_parser("presets", help="list the named variants that train --preset takes, each checked")
    _add_common(p)

    p = sub.add_parser("evaluate", help="score a saved model on the test set; write metrics.json and plots")
    _add_common(p)
    p.add_argument("--model", type=Path, default=Path("outputs/model/checkpoint.pt"), help="checkpoint file")
    p.add_argument("--metrics", type=output_path, default=Path("outputs/metrics.json"), help="metrics file for DVC")
    p.add_argument("--plots", type=output_path, default=Path("outputs/plots"), help="folder for plots")


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="compare runs: params that differ, metrics with deltas, curves overlaid",
                       description="Reads runs back from MLflow (MLFLOW_TRACKING_URI); the first run is the "
                                   "reference of every delta. Prints a Markdown table; logs it and one PNG of the "
                                   "training curves to a new run tagged mnist.kind=comparison.")
    _add_common(p)
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to compare, reference first")
    p.add_argument("--champion", action="store_true",
                   help="put the run of the registered model's 'champion' version first (mlflow.registered_model)")
    p.add_argument("--last", type=int, default=None, metavar="N", help="the last N finished runs of the experiment")
    p.add_argument("--tag", default=None, metavar="KEY=VALUE", help="the finished runs with this tag")
    p.add_argument("--experiment", default=None, help="experiment for --last/--tag (default: mlflow.experiment)")
    p.add_argument("--out", type=output_path, default=None, metavar="DIR",
                   help="also write comparison.md and comparison_curves.png here")
    p.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")


def _add_tune_and_ci(sub) -> None:
    p = sub.add_parser("tune", help="hyperparameter study: Ray Tune + Optuna + ASHA, trials as nested MLflow runs",
                       description="Searches the space in params.yaml's tune.search; each trial trains as `mnist-job "
                                   "train` does, for at most tune.max_epochs. Running the same tune.study_name again "
                                   "resumes the study (only unfinished trials run).")
    _add_common(p)
    _add_flags(p, TUNE_FLAGS)

    p = sub.add_parser("ci-report", help="train CI's small fixed configuration and compare it with the committed baseline",
                       description="Trains the configuration in the baseline file (local Ray unless RAY_ADDRESS), "
                                   "prints the baseline against this run and a verdict per metric. Exit 1 only when "
                                   "test accuracy falls below the baseline by more than its tolerance.")
    p.add_argument("--baseline", type=output_path, default=Path("bench/ci-baseline.json"), metavar="FILE",
                   help="baseline file (default: bench/ci-baseline.json)")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="compare this finished run instead of training")
    p.add_argument("--refresh", action="store_true", help="rewrite the baseline from this run (make ci-baseline)")
    p.add_argument("--verbose", action="store_true", help="also print the job's debug lines")


def _add_pull_data(sub) -> None:
    p = sub.add_parser("pull-data", help="dvc pull the dataset into MNIST_DATA_CACHE (once per node) and verify it")
    _add_common(p)


def _add_registry(sub) -> None:
    p = sub.add_parser("promote", help="point the registry alias 'champion' at a model version by hand")
    _add_common(p)
    p.add_argument("--model", default=None, help="registered model name (default: mlflow.registered_model)")
    p.add_argument("--version", required=True, help="the version to make champion")

    p = sub.add_parser("predict", help="classify images, .npy arrays or IDX files with the registered model",
                       description="Classify with models:/NAME@champion (or --version, or --run) from the MLflow "
                                   "server MLFLOW_TRACKING_URI points at. Images of any size and mode are converted "
                                   "the MNIST way: grayscale, white on black, fitted into 20x20, centred by mass.")
    _add_common(p)
    p.add_argument("inputs", nargs="+", type=Path, help="PNG/JPEG files, folders of them, .npy arrays, IDX files")
    _add_model_choice(p)
    p.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                   help="images drawn dark on light are inverted: auto decides by the border (default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_model_choice(parser: argparse.ArgumentParser) -> None:
    """predict's and serve's: the registered model, its champion unless a version or a run is named."""
    parser.add_argument("--model", default=None, help="registered model name (default: mlflow.registered_model)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="a registered version instead of the champion")
    which.add_argument("--run", default=None, help="the model an MLflow run logged, by run id")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve the champion over HTTP with Ray Serve (POST /predict, GET /healthz, GET /)")
    _add_common(p)
    _add_model_choice(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a pod)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (default 1)")
    p.add_argument("--follow-champion-s", type=float, default=30.0, metavar="SECONDS",
                   help="how often each replica checks where the champion alias points, swapping in a new "
                        "version without dropping requests (default 30; 0: never; a --version or --run is fixed)")
    p.add_argument("--ready-file", type=output_path, default=None, help="write the URL here once the app answers")


def _add_cluster(sub) -> None:
    p = sub.add_parser("submit", help="apply a RayJob manifest to the cluster of your kubeconfig and follow it to its end",
                       description="Applies the manifest (server-side, with the kubernetes client) and, with --wait, "
                                   "prints the driver's output and decides the outcome from the RayJob, its submitter "
                                   "Job, their pods and events together. Exit 0 SUCCEEDED, 1 FAILED/STOPPED or could "
                                   "not start (the cause printed), 2 invalid input, 3 the API server unreachable.")
    p.add_argument("-f", "--filename", dest="manifest", type=Path, required=True, metavar="FILE",
                   help="RayJob manifest, e.g. k8s/rayjob-cpu-kind.yaml (its other objects are applied too)")
    _add_kube(p)
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=sys.stdout.isatty(),
                   help="follow the job to its end (default: on a terminal)")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait at most (default 7200)")

    p = sub.add_parser("status", help="what a RayJob submitted earlier came to, and the first cause of a failure")
    p.add_argument("name", metavar="NAME", help="the RayJob's name")
    _add_kube(p)

    p = sub.add_parser("logs", help="the driver's output of a RayJob submitted earlier (its submitter's logs)")
    p.add_argument("name", metavar="NAME", help="the RayJob's name")
    p.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig context's namespace")
    p.add_argument("--follow", action="store_true", help="keep printing the last attempt's lines as they come")

    p = sub.add_parser("ensure-buckets", help="create S3 buckets at AWS_ENDPOINT_URL, waiting for the endpoint")
    p.add_argument("--bucket", action="append", required=True, help="bucket name (repeatable)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the endpoint (default 300)")
