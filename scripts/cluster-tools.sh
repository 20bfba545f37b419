#!/usr/bin/env bash
# Builds the local cluster's upstream programs (the tool lines of cluster-tools/go.mod: kube-apiserver,
# kube-controller-manager, kube-scheduler, etcd, the KubeRay operator) into a cache outside the repository,
# keyed by the pinned versions and the Go toolchain: a second run finds them and takes a second.
#   scripts/cluster-tools.sh            build what is missing, print one line per program
#   scripts/cluster-tools.sh --bin-dir  print the folder the programs are (or will be) in, build nothing
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
module=$root/cluster-tools
cd "$module"

# The key changes when a pin (go.mod, go.sum) or the compiler changes, and only then.
key=$(cat go.mod go.sum | sha256sum | cut -c1-12)-$(go env GOVERSION)
cache=${CLUSTER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kuberay-mnist/cluster-tools}
bin=$cache/$key/bin
if [ "${1:-}" = --bin-dir ]; then echo "$bin"; exit 0; fi
if [ -f "$bin/.complete" ]; then
  echo "cluster-tools: up to date in $bin"
  exit 0
fi

version() { go list -m -f '{{.Version}}' "$1"; }
kube=$(version k8s.io/kubernetes)
minor=$(echo "$kube" | cut -d. -f2)
# Without these, /version reports v0.0.0-master (upstream sets them in hack/lib/version.sh).
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

# name, package, ldflags
tools=(
  "etcd go.etcd.io/etcd/server/v3 -s -w"
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver $kube_ldflags"
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager $kube_ldflags"
  "kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler $kube_ldflags"
  "ray-operator github.com/ray-project/kuberay/ray-operator -s -w"
)
echo "cluster-tools: Kubernetes $kube, etcd $(version go.etcd.io/etcd/server/v3)," \
  "KubeRay operator $(version github.com/ray-project/kuberay/ray-operator), $(go env GOVERSION)"
echo "cluster-tools: building into $bin (first time: about 7 min on 2 cores; Go's caches: $(go env GOMODCACHE), $(go env GOCACHE))"
staging=$cache/$key/bin.partial
rm -rf "$staging"
mkdir -p "$staging"
started=$(date +%s)
i=0
for entry in "${tools[@]}"; do
  read -r name package ldflags <<<"$entry"
  i=$((i + 1))
  t0=$(date +%s)
  echo "cluster-tools: [$i/${#tools[@]}] $name ($package)"
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$staging/$name" "$package"
  echo "cluster-tools: [$i/${#tools[@]}] $name built in $(($(date +%s) - t0)) s ($(du -m "$staging/$name" | cut -f1) MB)"
done
touch "$staging/.complete"
rm -rf "$bin"
mv "$staging" "$bin"
echo "cluster-tools: all built in $(($(date +%s) - started)) s; $(du -sh "$bin" | cut -f1) in $bin"
