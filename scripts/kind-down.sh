#!/usr/bin/env bash
# Delete the kind cluster made by kind-up.sh (and everything in it).
set -euo pipefail
KIND_CLUSTER=${KIND_CLUSTER:-kuberay-mnist}
command -v kind >/dev/null || { echo "kind-down: kind is not installed" >&2; exit 1; }
if kind get clusters | grep -qx "$KIND_CLUSTER"; then
  kind delete cluster --name "$KIND_CLUSTER"
else
  echo "kind-down: no cluster named $KIND_CLUSTER"
fi
