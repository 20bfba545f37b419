"""What the image gives a pod on the node agent (tests/support/node_agent/images.py): its /app files, its accounts.

The host's venv stands for the image's Python environment (same pinned packages); what it cannot stand for,
the owners and modes of the image's files, is replaced by what image/Dockerfile proves: its last USER runs the
package at build time, so that user and group, and only they, are known to read the environment.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from tests.support.kuberay.rendering import ROOT, ImageSpec

# The base image's own account (rayproject/ray: user `ray`, uid 1000, group 100 `users`, owner of its Python).
BASE_IMAGE_ACCOUNTS = ["ray:x:1000:100::/home/ray:/bin/bash"]


def image_passwd(dockerfile: Path = ROOT / "image" / "Dockerfile") -> str:
    """The image's /etc/passwd: this host's system accounts stand for the base image's, plus its `ray` account and
    every account the Dockerfile's `useradd` makes. Tools look their user up (DVC: getpwuid), so a uid without an
    account fails in the sandbox as it would in the pod."""
    made = []
    valued = {"--uid": "uid", "-u": "uid", "--gid": "gid", "-g": "gid", "--home-dir": "home", "-d": "home",
              "--shell": "shell", "-s": "shell"}
    for args in re.findall(r"useradd\s+([^&;|\n]+)", re.sub(r"\\\n\s*", " ", dockerfile.read_text())):
        words, opts = shlex.split(args), {"home": "/", "shell": "/bin/sh"}
        i = 0
        while i < len(words) - 1:
            if words[i] in valued:
                opts[valued[words[i]]] = words[i + 1]
                i += 1
            i += 1
        made.append(f"{words[-1]}:x:{opts['uid']}:{opts['gid']}::{opts['home']}:{opts['shell']}")
    taken = {line.split(":")[2] for line in BASE_IMAGE_ACCOUNTS + made}
    host = [line for line in Path("/etc/passwd").read_text().splitlines()
            if line.count(":") == 6 and line.split(":")[2] not in taken and (int(line.split(":")[2]) < 1000 or line.startswith("nobody:"))]
    return "\n".join(host + BASE_IMAGE_ACCOUNTS + made) + "\n"


def install_image_files(app: Path, image: ImageSpec) -> None:
    """What the image has in /app for the job: the Dockerfile's COPYs (minus the installed package), root-owned."""
    for rel in image.files:
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, app / rel)
    # RUN dvc config --local core.no_scm true && mkdir -p /app/.dvc/tmp
    (app / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    (app / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    for path in [app, *app.rglob("*")]:  # RUN chown -R root:root /app && chmod -R a+rX,go-w /app
        path.chmod(0o755 if path.is_dir() else 0o644)
