"""Every repository path that a docstring, comment or document names exists: a file that moved or went leaves no
pointer behind (README's layout, docs/, the charts' READMEs, the code's own comments)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = ("mnist_job", "tests", "loopback", "scripts", "bench", "docs", "charts", "k8s", "image", "mk", "cluster-tools",
       "requirements", ".ci", ".github")
# a path from one of the top folders; a wildcard, placeholder or template after it makes it a pattern, not a name
NAMED = re.compile(r"(?<![\w./-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./-]*\w)(?![-_]|\.?[\w*<{$\[])")
MEDIA_TYPES = re.compile(r"image/(png|jpeg|gif|webp|svg\+xml)")
TEXT = (".py", ".md", ".sh", ".mk", ".yaml", ".yml", ".toml", ".txt", ".tpl", "Makefile", "Dockerfile")


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in out.splitlines() if name.endswith(TEXT) and (ROOT / name).is_file()]


def exists(name: str) -> bool:
    """In the tree, an output the repository ignores (bench/results/...), or a module's attribute
    (loopback/services.start_s3)."""
    if (ROOT / name).exists() or MEDIA_TYPES.fullmatch(name) or name.endswith(".new"):
        return True
    if (ROOT / f"{name.rpartition('.')[0]}.py").is_file():
        return True
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=ROOT).returncode == 0


def missing_paths(text: str) -> set[str]:
    return {name for name in {m.group(1).rstrip(".") for m in NAMED.finditer(text)} if not exists(name)}


def test_every_named_repository_path_exists():
    problems = []
    for path in tracked_text_files():
        for name in sorted(missing_paths(path.read_text(errors="replace"))):
            problems.append(f"{path.relative_to(ROOT)}: {name}")
    assert not problems, "named but not in the repository:\n" + "\n".join(problems)
