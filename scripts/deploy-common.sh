# shellcheck shell=bash
# What scripts/deploy-rayjob.sh and scripts/deploy-rayservice.sh share: sourced, not run.
# Both render charts/kuberay-mnist-rayjob for one profile and check the credentials Secrets
# the pods will read; deploy-rayservice.sh also applies and checks that the Ray head runs with
# token authentication (a RayJob's head is checked by `mnist-job submit`, which deploy-rayjob.sh runs).
#
# The caller sets before sourcing: ROOT, TOOL (prefix of every message, e.g. deploy-rayjob),
# RESOURCE (the KubeRay kind in kubectl's words: rayjob or rayservice), RESOURCE_TITLE
# (RayJob or RayService, for messages). After deploy_parse_args: PROFILE, IMAGE, name,
# render_only, extra. Every function exits with the scripts' shared codes: 2 invalid
# arguments, 3 no cluster, no KubeRay CRD or no credentials Secret, 4 refused.

# NAMESPACE, RAYJOB_RELEASE, PLATFORM_RELEASE and the telemetry switches: project.env, unless set
# shellcheck disable=SC1091
source "$ROOT/scripts/project-env.sh"
PROFILE=${PROFILE:-cpu-kind}
IMAGE=${IMAGE:-}
POLL_S=${POLL_S:-10}
export PATH="$ROOT/.tools/bin:$PATH"
CHART="$ROOT/charts/kuberay-mnist-rayjob"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }
bad() { echo "$TOOL: $*" >&2; exit 2; }

# deploy_parse_args "$@": --profile, --image, --name, --render-only, -- extra helm args.
deploy_parse_args() {
  name=""
  render_only=0
  extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --profile | --image | --name) [[ $# -ge 2 && -n "$2" ]] || bad "$1 needs a value" ;;
    esac
    case "$1" in
      --profile) PROFILE=$2; shift 2 ;;
      --image) IMAGE=$2; shift 2 ;;
      --name) name=$2; shift 2 ;;
      --render-only) render_only=1; shift ;;
      -h | --help) usage; exit 0 ;;
      --) shift; extra=("$@"); break ;;
      *) usage; bad "unknown argument '$1'" ;;
    esac
  done
  case "$PROFILE" in
    gpu) values=() ;;
    cpu-kind) values=(-f "$CHART/values-cpu-kind.yaml") ;;
    *) bad "PROFILE must be cpu-kind or gpu (got '$PROFILE')" ;;
  esac
  [[ "$TIMEOUT_S" =~ ^[1-9][0-9]*$ ]] || bad "TIMEOUT_S must be a positive number of seconds (got '$TIMEOUT_S')"
  [[ "$POLL_S" =~ ^[1-9][0-9]*$ ]] || bad "POLL_S must be a positive number of seconds (got '$POLL_S')"
  if [[ -n "$IMAGE" && ! "$IMAGE" =~ ^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$ ]] || [[ "$IMAGE" =~ :[^/]*$ ]]; then
    bad "IMAGE must be an image repository without a tag, e.g. ghcr.io/you/kuberay-mnist (got '$IMAGE')"
  fi
}

# deploy_render RELEASE [helm args...]: the chart for $PROFILE into $manifest (a temporary
# file, removed on exit) with the platform's names and $name; prints it and exits 0 under --render-only.
deploy_render() {
  local release=$1
  shift
  local args=("${values[@]}" --set-string "nameOverride=$name" --set-string "platform.endpointsConfigMap=$PLATFORM_RELEASE-endpoints"
    --set-string "platform.mlflowCredentialsSecret=$PLATFORM_RELEASE-mlflow-training"
    --set-string "platform.mlflowServingCredentialsSecret=$PLATFORM_RELEASE-mlflow-serving"
    --set-string "platform.credentialsSecret=$PLATFORM_RELEASE-s3-training" "$@")
  if [[ -n "$IMAGE" ]]; then
    args+=(--set-string "image.repository=$IMAGE" --set-string "ray.workers.image.repository=$IMAGE")
  fi
  manifest=$(mktemp)
  trap 'rm -f "$manifest"' EXIT
  if ! bash "$ROOT/scripts/helm-template.sh" "$CHART" "$release" "$NAMESPACE" "${args[@]}" "${extra[@]}" >"$manifest"; then
    echo "$TOOL: the chart did not render (message above)" >&2
    exit 2
  fi
  if ((render_only)); then
    cat "$manifest"
    exit 0
  fi
}

# deploy_connect: kubectl found, and the cluster knows the KubeRay CRD of $RESOURCE.
deploy_connect() {
  KUBECTL=${KUBECTL:-kubectl}
  command -v "$KUBECTL" >/dev/null || { echo "kubectl not found: run scripts/install-tools.sh" >&2; exit 3; }
  if ! kubectl -n "$NAMESPACE" get "${RESOURCE}s.ray.io" >/dev/null 2>&1; then
    echo "$TOOL: cannot list ${RESOURCE_TITLE}s in namespace $NAMESPACE: no cluster in the current kubectl context," \
      "or the KubeRay operator (its CRDs) is not installed" >&2
    exit 3
  fi
}
kubectl() { command "$KUBECTL" "$@"; }
# get JSONPATH: a field of the deployed object, empty when it (or the object) is absent.
get() { kubectl -n "$NAMESPACE" get "$RESOURCE" "$name" -o jsonpath="$1" 2>/dev/null || true; }

# deploy_check_secrets: every Secret the rendered pods mount (secretName: their credentials are
# files of Secret volumes) exists, and
# one marked as development credentials (kuberay-mnist/development-credentials=true, the kind
# platform's) is refused unless the rendered object allows it (the cpu-kind profile).
deploy_check_secrets() {
  local secrets secret dev allow_dev=0
  mapfile -t secrets < <(sed -n 's/^ *secretName: *//p' "$manifest" | sort -u)
  if grep -q '^ *kuberay-mnist/development-credentials-allowed: "true"' "$manifest"; then allow_dev=1; fi
  for secret in "${secrets[@]}"; do
    if ! kubectl -n "$NAMESPACE" get secret "$secret" >/dev/null 2>&1; then
      echo "$TOOL: Secret $secret not found in namespace $NAMESPACE: install the platform first" \
        "(or create the Secret the chart names)" >&2
      exit 3
    fi
    dev=$(kubectl -n "$NAMESPACE" get secret "$secret" -o 'jsonpath={.metadata.annotations.kuberay-mnist/development-credentials}')
    if [[ "$dev" == "true" && $allow_dev == 0 ]]; then
      echo "$TOOL: refusing Secret $secret: it holds development credentials" \
        "(annotation kuberay-mnist/development-credentials=true, from the platform's values-dev.yaml);" \
        "profile $PROFILE needs the platform's real credentials Secret" >&2
      exit 4
    fi
  done
}

# check_head_auth: once the head pod runs, KubeRay has set RAY_AUTH_MODE=token in its Ray
# container (authOptions.mode: token) unless something overrode it; without it the object is
# deleted. Sets head_auth_checked=1 once a running head was seen.
head_auth_checked=0
check_head_auth() {
  local line pod phase mode
  line=$(kubectl -n "$NAMESPACE" get pods -l "kuberay-mnist/rayjob=$name,ray.io/node-type=head" \
    -o 'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.spec.containers[0].env[?(@.name=="RAY_AUTH_MODE")].value}{"\n"}{end}' \
    2>/dev/null | awk '$2 == "Running"' | head -n 1) || true
  [[ -n "$line" ]] || return 0
  read -r pod phase mode <<<"$line"
  # shellcheck disable=SC2034  # read by the sourcing script's wait loop
  head_auth_checked=1
  if [[ "$mode" != "token" ]]; then
    echo "$TOOL: head pod $pod ($phase) runs without Ray token authentication" \
      "(RAY_AUTH_MODE=${mode:-<unset>}, expected token): anyone reaching its ports could run code;" \
      "deleting $RESOURCE_TITLE $name" >&2
    kubectl -n "$NAMESPACE" delete "$RESOURCE" "$name" --wait=false >/dev/null 2>&1 || true
    exit 4
  fi
  echo "head pod $pod runs with Ray token authentication"
}
