#!/usr/bin/env bash
# helm template, also for a chart whose optional dependencies were never fetched.
#
#   scripts/helm-template.sh CHART_DIR RELEASE NAMESPACE [helm template args...]
#
# `helm template` refuses a chart whose Chart.yaml lists a dependency missing from
# charts/, even when its condition is false. Where the archives are missing (no
# network, or `helm dependency update` not run), this renders a temporary copy
# without the dependencies block - allowed only when every missing dependency is
# switched off explicitly with `--set <name>.enabled=false`, so an enabled
# dependency is never dropped silently.
set -euo pipefail

[[ $# -ge 3 ]] || { echo "usage: $0 CHART_DIR RELEASE NAMESPACE [helm args...]" >&2; exit 2; }
chart=${1%/}
release=$2
namespace=$3
shift 3
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM=${HELM:-$ROOT/.tools/bin/helm}
[[ -x "$HELM" ]] || HELM=$(command -v helm) || { echo "helm not found: run scripts/install-tools.sh" >&2; exit 1; }

missing=()
while read -r dep; do
  [[ -n "$dep" ]] || continue
  if ! compgen -G "$chart/charts/$dep-*.tgz" >/dev/null && [[ ! -d "$chart/charts/$dep" ]]; then
    missing+=("$dep")
  fi
done < <(sed -n '/^dependencies:/,$ s/^  - name: *//p' "$chart/Chart.yaml")

if [[ ${#missing[@]} -gt 0 ]]; then
  for dep in "${missing[@]}"; do
    case " $* " in
      *" --set $dep.enabled=false "* | *" --set=$dep.enabled=false "*) ;;
      *)
        echo "$chart: dependency '$dep' is not in $chart/charts/: run '$HELM dependency update $chart'," \
          "or render without it by passing --set $dep.enabled=false" >&2
        exit 1
        ;;
    esac
  done
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  name=$(basename "$chart")
  cp -r "$chart" "$tmp/$name"
  sed -i '/^dependencies:/,$d' "$tmp/$name/Chart.yaml"
  chart="$tmp/$name"
fi

"$HELM" template "$release" "$chart" --namespace "$namespace" "$@"
