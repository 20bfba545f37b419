#!/usr/bin/env bash
# Local KubeRay stack on kind (CPU profile): cluster, a check that the node is big
# enough, project image, KubeRay operator (its own chart), platform (MinIO, MLflow,
# buckets), and the dataset pushed to MinIO.
# Needs docker, kind, network access to the KubeRay Helm repository and image
# registries, and the dataset built locally (`make data`). Cannot run on the
# machines this project is built on (no Docker engine, no cluster).
#
#   scripts/kind-up.sh   # env: KIND_CLUSTER, NAMESPACE, PLATFORM_RELEASE, LOCAL_IMAGE,
#                        #      OPERATOR_NAMESPACE, PY, SKIP_CAPACITY_CHECK=1, LOCAL_S3_PORT
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KIND_CLUSTER=${KIND_CLUSTER:-kuberay-mnist}
# NAMESPACE, PLATFORM_RELEASE, RAYJOB_RELEASE and the telemetry switches: project.env, unless set
# shellcheck disable=SC1091
source "$ROOT/scripts/project-env.sh"
LOCAL_IMAGE=${LOCAL_IMAGE:-kuberay-mnist:dev-cpu}
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-kuberay-system}
# KubeRay's own chart, as KubeRay documents it (https://ray-project.github.io/kuberay-helm/).
OPERATOR_CHART_REPO=https://ray-project.github.io/kuberay-helm/
OPERATOR_VERSION=1.7.0
PY=${PY:-$ROOT/.venv/bin/python}
TOOLS="$ROOT/.tools/bin"
export PATH="$TOOLS:$PATH"
CHART="$ROOT/charts/kuberay-mnist-platform"
RAYJOB_CHART="$ROOT/charts/kuberay-mnist-rayjob"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'kind-up: ERROR: %s\n' "$*" >&2; exit 1; }

for cmd in docker kind; do
  command -v "$cmd" >/dev/null || die "$cmd is not installed (kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
[[ -x "$PY" ]] || die "$PY not found: create the venv first (make venv)"
[[ -f data/mnist/manifest.json ]] || die "no dataset in data/mnist: build it first with 'make data'"
bash "$ROOT/scripts/install-tools.sh" helm kubectl

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step "kind cluster '$KIND_CLUSTER'"
if kind get clusters | grep -qx "$KIND_CLUSTER"; then
  echo "already exists"
else
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

step "KubeRay Helm repository (kuberay-operator $OPERATOR_VERSION)"
helm repo add kuberay "$OPERATOR_CHART_REPO" --force-update >/dev/null
helm repo update kuberay >/dev/null

step "node capacity: does the kind profile fit?"
# What the kind profile will request (operator, platform, one RayJob) plus what
# already runs outside those namespaces, against the nodes' allocatable CPU/memory.
helm template kuberay-operator kuberay/kuberay-operator --version "$OPERATOR_VERSION" \
  --namespace "$OPERATOR_NAMESPACE" >"$WORK/operator.yaml"
bash scripts/helm-template.sh "$CHART" "$PLATFORM_RELEASE" "$NAMESPACE" -f "$CHART/values-dev.yaml" >"$WORK/platform.yaml"
bash scripts/helm-template.sh "$RAYJOB_CHART" "$RAYJOB_RELEASE" "$NAMESPACE" -f "$RAYJOB_CHART/values-cpu-kind.yaml" >"$WORK/rayjob.yaml"
kubectl get nodes -o json >"$WORK/nodes.json"
kubectl get pods -A -o json >"$WORK/pods.json"
if ! "$PY" scripts/check-node-capacity.py --nodes "$WORK/nodes.json" --pods "$WORK/pods.json" \
  --exclude-namespace "$NAMESPACE" --exclude-namespace "$OPERATOR_NAMESPACE" \
  "$WORK/operator.yaml" "$WORK/platform.yaml" "$WORK/rayjob.yaml"; then
  if [[ "${SKIP_CAPACITY_CHECK:-0}" == 1 ]]; then
    echo "kind-up: going on anyway (SKIP_CAPACITY_CHECK=1): pods may stay Pending" >&2
  else
    die "the kind profile does not fit this node (above); fix that, or set SKIP_CAPACITY_CHECK=1 to try anyway"
  fi
fi

step "image $LOCAL_IMAGE"
if ! docker image inspect "$LOCAL_IMAGE" >/dev/null 2>&1; then
  # make image passes the base image digests (image/base-digests.txt, `make pin-base`).
  make -C "$ROOT" image VARIANT=cpu IMAGE_REPO="${LOCAL_IMAGE%%:*}" IMAGE_TAG="${LOCAL_IMAGE##*:}"
fi
kind load docker-image "$LOCAL_IMAGE" --name "$KIND_CLUSTER"

step "KubeRay operator $OPERATOR_VERSION (namespace $OPERATOR_NAMESPACE)"
# The 1.7.0 chart turns the RayJobDeletionPolicy feature gate on (the RayJob
# chart's deletion rules need it); it is also on by default in the operator.
helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "$OPERATOR_VERSION" \
  --namespace "$OPERATOR_NAMESPACE" --create-namespace --wait --timeout 5m
kubectl wait --for condition=established --timeout=60s crd/rayjobs.ray.io

# The platform chart and the dataset pushed to its MinIO (shared with scripts/cluster-up.sh).
bash "$ROOT/scripts/platform-up.sh" --s3 port-forward

step "ready"
echo "Run the training job:  make deploy-rayjob PROFILE=cpu-kind"
echo "MLflow UI:             make mlflow-ui-k8s   (then http://localhost:5000)"
