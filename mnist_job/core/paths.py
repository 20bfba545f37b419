"""Paths from configuration are checked before anything is written or removed.

A mistyped value must not be able to destroy data: ``--set data.dir=.`` once made ``prepare`` move
the whole project aside and delete it, and ``evaluate --metrics params.yaml`` overwrote the params. Every
path the job writes to, from params, flags or the environment, passes ``confine`` (a folder) or
``confine_file`` (a file) first:

* a relative path stays inside the project: no ``..`` out of it, not the project itself, nothing
  under ``.git`` or ``.dvc``;
* an absolute path only where the field allows one (outputs, checkpoints, caches), and never ``/``,
  a system folder, the home folder, or a folder that holds the project;
* a file lies in a folder that a folder output could be (so never directly in ``/``, the home folder or
  the project's top folder), is never one of the project's own files (``PROJECT_FILES``, a ``*.dvc`` file,
  a file git tracks when the project is a git checkout, unless the job wrote it), and replaces an
  existing file only when that file is one the job wrote: its ``FileOutput`` says how to tell (the metrics file: a JSON object of
  ``evaluate``'s keys). Links and folders at a file's path are never replaced.

What code then removes, it removes only where it can prove it wrote it (prepare.py: a dataset's
``manifest.json``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_job.core.errors import InvalidInput

# Nothing the job writes may be one of these folders or lie below the first group.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr")
SYSTEM_FOLDERS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp", "/var", "/var/tmp")
PROTECTED_IN_PROJECT = (".git", ".dvc")
# The project's own files (relative to its top folder): no file output may be one, tracked by git or not.
PROJECT_FILES = ("params.yaml", "dvc.yaml", "dvc.lock", "pyproject.toml", ".dvcignore", ".gitignore")

FOLDER = "folder"  # the kind of an output that is a folder the command writes its files into


@dataclass(frozen=True)
class FileOutput:
    """The kind of an output that is one file. ``ours(path)`` tells whether the existing file at ``path`` is
    one this output's command wrote (it may be replaced); ``what`` names such a file in a refusal."""

    what: str
    ours: Callable[[Path], bool]


def confine(value: str | Path, field: str, project_dir: Path, allow_absolute: bool = False) -> Path:
    """``value`` as an absolute folder the job may write to, or InvalidInput naming ``field``."""
    path, why = _place(value, project_dir.resolve(), allow_absolute)
    if why:
        raise InvalidInput(f"{field}: {str(value)!r} {why}")
    return path


def confine_file(value: str | Path, field: str, project_dir: Path, kind: FileOutput) -> Path:
    """``value`` as an absolute file path the job may write (an absolute one allowed), or InvalidInput naming
    ``field``: its folder passes ``confine``, and the file is neither one of the project's own nor an existing
    file that ``kind`` does not recognise as one the job wrote."""
    project = project_dir.resolve()
    raw = _expand(value)
    if raw.name in ("", ".", ".."):
        raise InvalidInput(f"{field}: {str(value)!r} must name a file")
    folder, why = _place(raw.parent, project, allow_absolute=True)
    path = folder / raw.name
    own = _project_file(path, project, kind)
    if own:
        raise InvalidInput(f"{field}: {str(value)!r} {own}; refusing to write it")
    if folder == project:
        raise InvalidInput(f"{field}: {str(value)!r} lies in the project's top folder, where only the project's own "
                           "files belong; name a file in a folder (e.g. outputs/)")
    if why:
        raise InvalidInput(f"{field}: {str(value)!r} lies in {str(raw.parent)!r}, which {why}")
    why = _not_replaceable(path, kind)
    if why:
        raise InvalidInput(f"{field}: {str(value)!r} {why}; refusing to replace it")
    return path


def _expand(value: str | Path) -> Path:
    return Path(value).expanduser() if str(value).startswith("~") else Path(value)


def _place(value: str | Path, project: Path, allow_absolute: bool) -> tuple[Path, str | None]:
    """The absolute folder ``value`` names, and why the job may not write there (None: it may)."""
    raw = _expand(value)
    if raw.is_absolute() and not allow_absolute:
        return raw, f"must be a path inside the project (relative to {project})"
    path = (raw if raw.is_absolute() else project / raw).resolve()
    if not raw.is_absolute() and (path == project or not path.is_relative_to(project)):
        return path, (f"must name a folder inside the project {project}, "
                      "not the project itself or a place outside it")
    if path == project or not path.is_relative_to(project):
        refused = _refusal(path, project)
        return path, refused and f"is {refused}; refusing to write there"
    inside = path.relative_to(project).parts  # an absolute spelling of a place inside the project too
    if inside[0] in PROTECTED_IN_PROJECT:
        return path, f"lies in the project's {inside[0]} folder; refusing to write there"
    return path, None


def _refusal(path: Path, project: Path | None = None) -> str | None:
    if str(path) in SYSTEM_FOLDERS or any(path.is_relative_to(tree) for tree in SYSTEM_TREES):
        return "a system folder"
    if path == Path.home().resolve():
        return "the home folder"
    if project is not None and project.is_relative_to(path):
        return f"a folder that holds the project {project}"
    return None


def _project_file(path: Path, project: Path, kind: FileOutput) -> str | None:
    """Why ``path`` is one of the project's own files (see PROJECT_FILES), or None. A file git tracks is the
    project's unless the job wrote it: DVC users commit the metrics files of their pipeline (dvc.yaml)."""
    if not path.is_relative_to(project):
        return None
    inside = path.relative_to(project)
    if str(inside) in PROJECT_FILES:
        return f"is the project's {inside}"
    if path.suffix == ".dvc":
        return "is a file DVC tracks data by (*.dvc)"
    if inside.parts and inside.parts[0] in PROTECTED_IN_PROJECT:
        return f"lies in the project's {inside.parts[0]} folder"
    if _git_tracks(project, inside) and not (path.is_file() and not path.is_symlink() and kind.ours(path)):
        return "is a file of the project that git tracks"
    return None


def _not_replaceable(path: Path, kind: FileOutput) -> str | None:
    """Why the job may not replace what is at ``path`` (a file not its own, a link, a folder), or None."""
    if path.is_symlink():
        return "is a link, not a file the job wrote"
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists() and not kind.ours(path):
        return f"is an existing file that is not {kind.what}"
    return None


def _git_tracks(project: Path, inside: Path) -> bool:
    """Whether git tracks ``inside`` (relative to the project); False where there is no git or no checkout."""
    try:
        done = subprocess.run(["git", "-C", str(project), "ls-files", "--error-unmatch", "--", str(inside)],
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@dataclass(frozen=True)
class Output:
    """A path a command writes or pulls into, declared by the command (mnist_job/cli/commands.py) or by its
    stage (``TRAIN_OUTPUTS`` in training/driver.py, ...), so the check below needs no command's name.

    ``field`` names it in a refusal (a params key, a flag, an environment variable); ``where(args, params,
    runtime)`` is its value for this call, None when the call does not write it; ``own_path``: no other such
    output may share the path (two files at one path would overwrite each other)."""

    field: str
    where: Callable[[Any, Any, Any], str | Path | None]
    kind: FileOutput | str = FOLDER
    allow_absolute: bool = True
    own_path: bool = False


def check_outputs(outputs: Iterable[Output], args, params, runtime) -> None:
    """Every path of ``outputs`` for this call, checked at once, before anything is written or removed: one
    InvalidInput lists every problem."""
    project, problems = runtime.project_dir, []
    refused = _refusal(project.resolve())
    if refused:
        problems.append(f"MNIST_PROJECT_DIR: {str(project)!r} is {refused}; point it at the project folder")
    taken: dict[Path, str] = {}
    for output in outputs:
        value = output.where(args, params, runtime)
        if value is None:
            continue
        try:
            if output.kind == FOLDER:
                confine(value, output.field, project, output.allow_absolute)
            else:
                confine_file(value, output.field, project, output.kind)
        except InvalidInput as exc:
            problems.extend(exc.problems)
        if output.own_path:
            where = runtime.path(str(value)).resolve()
            if where in taken:
                problems.append(f"{output.field}: {str(value)!r} is where {taken[where]} goes too; give each output "
                                "its own path")
            taken.setdefault(where, output.field)
    if problems:
        raise InvalidInput(problems)
