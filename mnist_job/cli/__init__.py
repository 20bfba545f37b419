"""``mnist-job``: one command per stage (fetch -> prepare -> train -> evaluate) and per use of the model
(promote, predict, serve) and of many runs (presets, compare, tune, ci-report).

parser.py holds the arguments, commands.py what each command does. Every subcommand takes ``--params FILE``
and ``--set key=value``; expected failures print one line and exit with the code from
mnist_job/core/errors.py: 2 invalid input, 3 service unreachable, 4 bad data.
"""

from mnist_job.cli.commands import console_main, main, run
from mnist_job.cli.parser import TRAIN_FLAGS, build_parser

__all__ = ["TRAIN_FLAGS", "build_parser", "console_main", "main", "run"]
