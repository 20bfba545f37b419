"""Writing files that a later run reads: whole or not at all.

A reader (a resumed driver, DVC, the next pull on the node) must never see half a file, so every such
file is written under a temporary name in the same folder, flushed to disk, and renamed into place:
a crash leaves the old file or the new one, plus at most a stray ``.NAME.*.tmp`` next to it.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path


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
