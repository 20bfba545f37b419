#!/usr/bin/env bash
# Render the generated manifests under k8s/ (or OUT_DIR) from the charts.
# Fixed release names and namespace so the output is reproducible; the drift
# test (tests/manifests) renders into a temporary folder and compares.
#
#   scripts/render-manifests.sh [OUT_DIR]
#   env: IMAGE (an image repository such as ghcr.io/you/kuberay-mnist: replaces the
#        repository of every project image; the tags stay the profiles'),
#        NAMESPACE, PLATFORM_RELEASE, RAYJOB_RELEASE, TUNE_RELEASE, SERVE_RELEASE (defaults: project.env)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/k8s}
# NAMESPACE, PLATFORM_RELEASE, RAYJOB_RELEASE: the caller's, else project.env's.
# shellcheck disable=SC1091  # checked on its own
source "$ROOT/scripts/project-env.sh"
IMAGE=${IMAGE:-}
T="$ROOT/scripts/helm-template.sh"
if [[ -n "$IMAGE" && ! "$IMAGE" =~ ^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$ ]] || [[ "$IMAGE" =~ :[^/]*$ ]]; then
  echo "render-manifests: IMAGE must be an image repository without a tag, e.g. ghcr.io/you/kuberay-mnist (got '$IMAGE')" >&2
  exit 2
fi
rayjob_image=() platform_image=()
if [[ -n "$IMAGE" ]]; then
  rayjob_image=(--set-string "image.repository=$IMAGE" --set-string "ray.workers.image.repository=$IMAGE")
  platform_image=(--set-string "image.repository=$IMAGE")
fi
mkdir -p "$OUT"

header() { # chart values release
  cat <<HDR
# GENERATED FILE - do not edit. Source: charts/$1 with $2,
# release "$3", namespace "$NAMESPACE". Regenerate with \`make manifests\`.
HDR
  if [[ -n "$IMAGE" ]]; then echo "# Image repository: $IMAGE (make manifests IMAGE=...)."; fi
}

render() { # out-file chart release values-file[,values-file...] [extra args]
  local out=$1 chart=$2 release=$3 values=$4
  shift 4
  local tmp file files=()
  for file in ${values//,/ }; do files+=(-f "$ROOT/charts/$chart/$file"); done
  tmp=$(mktemp)
  {
    header "$chart" "${values//,/ + }" "$release"
    "$T" "$ROOT/charts/$chart" "$release" "$NAMESPACE" "${files[@]}" "$@"
  } >"$tmp"
  mv "$tmp" "$OUT/$out"
  echo "wrote $OUT/$out" >&2
}

# Static manifests for `kubectl apply` / GitOps: one fixed RayJob name (applied
# again, the package starts a new run when the named one finished). For a fresh
# RayJob per deployment use scripts/deploy-rayjob.sh (`make deploy-rayjob`).
render rayjob.yaml kuberay-mnist-rayjob "$RAYJOB_RELEASE" values.yaml "${rayjob_image[@]}"
render rayjob-cpu-kind.yaml kuberay-mnist-rayjob "$RAYJOB_RELEASE" values-cpu-kind.yaml "${rayjob_image[@]}"
# The same chart serving the registered champion with Ray Serve (a RayService, no RayJob).
render rayservice.yaml kuberay-mnist-rayjob "$SERVE_RELEASE" values.yaml "${rayjob_image[@]}" \
  --set rayService.enabled=true
render rayservice-cpu-kind.yaml kuberay-mnist-rayjob "$SERVE_RELEASE" values-cpu-kind.yaml "${rayjob_image[@]}" \
  --set rayService.enabled=true
# The same chart running a hyperparameter study (`mnist-job tune`): GPU and kind CPU profiles.
render rayjob-tune.yaml kuberay-mnist-rayjob "$TUNE_RELEASE" values.yaml,values-tune.yaml "${rayjob_image[@]}"
render rayjob-tune-cpu-kind.yaml kuberay-mnist-rayjob "$TUNE_RELEASE" values-cpu-kind.yaml,values-tune.yaml "${rayjob_image[@]}"
# The KubeRay operator is not in these charts: it comes from its own chart (kind-up.sh).
render platform-dev.yaml kuberay-mnist-platform "$PLATFORM_RELEASE" values-dev.yaml "${platform_image[@]}"
