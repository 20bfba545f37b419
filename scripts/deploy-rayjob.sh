#!/usr/bin/env bash
# Render the RayJob chart for one deployment, apply it, and wait until KubeRay
# says it ended; exit 0 only when the Ray job SUCCEEDED.
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
#   env: NAMESPACE, RAYJOB_RELEASE, PLATFORM_RELEASE (defaults in project.env), PROFILE, IMAGE, TIMEOUT_S (7200), POLL_S (10),
#        DEPLOY_TIMESTAMP (yyyymmdd-hhmmss instead of the current UTC time),
#        KUBECTL (the kubectl to run; default: .tools/bin/kubectl, else PATH)
#
# --image sets the repository of every image (head, submitter, workers); the
# tags stay the profile's (<version>-cpu / <version>-gpu, dev-cpu for kind).
# Before applying: the S3 credentials Secret must exist, and a Secret marked as
# development credentials (kuberay-mnist/development-credentials=true, the kind
# platform's) is refused unless the profile allows it (cpu-kind). Once the head
# pod runs: it must run with Ray token authentication (RAY_AUTH_MODE=token),
# else the RayJob is deleted.
# Exit: 0 succeeded, 1 the job failed or timed out, 2 invalid arguments,
# 3 no cluster or no KubeRay CRD or no credentials Secret, 4 refused:
# development credentials on a production profile, or a head without token auth.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL=deploy-rayjob RESOURCE=rayjob RESOURCE_TITLE=RayJob
TIMEOUT_S=${TIMEOUT_S:-7200}
# Arguments, rendering, the Secrets check and the head's token-auth check: shared with deploy-rayservice.sh.
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
deploy_connect
deploy_check_secrets

# A RayJob is not re-run by `apply` once finished: replace an earlier one of this name.
if kubectl -n "$NAMESPACE" get rayjob "$name" >/dev/null 2>&1; then
  echo "deleting the previous RayJob $name"
  kubectl -n "$NAMESPACE" delete rayjob "$name" --wait=true
fi
kubectl -n "$NAMESPACE" apply -f "$manifest"

# Terminal jobDeploymentStatus values of KubeRay 1.7: Complete and Failed (the
# operator's IsJobDeploymentTerminal), and ValidationFailed (the spec was rejected;
# the operator stops reconciling it). Retrying, Suspended, Waiting are not terminal.
echo "waiting for RayJob $NAMESPACE/$name (timeout ${TIMEOUT_S}s)..."
deadline=$((SECONDS + TIMEOUT_S))
last=""
while :; do
  # One read of both fields; a failed read (the API server restarting, a network blip) is said as such and
  # retried, not shown as a RayJob without status.
  if state=$(kubectl -n "$NAMESPACE" get rayjob "$name" \
    -o 'jsonpath={.status.jobDeploymentStatus}{" "}{.status.jobStatus}' 2>&1); then
    read -r deploy job <<<"$state" || true
    now="deployment=${deploy:-<none>} job=${job:-<none>}"
  else
    deploy="" job=""
    now="cannot read RayJob $name, retrying: $(head -n 1 <<<"$state")"
  fi
  if [[ "$now" != "$last" ]]; then
    printf '%s  %s\n' "$(date +%H:%M:%S)" "$now"
    last=$now
  fi
  if ((!head_auth_checked)); then check_head_auth; fi
  case "$deploy" in
    Complete | Failed | ValidationFailed) break ;;
  esac
  if ((SECONDS >= deadline)); then
    echo "timed out after ${TIMEOUT_S}s (the RayJob goes on: kubectl -n $NAMESPACE delete rayjob $name)" >&2
    deploy=Timeout
    break
  fi
  sleep "$POLL_S"
done

echo
echo "Driver logs:  kubectl -n $NAMESPACE logs job/$name        (the submitter tails the Ray job's logs)"
echo "MLflow:       kubectl -n $NAMESPACE port-forward svc/$PLATFORM_RELEASE-mlflow 5000:5000  ->  http://localhost:5000 (experiment 'mnist', run '$name')"
echo "Redeploy:     $0 --profile $PROFILE --name $name   (same run: resumes from its checkpoints)"

job=$(get '{.status.jobStatus}')
if [[ "$deploy" == "Complete" && "$job" == "SUCCEEDED" ]]; then
  echo "RayJob $name: SUCCEEDED"
  exit 0
fi
echo "RayJob $name did not succeed: jobDeploymentStatus=$deploy jobStatus=${job:-<none>}" >&2
echo "  reason:  $(get '{.status.reason}')" >&2
echo "  message: $(get '{.status.message}')" >&2
exit 1
