#!/usr/bin/env bash
# The platform chart (MinIO, MLflow, buckets) in the project's namespace, then the dataset pushed to its
# MinIO: the last steps of scripts/kind-up.sh and scripts/cluster-up.sh, so both leave a cluster in the same
# place. Needs kubectl and helm on PATH, a cluster in KUBECONFIG, and the dataset (`make data`).
#
#   scripts/platform-up.sh --s3 port-forward|cluster-ip
#     port-forward: DVC reaches MinIO through `kubectl port-forward` (kind: the host cannot reach Services)
#     cluster-ip:   DVC reaches MinIO's ClusterIP directly (the local cluster: Services live on its bridge)
#   env: NAMESPACE, PLATFORM_RELEASE (project.env), LOCAL_IMAGE (kuberay-mnist:dev-cpu), LOCAL_S3_PORT,
#        DVC_REMOTE (the local-only DVC remote it adds: kind), PY
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source "$ROOT/scripts/project-env.sh"
LOCAL_IMAGE=${LOCAL_IMAGE:-kuberay-mnist:dev-cpu}
LOCAL_S3_PORT=${LOCAL_S3_PORT:-19000}
DVC_REMOTE=${DVC_REMOTE:-kind}
PY=${PY:-$ROOT/.venv/bin/python}
CHART="$ROOT/charts/kuberay-mnist-platform"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'platform-up: ERROR: %s\n' "$*" >&2; exit 1; }

s3_mode=""
[[ "${1:-}" == --s3 && -n "${2:-}" ]] && s3_mode=$2
case "$s3_mode" in port-forward | cluster-ip) ;; *) die "usage: $0 --s3 port-forward|cluster-ip" ;; esac
[[ -f data/mnist/manifest.json ]] || die "no dataset in data/mnist: build it first with 'make data'"

pf=""
no_aws_files=""
cleanup() {
  if [[ -n "$pf" ]]; then kill "$pf" 2>/dev/null || true; fi
  if [[ -n "$no_aws_files" ]]; then rm -rf "$no_aws_files"; fi
}
trap cleanup EXIT

step "platform (release $PLATFORM_RELEASE, namespace $NAMESPACE)"
helm upgrade --install "$PLATFORM_RELEASE" "$CHART" \
  --namespace "$NAMESPACE" --create-namespace \
  -f "$CHART/values-dev.yaml" \
  --set-string image.repository="${LOCAL_IMAGE%%:*}" --set-string image.tag="${LOCAL_IMAGE##*:}" \
  --wait --timeout 10m
kubectl -n "$NAMESPACE" rollout status deploy/"$PLATFORM_RELEASE"-minio --timeout=5m
kubectl -n "$NAMESPACE" rollout status deploy/"$PLATFORM_RELEASE"-mlflow --timeout=5m
kubectl -n "$NAMESPACE" get pods -o wide

step "dataset -> MinIO (dvc push, $s3_mode)"
# Only the in-cluster MinIO's dev credentials: nothing from this machine's own AWS setup (profiles, SSO,
# session tokens, config files) may reach DVC.
# botocore wants a regular file there (it refuses /dev/null as "not found"): an empty one of our own.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^AWS_' || true)
no_aws_files=$(mktemp -d)
: >"$no_aws_files/empty"
export AWS_CONFIG_FILE=$no_aws_files/empty AWS_SHARED_CREDENTIALS_FILE=$no_aws_files/empty AWS_EC2_METADATA_DISABLED=true
# The dev Secret the platform generated at install (values-dev.yaml): it must be marked as development
# credentials, so that the production path refuses it.
secret="$PLATFORM_RELEASE-dev-s3-credentials"
mark=$(kubectl -n "$NAMESPACE" get secret "$secret" -o 'jsonpath={.metadata.annotations.kuberay-mnist/development-credentials}')
[[ "$mark" == "true" ]] || die "Secret $secret lacks the annotation kuberay-mnist/development-credentials=true (charts/kuberay-mnist-platform/templates/secret-dev.yaml)"
AWS_ACCESS_KEY_ID=$(kubectl -n "$NAMESPACE" get secret "$secret" -o jsonpath='{.data.AWS_ACCESS_KEY_ID}' | base64 -d)
AWS_SECRET_ACCESS_KEY=$(kubectl -n "$NAMESPACE" get secret "$secret" -o jsonpath='{.data.AWS_SECRET_ACCESS_KEY}' | base64 -d)
AWS_DEFAULT_REGION=$(kubectl -n "$NAMESPACE" get configmap "$PLATFORM_RELEASE-endpoints" -o jsonpath='{.data.AWS_DEFAULT_REGION}')
dvc_url=$(kubectl -n "$NAMESPACE" get configmap "$PLATFORM_RELEASE-endpoints" -o jsonpath='{.data.MNIST_DVC_REMOTE_URL}')
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION
if [[ "$s3_mode" == port-forward ]]; then
  kubectl -n "$NAMESPACE" port-forward svc/"$PLATFORM_RELEASE"-minio "$LOCAL_S3_PORT":9000 >/dev/null 2>&1 &
  pf=$!
  endpoint="http://127.0.0.1:$LOCAL_S3_PORT"
else
  endpoint="http://$(kubectl -n "$NAMESPACE" get svc "$PLATFORM_RELEASE"-minio -o jsonpath='{.spec.clusterIP}'):9000"
fi
for _ in $(seq 1 30); do
  curl -fsS "$endpoint/minio/health/ready" >/dev/null 2>&1 && break
  sleep 1
done
# A local-only remote (in .dvc/config.local, which DVC keeps out of git) points at the in-cluster bucket.
DVC="$(dirname "$PY")/dvc"
"$DVC" remote add --local --force "$DVC_REMOTE" "$dvc_url"
"$DVC" remote modify --local "$DVC_REMOTE" endpointurl "$endpoint"
"$DVC" push -r "$DVC_REMOTE"
