"""The rendered charts, the image's model and the static contract between them and the package.

Modules: rendering (helm, the objects, the image's Dockerfile as data), image_model (what the image holds
and its user), env (a container's env as the kubelet resolves it), contract (static checks: the preflight).
The real cluster's node agent (tests/support/node_agent) runs the project's image from the same model.
"""

from __future__ import annotations

from tests.support.kuberay.contract import REQUIRED_ENV, entrypoint_params, preflight
from tests.support.kuberay.rendering import (
    ContractError,
    PlatformView,
    Substitutions,
    groups,
    ray_container,
    render_all,
)

__all__ = ["REQUIRED_ENV", "ContractError", "PlatformView", "Substitutions", "entrypoint_params", "groups",
           "preflight", "ray_container", "render_all"]
