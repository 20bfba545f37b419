#!/usr/bin/env bash
# Local KubeRay stack on kind (CPU profile): cluster, project image, KubeRay
# operator + platform (MinIO, MLflow, buckets), and the dataset pushed to MinIO.
# Needs docker, kind, and network access to the KubeRay Helm repo and image
# registries. Cannot run on the machines this project is built on (no Docker
# engine, no cluster).
#
#   scripts/kind-up.sh            # env: KIND_CLUSTER, NAMESPACE, IMAGE, VARIANT, PY
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KIND_CLUSTER=${KIND_CLUSTER:-kuberay-mnist}
NAMESPACE=${NAMESPACE:-mnist}
PLATFORM_RELEASE=${PLATFORM_RELEASE:-mnist-platform}
IMAGE=${IMAGE:-kuberay-mnist:dev-cpu}
PY=${PY:-$ROOT/.venv/bin/python}
TOOLS="$ROOT/.tools/bin"
export PATH="$TOOLS:$PATH"
CHART="$ROOT/charts/kuberay-mnist-platform"
LOCAL_S3_PORT=${LOCAL_S3_PORT:-19000}

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'kind-up: ERROR: %s\n' "$*" >&2; exit 1; }

for cmd in docker kind; do
  command -v "$cmd" >/dev/null || die "$cmd is not installed (kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
bash "$ROOT/scripts/install-tools.sh" helm kubectl

step "kind cluster '$KIND_CLUSTER'"
if kind get clusters | grep -qx "$KIND_CLUSTER"; then
  echo "already exists"
else
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

step "image $IMAGE"
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  docker build -f image/Dockerfile --build-arg VARIANT=cpu -t "$IMAGE" .
fi
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

step "KubeRay operator + platform (release $PLATFORM_RELEASE, namespace $NAMESPACE)"
helm dependency update "$CHART"
helm upgrade --install "$PLATFORM_RELEASE" "$CHART" \
  --namespace "$NAMESPACE" --create-namespace \
  -f "$CHART/values-dev.yaml" \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" \
  --wait --timeout 10m
kubectl -n "$NAMESPACE" rollout status deploy/"$PLATFORM_RELEASE"-minio --timeout=5m
kubectl -n "$NAMESPACE" rollout status deploy/"$PLATFORM_RELEASE"-mlflow --timeout=5m
kubectl -n "$NAMESPACE" get pods -o wide

step "dataset -> MinIO (dvc push through a port-forward)"
[[ -x "$PY" ]] || die "$PY not found: create the venv first (make venv)"
secret="$PLATFORM_RELEASE-s3-credentials"
AWS_ACCESS_KEY_ID=$(kubectl -n "$NAMESPACE" get secret "$secret" -o jsonpath='{.data.AWS_ACCESS_KEY_ID}' | base64 -d)
AWS_SECRET_ACCESS_KEY=$(kubectl -n "$NAMESPACE" get secret "$secret" -o jsonpath='{.data.AWS_SECRET_ACCESS_KEY}' | base64 -d)
dvc_url=$(kubectl -n "$NAMESPACE" get configmap "$PLATFORM_RELEASE-endpoints" -o jsonpath='{.data.MNIST_DVC_REMOTE_URL}')
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
kubectl -n "$NAMESPACE" port-forward svc/"$PLATFORM_RELEASE"-minio "$LOCAL_S3_PORT":9000 >/dev/null 2>&1 &
pf=$!
trap 'kill "$pf" 2>/dev/null || true' EXIT
for _ in $(seq 1 30); do
  curl -fsS "http://127.0.0.1:$LOCAL_S3_PORT/minio/health/ready" >/dev/null 2>&1 && break
  sleep 1
done
# The dataset must exist locally (`dvc repro`) before it can be pushed. A
# local-only remote "kind" points at the in-cluster bucket through the forward.
DVC="$(dirname "$PY")/dvc"
[[ -f dvc.lock ]] || die "no dvc.lock: build the dataset first (dvc repro)"
"$DVC" remote add --local --force kind "$dvc_url"
"$DVC" remote modify --local kind endpointurl "http://127.0.0.1:$LOCAL_S3_PORT"
"$DVC" push -r kind

step "ready"
echo "Run the training job:  make deploy-rayjob PROFILE=cpu-kind"
echo "MLflow UI:             make mlflow-ui-k8s   (then http://localhost:5000)"
