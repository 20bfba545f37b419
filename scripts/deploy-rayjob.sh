#!/usr/bin/env bash
# Apply a generated RayJob manifest, wait until KubeRay says it is Complete or
# Failed, and exit 0 only when the Ray job SUCCEEDED.
#
#   scripts/deploy-rayjob.sh [MANIFEST]     # default k8s/rayjob-cpu-kind.yaml
#   env: NAMESPACE (mnist), TIMEOUT_S (7200), PLATFORM_RELEASE (mnist-platform)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MANIFEST=${1:-$ROOT/k8s/rayjob-cpu-kind.yaml}
NAMESPACE=${NAMESPACE:-mnist}
TIMEOUT_S=${TIMEOUT_S:-7200}
PLATFORM_RELEASE=${PLATFORM_RELEASE:-mnist-platform}
export PATH="$ROOT/.tools/bin:$PATH"
command -v kubectl >/dev/null || { echo "kubectl not found: run scripts/install-tools.sh" >&2; exit 1; }
[[ -f "$MANIFEST" ]] || { echo "no manifest $MANIFEST (make manifests)" >&2; exit 1; }

name=$(kubectl create --dry-run=client -o jsonpath='{.metadata.name}' -f "$MANIFEST")
get() { kubectl -n "$NAMESPACE" get rayjob "$name" -o jsonpath="$1" 2>/dev/null || true; }

# A RayJob is not re-run by `apply` once finished: delete a previous one first.
if kubectl -n "$NAMESPACE" get rayjob "$name" >/dev/null 2>&1; then
  echo "deleting the previous RayJob $name"
  kubectl -n "$NAMESPACE" delete rayjob "$name" --wait=true
fi
kubectl -n "$NAMESPACE" apply -f "$MANIFEST"

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
  case "$deploy" in
    Complete | Failed) break ;;
  esac
  if ((SECONDS > deadline)); then
    echo "timed out after ${TIMEOUT_S}s" >&2
    deploy=Timeout
    break
  fi
  sleep 10
done

echo
echo "Driver logs:  kubectl -n $NAMESPACE logs job/$name        (the submitter tails the Ray job's logs)"
echo "Ray job logs: kubectl -n $NAMESPACE exec \$(kubectl -n $NAMESPACE get pod -l ray.io/node-type=head,ray.io/cluster=$(get '{.status.rayClusterName}') -o name) -- ray job logs $(get '{.status.jobId}')"
echo "MLflow:       kubectl -n $NAMESPACE port-forward svc/$PLATFORM_RELEASE-mlflow 5000:5000  ->  http://localhost:5000 (experiment 'mnist', run '$name')"

job=$(get '{.status.jobStatus}')
if [[ "$deploy" == "Complete" && "$job" == "SUCCEEDED" ]]; then
  echo "RayJob $name: SUCCEEDED"
  exit 0
fi
echo "RayJob $name did not succeed: jobDeploymentStatus=$deploy jobStatus=${job:-<none>}" >&2
echo "  reason:  $(get '{.status.reason}')" >&2
echo "  message: $(get '{.status.message}')" >&2
exit 1
