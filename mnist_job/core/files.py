"""Writing files that a later run reads: whole or not at all.

A reader (a resumed driver, DVC, the next pull on the node) must never see half a file, so every such
file is written under a temporary name in the same folder, flushed to disk, and renamed into place:
a crash leaves the old file or the new one, plus at most a stray ``.NAME.*.tmp`` next to it.
``output_errors`` turns a write the filesystem refuses (read-only, permission denied, a file where a folder
is expected, a full disk) into one line naming the output and the reason, exit 2, instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mnist_job.core.errors import InvalidInput


def write_atomically(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def save_figure_atomically(fig, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG at ``path``, atomically (savefig itself writes in place)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_atomically(path, buffer.getvalue())


@contextlib.contextmanager
def output_errors(field: str, path: Path) -> Iterator[None]:
    """An OSError inside, as InvalidInput naming ``field``, the file or folder and the system's reason. Exit 2:
    that path cannot be written and retrying will not change it; the user points the output elsewhere."""
    try:
        yield
    except OSError as exc:
        failed = Path(exc.filename) if isinstance(exc.filename, str | Path) else path
        if failed.name.startswith(".") and failed.name.endswith(".tmp"):  # write_atomically's temporary name
            failed = failed.with_name(failed.name[1:-4].rsplit(".", 1)[0])
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir, or a path through a file, where a folder should be
            reason = f"{exc.filename} is not a folder" if exc.filename else "a file stands where a folder should be"
            failed = path
        raise InvalidInput(f"{field}: cannot write {failed}: {reason}") from None
