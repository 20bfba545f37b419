"""Paths from configuration are checked before anything is written or removed.

A mistyped value must not be able to destroy data: ``--set data.dir=.`` once made ``prepare`` move
the whole project aside and delete it. Every path the job writes to, from params, flags or the
environment, passes ``confine`` first:

* a relative path stays inside the project: no ``..`` out of it, not the project itself, nothing
  under ``.git`` or ``.dvc``;
* an absolute path only where the field allows one (outputs, checkpoints, caches), and never ``/``,
  a system folder, the home folder, or a folder that holds the project.

What code then removes, it removes only where it can prove it wrote it (prepare.py: a dataset's
``manifest.json``).
"""

from __future__ import annotations

from pathlib import Path

from mnist_job.core.errors import InvalidInput

# Nothing the job writes may be one of these folders or lie below the first group.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr")
SYSTEM_FOLDERS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp", "/var", "/var/tmp")
PROTECTED_IN_PROJECT = (".git", ".dvc")


def confine(value: str | Path, field: str, project_dir: Path, allow_absolute: bool = False) -> Path:
    """``value`` as an absolute path the job may write to, or InvalidInput naming ``field``."""
    project = project_dir.resolve()
    raw = Path(value).expanduser() if str(value).startswith("~") else Path(value)
    if raw.is_absolute() and not allow_absolute:
        raise InvalidInput(f"{field}: {str(value)!r} must be a path inside the project (relative to {project})")
    path = (raw if raw.is_absolute() else project / raw).resolve()
    if not raw.is_absolute():
        if path == project or not path.is_relative_to(project):
            raise InvalidInput(f"{field}: {str(value)!r} must name a folder inside the project {project}, "
                               "not the project itself or a place outside it")
    elif path.is_relative_to(project) and path != project:
        pass  # an absolute spelling of a place inside the project: the project rules below apply
    else:
        refused = _refusal(path, project)
        if refused:
            raise InvalidInput(f"{field}: {str(value)!r} is {refused}; refusing to write there")
        return path
    inside = path.relative_to(project).parts
    if inside and inside[0] in PROTECTED_IN_PROJECT:
        raise InvalidInput(f"{field}: {str(value)!r} lies in the project's {inside[0]} folder; refusing to write there")
    return path


def _refusal(path: Path, project: Path | None = None) -> str | None:
    if str(path) in SYSTEM_FOLDERS or any(path.is_relative_to(tree) for tree in SYSTEM_TREES):
        return "a system folder"
    if path == Path.home().resolve():
        return "the home folder"
    if project is not None and project.is_relative_to(path):
        return f"a folder that holds the project {project}"
    return None


def check_stage_paths(command: str, params, runtime, outputs: dict[str, Path] | None = None) -> None:
    """Every path ``command`` writes to (or pulls into), checked at once: one InvalidInput lists them all."""
    project, problems = runtime.project_dir, []
    refused = _refusal(project.resolve())
    if refused:
        problems.append(f"MNIST_PROJECT_DIR: {str(project)!r} is {refused}; point it at the project folder")

    def check(value, field: str, allow_absolute: bool) -> None:
        try:
            confine(value, field, project, allow_absolute)
        except InvalidInput as exc:
            problems.extend(exc.problems)

    if command == "fetch":
        check(params.data.raw_dir, "data.raw_dir", allow_absolute=False)
    if command == "prepare":
        check(params.data.dir, "data.dir", allow_absolute=True)
    if command in ("train", "pull-data", "evaluate") and (runtime.data_cache or command == "pull-data"):
        check(params.data.dir, "data.dir", allow_absolute=False)  # the DVC output that is pulled into the cache
        if runtime.data_cache:
            check(runtime.data_cache, "MNIST_DATA_CACHE", allow_absolute=True)
    if command == "train":
        check(params.train.output_dir, "train.output_dir", allow_absolute=True)
        if "://" not in params.train.storage_path:
            check(params.train.storage_path, "train.storage_path", allow_absolute=True)
    for field, value in (outputs or {}).items():
        check(value, field, allow_absolute=True)
    if problems:
        raise InvalidInput(problems)
