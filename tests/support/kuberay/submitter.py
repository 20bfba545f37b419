"""The submitter: KubeRay's K8sJobMode Job pod, running the shell command KubeRay builds, in its own sandbox.

KubeRay v1.7.0 (BuildJobSubmitCommand): wait for the dashboard's
GCS health, ``ray job submit --no-wait`` unless ``ray job status`` finds the submission id already,
then ``ray job logs --follow``; its RayJob controller runs it as ``/bin/bash -ce -- "<command>"`` when the
submitter template has no command, and appends PYTHONUNBUFFERED, RAY_DASHBOARD_ADDRESS,
RAY_JOB_SUBMISSION_ID and the auth token env. The harness reads the job's status and logs through the
Jobs API only to report them (as the RayJob controller does), never to submit.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.kuberay.env import container_base_env, resolve_env, rewrite_pod_path, rewrite_token
from tests.support.kuberay.operator_builds import kube_suffix, submit_command, token_env
from tests.support.kuberay.pods import ClusterPlan, LocalRayCluster
from tests.support.kuberay.rendering import (
    Substitutions,
    console_scripts,
    groups,
    image_spec,
    ray_container,
    runtime_env_of,
    say,
)
from tests.support.kuberay.sandbox import pod_sandbox


def job_submission(rayjob: dict, pods, subs: Substitutions, overrides: tuple[str, ...] = ()) -> tuple[str, dict]:
    """(entrypoint, runtime_env) as the head pod sees the manifest's: paths this host lacks -> the pod's folder."""
    head = next(p for p in pods if p.role == "head").sandbox
    original = rayjob["spec"]["entrypoint"]
    words = [rewrite_token(w, head.prefixes, str(head.mount)) for w in shlex.split(original)]
    for before, after in zip(shlex.split(original), words, strict=True):
        if before != after:
            subs.add("entrypoint word", before, after, "image path -> the pod's folder")
    if words and words[0] in console_scripts():
        for override in overrides:
            words += ["--set", override]
            subs.add("entrypoint override", "(none)", f"--set {override}", "appended by the harness (MNIST_E2E_OVERRIDES)")
    runtime_env = runtime_env_of(rayjob)
    env_vars = {}
    for k, v in (runtime_env.get("env_vars") or {}).items():
        local = rewrite_pod_path(str(v), head.prefixes, str(head.mount))
        if local != v:
            subs.add(f"runtimeEnvYAML env_vars.{k}", v, local, "image path / emptyDir -> the pod's folder")
        env_vars[str(k)] = local
    return shlex.join(words), {**runtime_env, "env_vars": env_vars}


@dataclass
class JobOutcome:
    submission_id: str
    status: str
    message: str
    logs: str
    seconds: float
    log_file: Path
    submitter_log: str


def submit_and_follow(ray: LocalRayCluster, rayjob: dict, entrypoint: str, runtime_env: dict, log_dir: Path,
                      cap_s: float, echo: bool = True, subs: Substitutions | None = None) -> JobOutcome:
    """Run the submitter pod to its end; report the job's status and driver logs (Jobs API, read-only)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    plan: ClusterPlan = ray.plan
    subs = Substitutions() if subs is None else subs
    template = rayjob["spec"].get("submitterPodTemplate") or {
        "spec": {"containers": [{"name": "ray-job-submitter", **ray_container(groups(rayjob)[0][2])}]}}
    pod_spec = template["spec"]
    container = pod_spec["containers"][0]
    submission_id = f"{rayjob['metadata']['name']}-{kube_suffix()}"
    name = f"{rayjob['metadata']['name']}-{kube_suffix()}"  # the submitter Job's pod
    injected = [{"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "RAY_DASHBOARD_ADDRESS", "value": plan.dashboard_url},
                {"name": "RAY_JOB_SUBMISSION_ID", "value": submission_id},
                *token_env(plan.cluster if plan.token else None)]
    env = {**container_base_env(image_spec().env, name, plan.platform, plan.svc),
           **resolve_env(container, plan.platform, "submitter", injected)}
    sandbox = pod_sandbox(name, pod_spec, container, env, image_spec(), log_dir.parent, subs, plan.svc)
    command = submit_command(f"http://{plan.dashboard_url}", submission_id, entrypoint, runtime_env)
    if container.get("command"):  # K8sJobMode keeps a command the template sets
        argv = [*container["command"], *container.get("args", [])]
    else:
        local_address = f"http://{plan.svc.address(plan.dashboard_url)}"
        argv = ["/bin/bash", "-ce", "--", command.replace(f"http://{plan.dashboard_url}", local_address)]
        subs.add("submitter --address", f"http://{plan.dashboard_url}", local_address, "no cluster DNS")
    say(f"submitter pod {name}: {shlex.join(argv)}")
    limit = min(float(rayjob["spec"].get("activeDeadlineSeconds") or cap_s), cap_s)
    client = JobSubmissionClient(ray.cluster.dashboard, headers=ray.headers)
    started = time.monotonic()
    process = sandbox.start(argv, log_dir)
    log_file = log_dir / f"job-{submission_id}.log"
    seen, status, exited_at = 0, "PENDING", None
    while True:
        try:
            status = client.get_job_status(submission_id)
            logs = client.get_job_logs(submission_id)
        except Exception:  # noqa: BLE001  (not submitted yet: the submitter is still waiting or starting)
            logs = ""
        if len(logs) > seen:
            log_file.write_text(logs)
            if echo:
                for line in logs[seen:].splitlines():
                    print(f"  | {line}", flush=True)
            seen = len(logs)
        done = status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
        if done and not process.alive():
            break
        if not process.alive() and not done:  # `ray job logs --follow` ends with the job: its status may lag
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > 10:
                status = f"SUBMITTER_EXITED({process.popen.returncode})"
                break
        if time.monotonic() - started > limit:
            status = "DEADLINE_EXCEEDED"
            try:
                client.stop_job(submission_id)  # cleanup only: KubeRay would delete the cluster
            except Exception:  # noqa: BLE001
                pass
            break
        time.sleep(2)
    process.stop(timeout=5)
    sandbox.volumes.stop()
    try:
        info = client.get_job_info(submission_id)
        message, logs = info.message or "", client.get_job_logs(submission_id)
    except Exception as exc:  # noqa: BLE001
        message, logs = f"no such job: {exc}", ""
    log_file.write_text(logs)
    return JobOutcome(submission_id, str(getattr(status, "value", status)), message, logs,
                      time.monotonic() - started, log_file, process.tail(80))
