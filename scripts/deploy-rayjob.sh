#!/usr/bin/env bash
# Render the RayJob chart for one deployment, check the Secrets its pods read, and hand
# it to `mnist-job submit --wait`, which applies it and follows it to its end; exit 0
# only when the Ray job SUCCEEDED.
#
# Each deployment is its own RayJob object named <release>-<UTC yyyymmdd-hhmmss>:
# the chart makes that name the Ray Train run name, so the run and its checkpoint
# prefix (s3://<bucket>/<storagePrefix>/<name>) are new. KubeRay's own retries
# (lifecycle.backoffLimit) reuse the object, keep the name and so resume. --name
# redeploys an earlier run by name (its RayJob is replaced; training resumes from
# its checkpoints unless that run already finished).
#
#   scripts/deploy-rayjob.sh [--profile cpu-kind|gpu] [--image REPOSITORY] [--name NAME]
#                            [--render-only] [-- extra helm template args...]
#   env: NAMESPACE, RAYJOB_RELEASE, PLATFORM_RELEASE (defaults in project.env), PROFILE, IMAGE, TIMEOUT_S (7200),
#        DEPLOY_TIMESTAMP (yyyymmdd-hhmmss instead of the current UTC time),
#        KUBECTL (the kubectl to run; default: .tools/bin/kubectl, else PATH),
#        MNIST_JOB (the mnist-job to run; default: the project's .venv, else PATH)
#
# --image sets the repository of every image (head, submitter, workers); the
# tags stay the profile's (<version>-cpu / <version>-gpu, dev-cpu for kind).
# Before applying: the S3 credentials Secret must exist, and a Secret marked as
# development credentials (kuberay-mnist/development-credentials=true, the kind
# platform's) is refused unless the profile allows it (cpu-kind). Once the head
# pod runs: it must run with Ray token authentication (RAY_AUTH_MODE=token),
# else the RayJob is deleted (mnist-job submit checks it).
# Exit: 0 succeeded, 1 the job failed or timed out, 2 invalid arguments,
# 3 no cluster, no KubeRay CRD, no credentials Secret or no mnist-job, 4 refused:
# development credentials on a production profile, or a head without token auth.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL=deploy-rayjob RESOURCE=rayjob RESOURCE_TITLE=RayJob
TIMEOUT_S=${TIMEOUT_S:-7200}
# Arguments, rendering and the Secrets check: shared with deploy-rayservice.sh.
# shellcheck source=SCRIPTDIR/deploy-common.sh
source "$ROOT/scripts/deploy-common.sh"
deploy_parse_args "$@"

# The name must stay a DNS-1035 label of at most 47 characters (KubeRay), with
# 16 characters of timestamp appended.
[[ "$RAYJOB_RELEASE" =~ ^[a-z]([-a-z0-9]{0,29}[a-z0-9])?$ ]] \
  || bad "RAYJOB_RELEASE '$RAYJOB_RELEASE' must be a lowercase DNS label of at most 31 characters"
if [[ -z "$name" ]]; then
  stamp=${DEPLOY_TIMESTAMP:-$(date -u +%Y%m%d-%H%M%S)}
  [[ "$stamp" =~ ^[0-9]{8}-[0-9]{6}$ ]] || bad "DEPLOY_TIMESTAMP must be yyyymmdd-hhmmss (got '$stamp')"
  name="$RAYJOB_RELEASE-$stamp"
fi
deploy_render "$RAYJOB_RELEASE"
MNIST_JOB=${MNIST_JOB:-$ROOT/.venv/bin/mnist-job}
[[ -x "$MNIST_JOB" ]] || MNIST_JOB=$(command -v mnist-job) \
  || { echo "$TOOL: mnist-job not found: run make venv (or pip install the project)" >&2; exit 3; }
deploy_connect
deploy_check_secrets

# A RayJob is not re-run by `apply` once finished: replace an earlier one of this name.
if kubectl -n "$NAMESPACE" get rayjob "$name" >/dev/null 2>&1; then
  echo "deleting the previous RayJob $name"
  kubectl -n "$NAMESPACE" delete rayjob "$name" --wait=true
fi
# Applying and waiting are `mnist-job submit`'s (mnist_job/cluster/submit.py): it follows the driver's lines,
# decides the outcome from the RayJob, its submitter Job, their pods and events together, names a failure's
# first cause, refuses a head without Ray token authentication (exit 4, RayJob deleted) and logs the run's cost
# to MLflow. Its exit code is this script's.
status=0
"$MNIST_JOB" submit -f "$manifest" -n "$NAMESPACE" --wait --timeout "$TIMEOUT_S" || status=$?

echo
echo "Driver logs:  mnist-job logs $name -n $NAMESPACE   (or: kubectl -n $NAMESPACE logs job/$name)"
echo "MLflow:       kubectl -n $NAMESPACE port-forward svc/$PLATFORM_RELEASE-mlflow 5000:5000  ->  http://localhost:5000 (experiment 'mnist', run '$name')"
echo "Redeploy:     $0 --profile $PROFILE --name $name   (same run: resumes from its checkpoints)"
exit "$status"
