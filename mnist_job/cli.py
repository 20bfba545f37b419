"""``mnist-job``: one command per stage. fetch -> prepare -> train -> evaluate.

Every subcommand takes ``--params FILE`` and ``--set key=value``; expected
failures print one line (or one list of invalid fields) and exit with the
code from errors.py: 2 invalid input, 3 service unreachable, 4 bad data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnist_job.core import config as cfg
from mnist_job.core.console import show_on_stdout
from mnist_job.core.errors import InvalidInput, JobError
from mnist_job.core.paths import check_stage_paths
from mnist_job.core.presets import describe, preset_names, preset_overrides
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
                            help=f"{cfg.field_help(section, field)}; same as --set {key}=...")


def _embedded_store() -> str:
    """What MLFLOW_TRACKING_URI defaults to here, as Runtime decides it."""
    try:
        return cfg.Runtime.from_env({**os.environ, "MLFLOW_TRACKING_URI": ""}).mlflow_uri
    except JobError:  # a bad setting is reported when the command runs, not by --help
        return "SQLite under the project's mlruns/"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnist-job", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog=f"Environment: MLFLOW_TRACKING_URI (default: {_embedded_store()}), AWS_ENDPOINT_URL, "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, MNIST_DVC_REMOTE_URL, MNIST_DATA_CACHE, "
                            "MNIST_PROJECT_DIR (default: the current folder), RAY_ADDRESS (default: a local Ray).\n"
                            "Exit codes: 0 ok, 2 invalid input, 3 service unreachable, 4 dataset missing or corrupt, "
                            "130/143 stopped by SIGINT/SIGTERM.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    p.add_argument("--metrics", type=Path, default=Path("outputs/metrics.json"), help="metrics file for DVC")
    p.add_argument("--plots", type=Path, default=Path("outputs/plots"), help="folder for plots")

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
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="also write comparison.md and comparison_curves.png here")
    p.add_argument("--no-log", action="store_true", help="do not log the comparison to MLflow")

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
    p.add_argument("--baseline", type=Path, default=Path("bench/ci-baseline.json"), metavar="FILE",
                   help="baseline file (default: bench/ci-baseline.json)")
    p.add_argument("--run", default=None, metavar="RUN_ID", help="compare this finished run instead of training")
    p.add_argument("--refresh", action="store_true", help="rewrite the baseline from this run (make ci-baseline)")
    p.add_argument("--verbose", action="store_true", help="also print the job's debug lines")

    p = sub.add_parser("pull-data", help="dvc pull the dataset into MNIST_DATA_CACHE (once per node) and verify it")
    _add_common(p)

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
    p.add_argument("--model", default=None, help="registered model name (default: mlflow.registered_model)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="a registered version instead of the champion")
    which.add_argument("--run", default=None, help="the model an MLflow run logged, by run id")
    p.add_argument("--invert", choices=["auto", "yes", "no"], default="auto",
                   help="images drawn dark on light are inverted: auto decides by the border (default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("serve", help="serve the champion over HTTP with Ray Serve (POST /predict, GET /healthz, GET /)")
    _add_common(p)
    p.add_argument("--model", default=None, help="registered model name (default: mlflow.registered_model)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="a registered version instead of the champion")
    which.add_argument("--run", default=None, help="the model an MLflow run logged, by run id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a pod)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (default 1)")
    p.add_argument("--ready-file", type=Path, default=None, help="write the URL here once the app answers")

    p = sub.add_parser("ensure-buckets", help="create S3 buckets at AWS_ENDPOINT_URL, waiting for the endpoint")
    p.add_argument("--bucket", action="append", required=True, help="bucket name (repeatable)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the endpoint (default 300)")
    return parser


def _params(args, runtime: cfg.Runtime, flags: dict | None = None) -> cfg.Params:
    params_file = args.params
    if params_file is None and (runtime.project_dir / "params.yaml").is_file():
        params_file = runtime.project_dir / "params.yaml"
    given = {key: getattr(args, name) for name, (_, key, _) in (flags or {}).items()}
    preset = getattr(args, "preset", None)
    params = cfg.load_params(params_file, [*preset_overrides(preset), *args.overrides] if preset else args.overrides,
                             given)
    outputs = {"--metrics": args.metrics, "--plots": args.plots} if args.command == "evaluate" else {}
    check_stage_paths(args.command, params, runtime, outputs)  # before anything is written or removed
    return params


def _say(message: str) -> None:
    print(message, flush=True)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_on_stdout(verbose=getattr(args, "verbose", False))
    runtime = cfg.Runtime.from_env()

    if args.command == "ensure-buckets":
        from mnist_job.data.s3 import ensure_buckets

        ensure_buckets(args.bucket, runtime.s3_endpoint, args.timeout)
        return 0

    if args.command == "fetch":
        from mnist_job.data.fetch import fetch

        params = _params(args, runtime, DATA_FLAGS)
        fetch(params.data, runtime.path(params.data.raw_dir), force=args.force)
    elif args.command == "prepare":
        from mnist_job.data.prepare import prepare

        params = _params(args, runtime)
        prepare(runtime.path(params.data.raw_dir), runtime.path(params.data.dir), force=args.force,
                transform=args.transform)
    elif args.command == "pull-data":
        from mnist_job.data.dvc_store import ensure_dataset

        params = _params(args, runtime)
        if runtime.data_cache is None:
            raise InvalidInput("MNIST_DATA_CACHE: set it to the folder the dataset should be pulled into")
        path = ensure_dataset(params.data, runtime)
        _say(f"dataset ready: {path}")
    elif args.command == "train":
        from mnist_job.training.driver import run_training

        params = _params(args, runtime, TRAIN_FLAGS)
        result = run_training(params, runtime, verbose=args.verbose)
        for line in result.summary_lines():
            _say(line)
    elif args.command == "compare":
        from mnist_job.experiments.compare import compare_command

        params = _params(args, runtime)
        _say(compare_command(params, runtime, args.run_ids, champion=args.champion, last=args.last, tag=args.tag,
                             experiment=args.experiment, out_dir=args.out and runtime.path(str(args.out)),
                             log=not args.no_log))
    elif args.command == "tune":
        from mnist_job.experiments.tune import run_study, summary

        params = _params(args, runtime, TUNE_FLAGS)
        _say(summary(run_study(params, runtime)))
    elif args.command == "ci-report":
        from mnist_job.experiments.baseline import ci_report

        report, code = ci_report(runtime, runtime.path(str(args.baseline)), args.run, args.refresh)
        _say(report)
        return code
        result = run_training(params, runtime)
        accuracy = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
        _say(f"run id: {result.run_id}")
        _say(f"test accuracy: {accuracy}")
        _say(f"registered: {result.registered}")
        _say(f"model: {result.model_dir}")
    elif args.command == "presets":
        for name in preset_names():
            args.preset = name
            try:  # a preset that does not validate on top of the params file fails here, naming its key
                _params(args, runtime)
            except InvalidInput as exc:
                raise InvalidInput([f"preset {name}: {problem}" for problem in exc.problems]) from None
            settings = ", ".join(item.replace("=", ": ", 1) for item in preset_overrides(name)) or "no changes"
            _say(f"{name:<14} {describe(name)}\n{'':<14} {settings}")
    elif args.command == "evaluate":
        from mnist_job.evaluation.evaluate import evaluate_saved_model

        params = _params(args, runtime)
        evaluation = evaluate_saved_model(params, runtime, runtime.path(str(args.model)),
                                          runtime.path(str(args.metrics)), runtime.path(str(args.plots)))
        _say(f"test accuracy: {evaluation.accuracy:.4f} on {evaluation.count} images; wrote {args.metrics}")
    elif args.command in ("promote", "predict", "serve"):
        from mlflow import MlflowClient

        from mnist_job.tracking.runs import check_tracking_server, resolve_tracking_uri

        params = _params(args, runtime)
        name = args.model or params.mlflow.registered_model
        tracking_uri = resolve_tracking_uri(runtime)
        check_tracking_server(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri)
        if args.command == "promote":
            from mnist_job.tracking.registry import CHAMPION, promote

            _say(f"{name}@{CHAMPION} -> version {promote(client, name, args.version)}")
        elif args.command == "serve":
            from mnist_job.serving.app import serve_forever
            from mnist_job.serving.predict import model_uri

            uri = model_uri(client, name, args.version, args.run)
            serve_forever(runtime, tracking_uri, uri, args.host, args.port, args.num_cpus, args.ready_file)
        else:
            from mnist_job.serving.predict import predict_files

            _say(predict_files(client, tracking_uri, name, args.inputs, args.invert, args.version, args.run, args.json))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
