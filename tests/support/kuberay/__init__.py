"""A local KubeRay: the rendered charts run as pods (read-only root, declared volumes, the pod's user and env).

Modules: rendering (helm, the objects, the image), env (the kubelet's env resolution, local rewrites),
operator_builds (the commands, containers and env KubeRay adds), sandbox (pods and their containers in
private mount namespaces), platform (S3 stand-in, bucket Job, MLflow), pods (the RayCluster's nodes),
submitter (KubeRay's submitter Job), contract (static checks).
The e2e tests (tests/e2e) drive it; what it does not reproduce is listed in docs/kubernetes.md.
"""

from __future__ import annotations

import json
import os

from tests.support.kuberay.contract import REQUIRED_ENV, entrypoint_params, preflight
from tests.support.kuberay.platform import LocalPlatform, start_platform
from tests.support.kuberay.pods import LocalRayCluster, RayPod, plan_cluster, plan_pods, start_ray
from tests.support.kuberay.rendering import (
    ContractError,
    Phases,
    PlatformView,
    Substitutions,
    groups,
    ray_container,
    render_all,
)
from tests.support.kuberay.submitter import JobOutcome, job_submission, submit_and_follow

# Overrides the harness may append to the entrypoint (each printed as a substitution); none by
# default: the CPU profile runs as rendered.
ENTRYPOINT_OVERRIDES = tuple(o for o in os.environ.get("MNIST_E2E_OVERRIDES", "").split(",") if o)
# The harness's own cap on the job, under the manifest's activeDeadlineSeconds (CI must stay fast).
JOB_CAP_S = float(os.environ.get("MNIST_E2E_JOB_CAP_S", "600"))

__all__ = ["REQUIRED_ENV", "ContractError", "JobOutcome", "LocalPlatform", "LocalRayCluster", "Phases",
           "PlatformView", "RayPod", "Substitutions", "entrypoint_params", "groups", "job_submission",
           "plan_cluster", "plan_pods", "preflight", "ray_container", "render_all", "start_platform", "start_ray",
           "submit_and_follow"]


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
