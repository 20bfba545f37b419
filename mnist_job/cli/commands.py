"""``mnist-job``'s commands: parse, check the params once, run the stage, print its summary.

Expected failures print one line (or one list of invalid fields) and exit with the code from
mnist_job/core/errors.py: 2 invalid input, 3 service unreachable, 4 bad data.
"""

from __future__ import annotations

import os
import sys

from mnist_job.cli.parser import DATA_FLAGS, TRAIN_FLAGS, TUNE_FLAGS, build_parser
from mnist_job.core import config as cfg
from mnist_job.core.console import show_on_stdout
from mnist_job.core.errors import InvalidInput, JobError
from mnist_job.core.paths import FOLDER, check_stage_paths
from mnist_job.core.presets import describe, preset_names, preset_overrides


def _params(args, runtime: cfg.Runtime, flags: dict | None = None) -> cfg.Params:
    params_file = args.params
    if params_file is None and (runtime.project_dir / "params.yaml").is_file():
        params_file = runtime.project_dir / "params.yaml"
    given = {key: getattr(args, name) for name, (_, key, _) in (flags or {}).items()}
    preset = getattr(args, "preset", None)
    params = cfg.load_params(params_file, [*preset_overrides(preset), *args.overrides] if preset else args.overrides,
                             given)
    outputs = {}  # flag: (value, kind), each a file (a FileOutput) or a FOLDER
    if args.command == "evaluate":
        from mnist_job.evaluation.evaluate import METRICS_FILE

        outputs = {"--metrics": (args.metrics, METRICS_FILE), "--plots": (args.plots, FOLDER)}
    check_stage_paths(args.command, params, runtime, outputs)  # before anything is written or removed
    return params


def _say(message: str) -> None:
    print(message, flush=True)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_on_stdout(verbose=getattr(args, "verbose", False))
    # MLflow's client prints "View run ... at: <url>" on stdout whenever it ends a run on an HTTP server: in
    # the middle of compare's table, after train's summary. Each command prints where its runs are itself.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
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
