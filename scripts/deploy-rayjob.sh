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
# NAMESPACE, RAYJOB_RELEASE, PLATFORM_RELEASE and the telemetry switches: project.env, unless set
# shellcheck disable=SC1091
source "$ROOT/scripts/project-env.sh"
PROFILE=${PROFILE:-cpu-kind}
IMAGE=${IMAGE:-}
TIMEOUT_S=${TIMEOUT_S:-7200}
POLL_S=${POLL_S:-10}
export PATH="$ROOT/.tools/bin:$PATH"
CHART="$ROOT/charts/kuberay-mnist-rayjob"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }
bad() { echo "deploy-rayjob: $*" >&2; exit 2; }

name=""
render_only=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile | --image | --name) [[ $# -ge 2 && -n "$2" ]] || bad "$1 needs a value" ;;
  esac
  case "$1" in
    --profile) PROFILE=$2; shift 2 ;;
    --image) IMAGE=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --render-only) render_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage; bad "unknown argument '$1'" ;;
  esac
done

case "$PROFILE" in
  gpu) values=() ;;
  cpu-kind) values=(-f "$CHART/values-cpu-kind.yaml") ;;
  *) bad "PROFILE must be cpu-kind or gpu (got '$PROFILE')" ;;
esac
[[ "$TIMEOUT_S" =~ ^[1-9][0-9]*$ ]] || bad "TIMEOUT_S must be a positive number of seconds (got '$TIMEOUT_S')"
[[ "$POLL_S" =~ ^[1-9][0-9]*$ ]] || bad "POLL_S must be a positive number of seconds (got '$POLL_S')"
# The name must stay a DNS-1035 label of at most 47 characters (KubeRay), with
# 16 characters of timestamp appended.
[[ "$RAYJOB_RELEASE" =~ ^[a-z]([-a-z0-9]{0,29}[a-z0-9])?$ ]] \
  || bad "RAYJOB_RELEASE '$RAYJOB_RELEASE' must be a lowercase DNS label of at most 31 characters"
if [[ -z "$name" ]]; then
  stamp=${DEPLOY_TIMESTAMP:-$(date -u +%Y%m%d-%H%M%S)}
  [[ "$stamp" =~ ^[0-9]{8}-[0-9]{6}$ ]] || bad "DEPLOY_TIMESTAMP must be yyyymmdd-hhmmss (got '$stamp')"
  name="$RAYJOB_RELEASE-$stamp"
fi
if [[ -n "$IMAGE" && ! "$IMAGE" =~ ^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$ ]] || [[ "$IMAGE" =~ :[^/]*$ ]]; then
  bad "IMAGE must be an image repository without a tag, e.g. ghcr.io/you/kuberay-mnist (got '$IMAGE')"
fi

args=("${values[@]}" --set-string "nameOverride=$name" --set-string "platform.endpointsConfigMap=$PLATFORM_RELEASE-endpoints"
  --set-string "platform.mlflowCredentialsSecret=$PLATFORM_RELEASE-mlflow-training"
  --set-string "platform.credentialsSecret=$PLATFORM_RELEASE-s3-training")
if [[ -n "$IMAGE" ]]; then
  args+=(--set-string "image.repository=$IMAGE" --set-string "ray.workers.image.repository=$IMAGE")
fi
manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT
if ! bash "$ROOT/scripts/helm-template.sh" "$CHART" "$RAYJOB_RELEASE" "$NAMESPACE" "${args[@]}" "${extra[@]}" >"$manifest"; then
  echo "deploy-rayjob: the chart did not render (message above)" >&2
  exit 2
fi
if ((render_only)); then
  cat "$manifest"
  exit 0
fi

KUBECTL=${KUBECTL:-kubectl}
command -v "$KUBECTL" >/dev/null || { echo "kubectl not found: run scripts/install-tools.sh" >&2; exit 3; }
kubectl() { command "$KUBECTL" "$@"; }
if ! kubectl -n "$NAMESPACE" get rayjobs.ray.io >/dev/null 2>&1; then
  echo "deploy-rayjob: cannot list RayJobs in namespace $NAMESPACE: no cluster in the current kubectl context," \
    "or the KubeRay operator (its CRDs) is not installed" >&2
  exit 3
fi
get() { kubectl -n "$NAMESPACE" get rayjob "$name" -o jsonpath="$1" 2>/dev/null || true; }

# The credentials Secrets the rendered pods read (secretKeyRef names).
mapfile -t secrets < <(grep -A2 'secretKeyRef:' "$manifest" | sed -n 's/^ *name: *//p' | sort -u)
allow_dev=0
if grep -q '^ *kuberay-mnist/development-credentials-allowed: "true"' "$manifest"; then allow_dev=1; fi
for secret in "${secrets[@]}"; do
  if ! kubectl -n "$NAMESPACE" get secret "$secret" >/dev/null 2>&1; then
    echo "deploy-rayjob: Secret $secret not found in namespace $NAMESPACE: install the platform first" \
      "(or create the Secret the chart names)" >&2
    exit 3
  fi
  dev=$(kubectl -n "$NAMESPACE" get secret "$secret" -o 'jsonpath={.metadata.annotations.kuberay-mnist/development-credentials}')
  if [[ "$dev" == "true" && $allow_dev == 0 ]]; then
    echo "deploy-rayjob: refusing Secret $secret: it holds development credentials" \
      "(annotation kuberay-mnist/development-credentials=true, from the platform's values-dev.yaml);" \
      "profile $PROFILE needs the platform's real credentials Secret" >&2
    exit 4
  fi
done

# Once the head pod runs: KubeRay sets RAY_AUTH_MODE=token in its Ray container
# (authOptions.mode: token) unless something overrode it.
head_auth_checked=0
check_head_auth() {
  local line pod phase mode
  line=$(kubectl -n "$NAMESPACE" get pods -l "kuberay-mnist/rayjob=$name,ray.io/node-type=head" \
    -o 'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.spec.containers[0].env[?(@.name=="RAY_AUTH_MODE")].value}{"\n"}{end}' \
    2>/dev/null | awk '$2 == "Running"' | head -n 1) || true
  [[ -n "$line" ]] || return 0
  read -r pod phase mode <<<"$line"
  head_auth_checked=1
  if [[ "$mode" != "token" ]]; then
    echo "deploy-rayjob: head pod $pod ($phase) runs without Ray token authentication" \
      "(RAY_AUTH_MODE=${mode:-<unset>}, expected token): anyone reaching its ports could run code;" \
      "deleting RayJob $name" >&2
    kubectl -n "$NAMESPACE" delete rayjob "$name" --wait=false >/dev/null 2>&1 || true
    exit 4
  fi
  echo "head pod $pod runs with Ray token authentication"
}

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
  deploy=$(get '{.status.jobDeploymentStatus}')
  job=$(get '{.status.jobStatus}')
  now="deployment=${deploy:-<none>} job=${job:-<none>}"
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
