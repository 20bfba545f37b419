"""Which images this node can run, and what stands for each (no image can be pulled here).

Each entry maps an image repository to what runs instead, and says why it is faithful enough:

* the project's image (a repository named ``kuberay-mnist``, any registry or tag): this host's venv holds the
  same pinned packages; its /app files, ENV, USER and WORKDIR are read from image/Dockerfile
  (tests/support/kuberay/rendering.py ``image_spec``), its accounts from the Dockerfile's ``useradd``s;
* MinIO (``minio/minio``): ``moto_server`` behind MinIO's health paths (minio_standin.py); it takes any
  credentials and keeps buckets in memory;
* MinIO's client (``minio/mc``): the ``mc`` subcommands the platform chart runs, on moto's S3 and IAM
  (mc_standin.py).

Any other image fails as an image that cannot be pulled does: the container waits with ``ErrImagePull``.

A memory limit is enforced (memory.py) for the project's image, whose stand-in runs the same Python and packages;
not for the MinIO and mc stand-ins: moto's and the stand-ins' memory is not MinIO's, so the chart's limits for
MinIO say nothing about them.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kuberay.image_model import image_passwd, install_image_files
from tests.support.kuberay.rendering import ROOT, VENV_BIN, image_spec

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageNotRunnable(Exception):
    """The node cannot run this image (the kubelet's ErrImagePull)."""


@dataclass(frozen=True)
class Image:
    reference: str
    stands_for: str  # what runs instead, for the agent's log
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    workdir: str
    files: Callable[[Path], None] = field(repr=False)  # writes the image's own files under a root folder
    limits_apply: bool = True  # whether its memory limit is enforced (memory.py): not for a stand-in

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """Kubernetes' rule: ``command`` replaces the entrypoint, ``args`` the cmd (and a command drops the cmd)."""
        if command:
            return [*command, *(args or [])]
        return [*self.entrypoint, *(args if args else self.cmd)]


def repository(reference: str) -> str:
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def readable_venv(root: Path) -> None:
    """Folders above the venv and its interpreter that other users cannot enter (/root is 0700) open up in the
    image's view, as the image's Python environment is readable by its user (image/Dockerfile's USER owns it)."""
    for target in (VENV_BIN.resolve(), (VENV_BIN / "python").resolve()):
        for folder in reversed(target.parents):
            if folder != Path("/") and not folder.stat().st_mode & 0o001:
                (root / str(folder).lstrip("/")).mkdir(parents=True, exist_ok=True)
                (root / str(folder).lstrip("/")).chmod(0o755)


def project_files(root: Path) -> None:
    install_image_files(root / "app", image_spec())
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(image_passwd())
    readable_venv(root)


def project_image(reference: str) -> Image:
    spec = image_spec()
    env = {"PATH": f"{VENV_BIN}:{SYSTEM_PATH}", **spec.env}
    return Image(reference, f"this host's venv ({VENV_BIN.parent}) with image/Dockerfile's files and user",
                 [], ["bash"], env, spec.uid, spec.gid, spec.workdir, project_files)


def minio_image(reference: str) -> Image:
    def files(root: Path) -> None:
        readable_venv(root)

    entrypoint = [str(VENV_BIN / "python"), "-m", "tests.support.node_agent.minio_standin"]
    env = {"PATH": SYSTEM_PATH, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return Image(reference, "moto_server behind MinIO's health paths (tests/support/node_agent/minio_standin.py)",
                 entrypoint, ["server", "/data"], env, 0, 0, "/", files, False)  # MinIO's image has no USER


def mc_image(reference: str) -> Image:
    def files(root: Path) -> None:
        readable_venv(root)
        mc = root / "usr" / "bin" / "mc"
        mc.parent.mkdir(parents=True, exist_ok=True)
        mc.write_text(f'#!/bin/sh\nexec {VENV_BIN / "python"} -m tests.support.node_agent.mc_standin "$@"\n')
        mc.chmod(0o755)

    env = {"PATH": SYSTEM_PATH, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return Image(reference, "an mc stand-in for the chart's subcommands (tests/support/node_agent/mc_standin.py)",
                 ["mc"], [], env, 0, 0, "/", files, False)


IMAGES: dict[str, Callable[[str], Image]] = {
    "kuberay-mnist": project_image,
    "minio/minio": minio_image,
    "minio/mc": mc_image,
}


def resolve(reference: str) -> Image:
    repo = repository(reference)
    for suffix, make in IMAGES.items():
        if repo == suffix or repo.endswith("/" + suffix):
            return make(reference)
    raise ImageNotRunnable(f"image {reference!r} cannot be pulled here: this node runs only "
                           f"{', '.join(IMAGES)} (tests/support/node_agent/images.py)")


def home_of(uid: int, image_root: Path) -> str:
    """HOME as a runtime sets it when the pod does not: the user's home in the image's /etc/passwd, else /."""
    passwd = image_root / "etc" / "passwd"
    lines = passwd.read_text().splitlines() if passwd.exists() else []
    for line in lines:
        parts = line.split(":")
        if len(parts) == 7 and parts[2] == str(uid):
            return parts[5]
    try:
        return pwd.getpwuid(uid).pw_dir if not lines else "/"
    except KeyError:
        return "/"
