#!/usr/bin/env bash
# Render the generated manifests under k8s/ (or OUT_DIR) from the charts.
# Fixed release names and namespace so the output is reproducible; the drift
# test (tests/manifests) renders into a temporary folder and compares.
#
#   scripts/render-manifests.sh [OUT_DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/k8s}
NAMESPACE=${NAMESPACE:-mnist}
PLATFORM_RELEASE=${PLATFORM_RELEASE:-mnist-platform}
RAYJOB_RELEASE=${RAYJOB_RELEASE:-mnist-train}
T="$ROOT/scripts/helm-template.sh"
mkdir -p "$OUT"

header() { # chart values release
  cat <<HDR
# GENERATED FILE - do not edit. Source: charts/$1 with $2,
# release "$3", namespace "$NAMESPACE". Regenerate with \`make manifests\`.
HDR
}

render() { # out-file chart release values-file [extra args]
  local out=$1 chart=$2 release=$3 values=$4
  shift 4
  local tmp
  tmp=$(mktemp)
  {
    header "$chart" "$values" "$release"
    "$T" "$ROOT/charts/$chart" "$release" "$NAMESPACE" -f "$ROOT/charts/$chart/$values" "$@"
  } >"$tmp"
  mv "$tmp" "$OUT/$out"
  echo "wrote $OUT/$out" >&2
}

render rayjob.yaml kuberay-mnist-rayjob "$RAYJOB_RELEASE" values.yaml
render rayjob-cpu-kind.yaml kuberay-mnist-rayjob "$RAYJOB_RELEASE" values-cpu-kind.yaml
# The operator is installed by its own chart (kind-up.sh enables the dependency).
render platform-dev.yaml kuberay-mnist-platform "$PLATFORM_RELEASE" values-dev.yaml --set kuberay-operator.enabled=false
