"""The commands table (mnist_job/cli/commands.py): every command of the parser has one entry, every flag that
names a path the command writes is one of its declared outputs, and the path check knows no command by name."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_job.cli.commands import COMMANDS
from mnist_job.cli.parser import build_parser, output_path
from mnist_job.core import paths

PATHS_SOURCE = Path(paths.__file__).read_text()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def output_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The long option of every flag whose value is a path the command writes (parser.output_path)."""
    return {max(a.option_strings, key=len) for a in parser._actions if a.type is output_path}


def test_every_command_of_the_parser_has_one_entry_and_nothing_else():
    assert set(COMMANDS) == set(subcommands())


def test_every_output_flag_is_declared_and_every_declared_flag_exists():
    for name, parser in subcommands().items():
        declared = {o.field for o in COMMANDS[name].outputs if o.field.startswith("--")}
        assert declared == output_flags(parser), name


def test_the_check_can_fail_for_an_undeclared_output_flag():
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", type=output_path)
    parser.add_argument("--model", type=Path)  # an input: not an output
    assert output_flags(parser) == {"--report"}


def test_the_path_check_names_no_command():
    named = [name for name in COMMANDS if f'"{name}"' in PATHS_SOURCE or f"'{name}'" in PATHS_SOURCE]
    assert named == [], f"core/paths.py branches on commands {named}: declare their outputs in cli/commands.py"


def test_each_output_names_the_field_a_refusal_uses():
    known_prefixes = ("--", "data.", "train.", "tune.", "MNIST_")
    for name, command in COMMANDS.items():
        for output in command.outputs:
            assert output.field.startswith(known_prefixes), (name, output.field)
            assert output.kind == paths.FOLDER or isinstance(output.kind, paths.FileOutput), (name, output.field)
