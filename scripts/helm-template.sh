#!/usr/bin/env bash
# helm template with the project's pinned helm (.tools/bin/helm, else helm on PATH).
# Neither chart has dependencies, so this renders offline.
#
#   scripts/helm-template.sh CHART_DIR RELEASE NAMESPACE [helm template args...]
set -euo pipefail

[[ $# -ge 3 ]] || { echo "usage: $0 CHART_DIR RELEASE NAMESPACE [helm args...]" >&2; exit 2; }
chart=${1%/}
release=$2
namespace=$3
shift 3
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM=${HELM:-$ROOT/.tools/bin/helm}
[[ -x "$HELM" ]] || HELM=$(command -v helm) || { echo "helm not found: run scripts/install-tools.sh" >&2; exit 1; }

exec "$HELM" template "$release" "$chart" --namespace "$namespace" "$@"
