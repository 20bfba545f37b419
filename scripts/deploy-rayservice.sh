#!/usr/bin/env bash
# Render the RayService (charts/kuberay-mnist-rayjob with rayService.enabled=true: Ray Serve
# serving the registered model's champion) for one profile, apply it, and wait until KubeRay
# says it is ready; then print how to reach it. A RayService is long-lived: applying it again
# updates it in place (KubeRay brings up the new cluster before it retires the old one).
#
#   scripts/deploy-rayservice.sh [--profile cpu-kind|gpu] [--image REPOSITORY] [--name NAME]
#                                [--render-only] [-- extra helm template args...]
#   env: NAMESPACE, SERVE_RELEASE (the default name), PLATFORM_RELEASE (defaults in project.env),
#        PROFILE, IMAGE, TIMEOUT_S (1800), POLL_S (10),
#        KUBECTL (the kubectl to run; default: .tools/bin/kubectl, else PATH)
#
# Ready is KubeRay 1.7's condition Ready=True (at least one Serve endpoint answers) with no
# upgrade in progress. The same checks as scripts/deploy-rayjob.sh before applying (the
# credentials Secrets exist; development credentials only for cpu-kind) and once the head
# runs (Ray token authentication, else the RayService is deleted).
# Exit: 0 ready, 1 failed (KubeRay rejected the spec, initialisation timed out, the Serve
# application failed to deploy) or timed out, 2 invalid arguments, 3 no cluster or no
# KubeRay CRD or no credentials Secret, 4 refused: development credentials on a production
# profile, or a head without token auth.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL=deploy-rayservice RESOURCE=rayservice RESOURCE_TITLE=RayService
TIMEOUT_S=${TIMEOUT_S:-1800}
# shellcheck source=SCRIPTDIR/deploy-common.sh
source "$ROOT/scripts/deploy-common.sh"
deploy_parse_args "$@"
# The Serve application's name in the chart's serveConfigV2 (templates/rayservice.yaml).
APP=mnist

name=${name:-$SERVE_RELEASE}
# KubeRay names the Serve Service <name>-serve-svc: the name stays a DNS-1035 label
# short enough for that suffix.
[[ "$name" =~ ^[a-z]([-a-z0-9]{0,36}[a-z0-9])?$ ]] \
  || bad "the RayService name '$name' (--name or SERVE_RELEASE) must be a lowercase DNS label of at most 38 characters"
deploy_render "$SERVE_RELEASE" --set rayService.enabled=true
deploy_connect
deploy_check_secrets

kubectl -n "$NAMESPACE" apply -f "$manifest"

echo "waiting for RayService $NAMESPACE/$name to be ready (timeout ${TIMEOUT_S}s)..."
ready_path='{.status.conditions[?(@.type=="Ready")]'
deadline=$((SECONDS + TIMEOUT_S))
last=""
outcome=""
while :; do
  ready=$(get "$ready_path.status}")
  reason=$(get "$ready_path.reason}")
  upgrading=$(get '{.status.conditions[?(@.type=="UpgradeInProgress")].status}')
  # The cluster being brought up is the pending one during an update, the active one otherwise.
  app=$(get "{.status.pendingServiceStatus.applicationStatuses.$APP.status}")
  where=pendingServiceStatus
  if [[ -z "$app" ]]; then
    app=$(get "{.status.activeServiceStatus.applicationStatuses.$APP.status}")
    where=activeServiceStatus
  fi
  now="ready=${ready:-<none>} reason=${reason:-<none>} upgrade=${upgrading:-<none>} app=${app:-<none>}"
  if [[ "$now" != "$last" ]]; then
    printf '%s  %s\n' "$(date +%H:%M:%S)" "$now"
    last=$now
  fi
  if ((!head_auth_checked)); then check_head_auth; fi
  # ValidationFailed and InitializingTimeout are terminal in KubeRay 1.7 (the operator stops
  # reconciling; the object must be fixed or recreated). Serve's DEPLOY_FAILED means the
  # application's constructor raised (e.g. no champion in MLflow): waiting will not help.
  if [[ "$ready" == "True" && "$upgrading" != "True" ]]; then
    outcome=ready
  elif [[ "$reason" == "ValidationFailed" || "$reason" == "InitializingTimeout" ]]; then
    outcome=failed
    detail=$(get "$ready_path.message}")
  elif [[ "$app" == "DEPLOY_FAILED" ]]; then
    outcome=failed
    detail=$(get "{.status.$where.applicationStatuses.$APP.message}")
  fi
  [[ -z "$outcome" ]] || break
  if ((SECONDS >= deadline)); then
    outcome=timeout
    break
  fi
  sleep "$POLL_S"
done

echo
echo "Status:   kubectl -n $NAMESPACE describe rayservice $name"
echo "Logs:     kubectl -n $NAMESPACE logs -l kuberay-mnist/rayjob=$name,ray.io/node-type=head --tail=100"
case "$outcome" in
  ready)
    cat <<EOF
RayService $name: ready (Ready=True, $reason)

Port-forward the Serve service:
  kubectl -n $NAMESPACE port-forward svc/$name-serve-svc 8000:8000
Then call it:
  curl -s localhost:8000/healthz
  curl -s -X POST --data-binary @digit.png -H 'Content-Type: image/png' localhost:8000/predict
  curl -s -X POST -H 'Content-Type: application/json' -d '{"pixels": [[0, 0, ...28x28 pixels 0..255...]]}' localhost:8000/predict
Draw a digit in the browser: http://localhost:8000/
EOF
    exit 0
    ;;
  timeout)
    echo "RayService $name was not ready after ${TIMEOUT_S}s: $now (it stays deployed: kubectl -n $NAMESPACE delete rayservice $name)" >&2
    ;;
  failed)
    echo "RayService $name failed: $now" >&2
    echo "  message: ${detail:-<none>}" >&2
    ;;
esac
exit 1
