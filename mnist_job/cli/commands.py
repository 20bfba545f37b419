"""``mnist-job``'s commands: one small function each, in a table that also says what each one writes.

A command is ``(args, runtime) -> exit code``. Its entry in ``COMMANDS`` declares its outputs (the stage's own,
e.g. ``TRAIN_OUTPUTS``, and its output flags): ``_params`` checks every one of them (mnist_job/core/paths.py)
before the command writes or removes anything, so the check knows no command's name. Adding a command is one
function and one entry; tests/code/test_commands.py fails when a flag the command writes to is not declared.

Expected failures print one line (or one list of invalid fields) and exit with the code from
mnist_job/core/errors.py: 2 invalid input, 3 service unreachable, 4 bad data.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mnist_job.cli.parser import DATA_FLAGS, TRAIN_FLAGS, TUNE_FLAGS, build_parser
from mnist_job.core import config as cfg
from mnist_job.core.console import show_on_stdout
from mnist_job.core.errors import InvalidInput, JobError
from mnist_job.core.paths import FOLDER, Output, check_outputs
from mnist_job.core.presets import describe, preset_names, preset_overrides
from mnist_job.data.dvc_store import CACHED_DATA_OUTPUTS, PULL_OUTPUTS, ensure_dataset
from mnist_job.data.fetch import FETCH_OUTPUTS, fetch
from mnist_job.data.prepare import PREPARE_OUTPUTS, prepare
from mnist_job.data.s3 import ensure_buckets
from mnist_job.evaluation.evaluate import METRICS_FILE, evaluate_saved_model
from mnist_job.experiments.baseline import BASELINE_FILE, ci_report
from mnist_job.experiments.compare import compare_command
from mnist_job.experiments.tune import TUNE_OUTPUTS, run_study, summary
from mnist_job.serving.app import READY_FILE, serve_forever
from mnist_job.serving.predict import model_uri, predict_files
from mnist_job.tracking.client import mlflow_client
from mnist_job.tracking.registry import CHAMPION, promote
from mnist_job.tracking.runs import check_tracking_server, resolve_tracking_uri
from mnist_job.training.driver import run_training
from mnist_job.training.planning import TRAIN_OUTPUTS


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace, cfg.Runtime], int]
    outputs: tuple[Output, ...] = ()  # every path it writes or pulls into
    flags: dict | None = None  # its typed flags that set params (cli/parser.py)


def _params(args, runtime: cfg.Runtime) -> cfg.Params:
    """The params of this call, validated once, and every output the command declares checked."""
    command = COMMANDS[args.command]
    params_file = args.params
    if params_file is None and (runtime.project_dir / "params.yaml").is_file():
        params_file = runtime.project_dir / "params.yaml"
    given = {key: getattr(args, name) for name, (_, key, _) in (command.flags or {}).items()}
    preset = getattr(args, "preset", None)
    overrides = [*preset_overrides(preset), *args.overrides] if preset else args.overrides
    params = cfg.load_params(params_file, overrides, given)
    check_outputs(command.outputs, args, params, runtime)  # before anything is written or removed
    return params


def _say(message: str) -> None:
    print(message, flush=True)


def ensure_buckets_command(args, runtime: cfg.Runtime) -> int:
    ensure_buckets(args.bucket, runtime.s3_endpoint, args.timeout)
    return 0


def fetch_command(args, runtime: cfg.Runtime) -> int:
    params = _params(args, runtime)
    fetch(params.data, runtime.path(params.data.raw_dir), force=args.force)
    return 0


def prepare_command(args, runtime: cfg.Runtime) -> int:
    params = _params(args, runtime)
    prepare(runtime.path(params.data.raw_dir), runtime.path(params.data.dir), force=args.force,
            transform=args.transform)
    return 0


def pull_data_command(args, runtime: cfg.Runtime) -> int:
    params = _params(args, runtime)
    if runtime.data_cache is None:
        raise InvalidInput("MNIST_DATA_CACHE: set it to the folder the dataset should be pulled into")
    _say(f"dataset ready: {ensure_dataset(params.data, runtime)}")
    return 0


def train_command(args, runtime: cfg.Runtime) -> int:
    result = run_training(_params(args, runtime), runtime, verbose=args.verbose)
    for line in result.summary_lines():
        _say(line)
    return 0


def compare_runs_command(args, runtime: cfg.Runtime) -> int:
    params = _params(args, runtime)
    _say(compare_command(params, runtime, args.run_ids, champion=args.champion, last=args.last, tag=args.tag,
                         experiment=args.experiment, out_dir=args.out and runtime.path(str(args.out)),
                         log=not args.no_log))
    return 0


def tune_command(args, runtime: cfg.Runtime) -> int:
    _say(summary(run_study(_params(args, runtime), runtime)))
    return 0


def ci_report_command(args, runtime: cfg.Runtime) -> int:
    check_outputs(COMMANDS["ci-report"].outputs, args, None, runtime)  # it has no params of its own
    report, code = ci_report(runtime, runtime.path(str(args.baseline)), args.run, args.refresh)
    _say(report)
    return code


def presets_command(args, runtime: cfg.Runtime) -> int:
    for name in preset_names():
        args.preset = name
        try:  # a preset that does not validate on top of the params file fails here, naming its key
            _params(args, runtime)
        except InvalidInput as exc:
            raise InvalidInput([f"preset {name}: {problem}" for problem in exc.problems]) from None
        settings = ", ".join(item.replace("=", ": ", 1) for item in preset_overrides(name)) or "no changes"
        _say(f"{name:<14} {describe(name)}\n{'':<14} {settings}")
    return 0


def evaluate_command(args, runtime: cfg.Runtime) -> int:
    params = _params(args, runtime)
    evaluation = evaluate_saved_model(params, runtime, runtime.path(str(args.model)),
                                      runtime.path(str(args.metrics)), runtime.path(str(args.plots)))
    _say(f"test accuracy: {evaluation.accuracy:.4f} on {evaluation.count} images; wrote {args.metrics}")
    return 0


def _registry(args, runtime: cfg.Runtime):
    """(params, the registered model's name, tracking URI, client) of a command that reads the registry."""
    params = _params(args, runtime)
    tracking_uri = resolve_tracking_uri(runtime)
    check_tracking_server(tracking_uri)
    return params, args.model or params.mlflow.registered_model, tracking_uri, mlflow_client(tracking_uri)


def promote_command(args, runtime: cfg.Runtime) -> int:
    _, name, _, client = _registry(args, runtime)
    _say(f"{name}@{CHAMPION} -> version {promote(client, name, args.version)}")
    return 0


def predict_command(args, runtime: cfg.Runtime) -> int:
    _, name, tracking_uri, client = _registry(args, runtime)
    _say(predict_files(client, tracking_uri, name, args.inputs, args.invert, args.version, args.run, args.json))
    return 0


def serve_command(args, runtime: cfg.Runtime) -> int:
    _, name, tracking_uri, client = _registry(args, runtime)
    uri = model_uri(client, name, args.version, args.run)
    serve_forever(runtime, tracking_uri, uri, args.host, args.port, args.num_cpus,
                  follow_s=args.follow_champion_s, ready_file=args.ready_file)
    return 0


def submit_command(args, runtime: cfg.Runtime) -> int:
    from mnist_job.cluster.submit import submit  # the kubernetes client: 0.2 s that no other command needs

    return submit(args.manifest, args.namespace, args.wait, args.timeout, args.stuck_after, runtime.tracking_uri,
                  say=_say, in_cluster=runtime.kube_in_cluster)


def status_command(args, runtime: cfg.Runtime) -> int:
    from mnist_job.cluster.submit import status

    return status(args.name, args.namespace, args.stuck_after, say=_say, in_cluster=runtime.kube_in_cluster)


def logs_command(args, runtime: cfg.Runtime) -> int:
    from mnist_job.cluster.submit import logs

    return logs(args.name, args.namespace, args.follow, say=_say, in_cluster=runtime.kube_in_cluster)


def _flag(name: str) -> Callable:
    """``where`` of an output given by a flag: the flag's value (None when the flag is not given)."""
    return lambda args, params, runtime: getattr(args, name)


def _written_when_refreshed(args, params, runtime):
    return args.baseline if args.refresh else None  # else ci-report only reads it


COMMANDS: dict[str, Command] = {
    "fetch": Command(fetch_command, FETCH_OUTPUTS, DATA_FLAGS),
    "prepare": Command(prepare_command, PREPARE_OUTPUTS),
    "pull-data": Command(pull_data_command, PULL_OUTPUTS),
    "train": Command(train_command, TRAIN_OUTPUTS, TRAIN_FLAGS),
    "presets": Command(presets_command),
    "evaluate": Command(evaluate_command, (*CACHED_DATA_OUTPUTS,
                                   Output("--metrics", _flag("metrics"), METRICS_FILE, own_path=True),
                                   Output("--plots", _flag("plots"), FOLDER, own_path=True))),
    "compare": Command(compare_runs_command, (Output("--out", _flag("out")),)),
    "tune": Command(tune_command, TUNE_OUTPUTS, TUNE_FLAGS),
    "ci-report": Command(ci_report_command, (Output("--baseline", _written_when_refreshed, BASELINE_FILE),)),
    "promote": Command(promote_command),
    "predict": Command(predict_command),
    "serve": Command(serve_command, (Output("--ready-file", _flag("ready_file"), READY_FILE),)),
    "submit": Command(submit_command),
    "status": Command(status_command),
    "logs": Command(logs_command),
    "ensure-buckets": Command(ensure_buckets_command),
}


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_on_stdout(verbose=getattr(args, "verbose", False))
    # MLflow's client prints "View run ... at: <url>" on stdout whenever it ends a run on an HTTP server: in
    # the middle of compare's table, after train's summary. Each command prints where its runs are itself.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return COMMANDS[args.command].run(args, cfg.Runtime.from_env())


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> None:
    """The ``mnist-job`` executable: ``main``, then the exit handlers, then exit without Python's teardown.

    A command has closed what it opened when it returns (Ray shut down, MLflow runs ended, files written
    atomically), and the exit handlers (logging's, MLflow's, Ray's) still run here. What is skipped is the
    interpreter freeing every object of torch, Ray and MLflow one by one: about 2 s after a training run,
    which the user waits for (bench/commands.py times each command to its exit). A thread still at work
    (not a daemon) gets the usual exit, which waits for it.
    """
    code = main()
    if any(thread.is_alive() and not thread.daemon for thread in threading.enumerate()
           if thread is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what Python runs before its teardown: the one step of it kept
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code or 0))
