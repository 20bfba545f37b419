#!/usr/bin/env bash
# A real Kubernetes control plane and the real KubeRay operator as host processes, without Docker or a
# kubelet: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (upstream v1.35, built by
# scripts/cluster-tools.sh), KubeRay's CRDs + RBAC + operator, and the project's node agent in the kubelet's
# place (pods run in network namespaces on the bridge mnistbr0). Everything listens on 127.0.0.1 only; the
# pod bridge has no uplink, no NAT and no route out (docs/kubernetes.md, "The local cluster").
#
#   scripts/cluster-up.sh                    # then: export KUBECONFIG=<repo>/.cluster/kubeconfig
#   CLUSTER_NO_NODE=1 scripts/cluster-up.sh  # control plane + operator only (no node agent)
#   scripts/cluster-down.sh                  # stop it all
#   scripts/cluster-down.sh --only ray-operator && scripts/cluster-up.sh --only ray-operator
#                                            # restart one component (a fault to test against, new flags)
#
# State in <repo>/.cluster: pki/ (made once, reused), *.kubeconfig, etcd/, logs/<component>.log,
# pids/<component>.pid. Needs root (the bridge), openssl, curl, setsid, ss, and Go (first build only).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CLUSTER_STATE:-$ROOT/.cluster}  # CLUSTER_STATE: another folder (the tests use their own)
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids
KUBECTL=$ROOT/.tools/bin/kubectl
KUBECONFIG_ADMIN=$STATE/kubeconfig

BRIDGE=mnistbr0
GATEWAY=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
NODE_NAME=kuberay-mnist-node
# What the node advertises: the kind node the README assumes (a 4-CPU Docker VM), so the kind profile's
# requests (about 3.8 CPUs with the platform) fit as they do there; processes share this host's cores
# either way (no cgroup limits: docs/kubernetes.md, "The local cluster").
NODE_CPU=${NODE_CPU:-4}
OPERATOR_NS=kuberay-system
OPERATOR_SA=kuberay-operator

# Ports, all on 127.0.0.1, none a component's default (a second cluster or a dev tool may hold those).
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=16443
KCM_PORT=10357
SCHED_PORT=10359
OPERATOR_METRICS_PORT=18080
OPERATOR_PROBE_PORT=18082
API_URL=https://127.0.0.1:$API_PORT

# Start order; cluster-down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler ray-operator node-agent)

log() { printf 'cluster-up: %s\n' "$*"; }
die() { printf 'cluster-up: ERROR: %s\n' "$*" >&2; exit 1; }
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# --- preflight ----------------------------------------------------------------------------------

check_host() {
  # Every pod gets its own tmpfs at /tmp, which would hide a repository (and its venv) under /tmp.
  case "$ROOT/" in /tmp/*) die "the repository is under /tmp ($ROOT): clone it elsewhere (pods get their own /tmp)" ;; esac
  [[ $(id -u) -eq 0 ]] || die "run as root (the pod bridge and network namespaces need it)"
  local cmd
  for cmd in openssl curl setsid ss ip sysctl; do
    command -v "$cmd" >/dev/null || die "$cmd is not installed"
  done
}

# A pid file whose process (or process group) still lives means a cluster is up already.
check_not_running() {
  local name pid alive=()
  for name in "${COMPONENTS[@]}"; do
    [[ -f $PIDS/$name.pid ]] || continue
    pid=$(<"$PIDS/$name.pid")
    if kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; then alive+=("$name($pid)"); fi
  done
  ((${#alive[@]} == 0)) || die "still running from a previous cluster-up: ${alive[*]}; run scripts/cluster-down.sh first"
}

check_ports_free() {
  local port
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$KCM_PORT" "$SCHED_PORT" \
    "$OPERATOR_METRICS_PORT" "$OPERATOR_PROBE_PORT"; do
    if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is already in use: $(ss -Hltnp "sport = :$port")"; fi
  done
}

# The programs (scripts/cluster-tools.sh) and kubectl (scripts/install-tools.sh, a second when present).
find_tools() {
  BIN=$("$ROOT/scripts/cluster-tools.sh" --bin-dir)
  [[ -f $BIN/.complete ]] || die "the cluster programs are not built yet: run 'make cluster-tools' (about 7 min the first time)"
  bash "$ROOT/scripts/install-tools.sh" kubectl
  OPERATOR_SRC=$(cd "$ROOT/cluster-tools" && go list -m -f '{{.Dir}}' github.com/ray-project/kuberay/ray-operator)
  [[ -d $OPERATOR_SRC/config/crd/bases ]] || die "no KubeRay module source in $OPERATOR_SRC"
}

# --- PKI: made once, reused by later runs --------------------------------------------------------

# new_ca NAME CN: a self-signed CA, pki/NAME.{crt,key}.
new_ca() {
  openssl genrsa -out "$PKI/$1.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -out "$PKI/$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# Two CAs, as kubeadm has: ca (API server, clients, controller-manager signing) and front-proxy-ca (the
# request-header authentication the controller-manager and scheduler delegate to the API server).
make_cas() {
  local f
  for f in ca.crt ca.key front-proxy-ca.crt front-proxy-ca.key; do
    [[ -f $PKI/$f ]] || break
  done
  [[ -f $PKI/$f ]] && return 0
  # A new CA invalidates every certificate it signed: start the PKI afresh.
  log "pki: new CAs in $PKI"
  rm -f "$PKI"/*.crt "$PKI"/*.key "$PKI"/*.srl
  new_ca ca kuberay-mnist-ca
  new_ca front-proxy-ca kuberay-mnist-front-proxy-ca
}

# sign_cert NAME SUBJECT EXTENSIONS [CA]: a 2048-bit RSA key and a certificate signed by CA (default
# ca), unless present.
sign_cert() {
  local name=$1 subject=$2 ext=$3 ca=${4:-ca}
  [[ -f $PKI/$name.crt && -f $PKI/$name.key ]] && return 0
  log "pki: $name ($subject)"
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -out "$PKI/$name.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
  rm -f "$PKI/$name.csr"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  make_cas
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  # Every name a client may use for the API server: loopback, the bridge (the advertised address), the
  # first Service IP (the kubernetes Service), and the Service's DNS names.
  sign_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$GATEWAY,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign_cert admin "/O=system:masters/CN=kubernetes-admin" "$client"
  sign_cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  sign_cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  # The Node authorizer and NodeRestriction know a node by this name and group.
  sign_cert node-agent "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
  sign_cert front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca
  # The node agent's kubelet API (the API server's `kubectl logs` path): served on the node's InternalIP
  # (the bridge address), called by the API server with its kubelet client certificate.
  sign_cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$GATEWAY,DNS:$NODE_NAME"
  sign_cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" "$client"
  # The node agent's volume provisioner (kind's "standard" StorageClass): a user of its own, whose RBAC
  # (provisioner_rbac) is all it may do; node credentials may not create PersistentVolumes.
  sign_cert volume-provisioner "/CN=kuberay-mnist:volume-provisioner" "$client"
  # One key signs service-account tokens (controller-manager, API server) and verifies them.
  [[ -f $PKI/sa.key ]] || openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  chmod 600 "$PKI"/*.key
}

# write_kubeconfig FILE USER (certificate user, from pki/USER.crt) - certificates embedded.
write_kubeconfig() {
  local file=$1 user=$2
  rm -f "$file"
  "$KUBECTL" config --kubeconfig "$file" set-cluster kuberay-mnist --server "$API_URL" \
    --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$file" set-credentials "$user" --client-certificate "$PKI/$user.crt" \
    --client-key "$PKI/$user.key" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$file" set-context kuberay-mnist --cluster kuberay-mnist --user "$user" >/dev/null
  "$KUBECTL" config --kubeconfig "$file" use-context kuberay-mnist >/dev/null
  chmod 600 "$file"
}

make_kubeconfigs() {
  write_kubeconfig "$KUBECONFIG_ADMIN" admin
  local c
  for c in kube-controller-manager kube-scheduler node-agent volume-provisioner; do write_kubeconfig "$STATE/$c.kubeconfig" "$c"; done
}

# --- network: the pod bridge, with no way out -----------------------------------------------------

bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # IPv4 only: no IPv6 on the bridge, so nothing can be forwarded from it over IPv6 either.
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1" 2>/dev/null || true
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  log "network: bridge $BRIDGE $GATEWAY/24 (pods $POD_CIDR, Services $SERVICE_CIDR), no uplink, no NAT"
}

# Pod traffic may cross the bridge (pod to pod) and reach the host, never be forwarded elsewhere. With
# ip_forward=0 the kernel forwards nothing anyway; the rule is added whenever a firewall tool exists (in
# case forwarding is switched on later) and required when forwarding is on. cluster-down removes it.
firewall_up() {
  local forward
  forward=$(sysctl -n net.ipv4.ip_forward)
  if command -v nft >/dev/null; then
    nft delete table inet kuberay_mnist 2>/dev/null || true # a leftover of a failed run
    nft -f - <<EOF
table inet kuberay_mnist {
  chain forward {
    type filter hook forward priority filter - 1; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" drop
    oifname "$BRIDGE" iifname != "$BRIDGE" drop
  }
}
EOF
    echo nft >"$STATE/firewall"
  elif command -v iptables >/dev/null; then
    local rule
    for rule in "-i $BRIDGE ! -o $BRIDGE" "-o $BRIDGE ! -i $BRIDGE"; do
      # shellcheck disable=SC2086 # the rule's words
      iptables -C FORWARD $rule -j DROP -m comment --comment kuberay-mnist 2>/dev/null ||
        iptables -I FORWARD 1 $rule -j DROP -m comment --comment kuberay-mnist
    done
    echo iptables >"$STATE/firewall"
  elif [[ $forward == 1 ]]; then
    die "net.ipv4.ip_forward is 1 and neither nft nor iptables is installed: pod traffic could be forwarded off this host; install one (apt-get install nftables) or set net.ipv4.ip_forward=0"
  else
    log "network: ip_forward=0 and no nft/iptables: the kernel forwards nothing from $BRIDGE"
    return 0
  fi
  log "network: $(<"$STATE/firewall") rule drops forwarded traffic into/out of $BRIDGE (ip_forward=$forward)"
}

# --- processes -------------------------------------------------------------------------------------

# start NAME COMMAND...: in its own session and process group (cluster-down signals the whole group),
# stdout+stderr to logs/NAME.log, its PID (= its process group ID) in pids/NAME.pid. The program writes
# its own PID before it execs (setsid forks when the caller leads a process group, so $! may not be it).
start() {
  local name=$1 pidfile=$PIDS/$1.pid
  shift
  rm -f "$pidfile"
  : >"$LOGS/$name.log"
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  for _ in {1..50}; do
    [[ -s $pidfile ]] && break
    sleep 0.1
  done
  [[ -s $pidfile ]] || die "$name did not start (log: $LOGS/$name.log)"
  log "$name: started (pid $(<"$pidfile")), log $LOGS/$name.log"
}

# wait_healthy NAME TIMEOUT_S COMMAND...: until COMMAND succeeds; fail at once if the process died.
wait_healthy() {
  local name=$1 timeout=$2 t0=$SECONDS pid
  shift 2
  pid=$(<"$PIDS/$name.pid")
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 25 "$LOGS/$name.log" >&2
      die "$name exited (log above: $LOGS/$name.log)"
    fi
    if ((SECONDS - t0 > timeout)); then
      tail -n 25 "$LOGS/$name.log" >&2
      die "$name not healthy after ${timeout}s (log: $LOGS/$name.log)"
    fi
    sleep 0.5
  done
  log "$name: healthy after $((SECONDS - t0))s"
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  # Plain HTTP on loopback: only the API server talks to it. Metrics are served on the client URL.
  start etcd "$BIN/etcd" --name kuberay-mnist --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kuberay-mnist=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new
  wait_healthy etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
  # Flags after upstream's hack/local-up-cluster.sh. The request-header (front-proxy) flags publish the CA
  # that the controller-manager's and scheduler's delegated authentication expect. The advertised address
  # (the kubernetes Service's endpoint) is the bridge's, since the host may have no default route; the
  # API server listens on loopback only.
  start kube-apiserver "$BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address="$GATEWAY" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.key" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --cert-dir="$STATE/apiserver-certs" --profiling=false
  wait_healthy kube-apiserver 90 curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" \
    --key "$PKI/admin.key" "$API_URL/readyz"
}

# Serving on 127.0.0.1 with a self-signed certificate; /healthz needs no credentials.
start_controller_manager() {
  local kc=$STATE/kube-controller-manager.kubeconfig
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
    --use-service-account-credentials --controllers='*' \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-name=kuberay-mnist --profiling=false
  wait_healthy kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
}

start_scheduler() {
  local kc=$STATE/kube-scheduler.kubeconfig
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --leader-elect=false --profiling=false
  wait_healthy kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
}

# --- KubeRay: as its users install it (CRDs, RBAC), the manager on the host under its ServiceAccount ---

install_operator_manifests() {
  log "ray-operator: CRDs from $OPERATOR_SRC/config/crd/bases (server-side apply: too big for client-side)"
  k apply --server-side --force-conflicts -f "$OPERATOR_SRC/config/crd/bases" >/dev/null
  k wait --for condition=established --timeout=60s crd/rayclusters.ray.io crd/rayjobs.ray.io \
    crd/rayservices.ray.io >/dev/null
  # config/rbac leaves the namespace to an overlay (upstream's config/default): ours sets kuberay-system,
  # which kustomize also writes into the bindings' ServiceAccount subjects. Resources must be relative.
  local overlay=$STATE/operator-rbac
  mkdir -p "$overlay"
  cat >"$overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $OPERATOR_NS
resources:
- namespace.yaml
- $(realpath --relative-to="$overlay" "$OPERATOR_SRC/config/rbac")
EOF
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$OPERATOR_NS" >"$overlay/namespace.yaml"
  log "ray-operator: RBAC from config/rbac into namespace $OPERATOR_NS"
  k apply -k "$overlay" >/dev/null
}

# A token of the operator's own ServiceAccount, so the operator runs with exactly its RBAC. A year:
# it dies with the ServiceAccount anyway (cluster-down wipes etcd).
write_operator_kubeconfig() {
  local file=$STATE/ray-operator.kubeconfig token
  token=$(k -n "$OPERATOR_NS" create token "$OPERATOR_SA" --duration=8760h)
  rm -f "$file"
  "$KUBECTL" config --kubeconfig "$file" set-cluster kuberay-mnist --server "$API_URL" \
    --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
  "$KUBECTL" config --kubeconfig "$file" set-credentials "$OPERATOR_SA" --token "$token" >/dev/null
  "$KUBECTL" config --kubeconfig "$file" set-context kuberay-mnist --cluster kuberay-mnist \
    --user "$OPERATOR_SA" --namespace "$OPERATOR_NS" >/dev/null
  "$KUBECTL" config --kubeconfig "$file" use-context kuberay-mnist >/dev/null
  chmod 600 "$file"
}

# --use-kubernetes-proxy: the operator reaches each Ray head's dashboard through the API server's service
# proxy (the API server reaches the pods over the bridge). RayJobDeletionPolicy (beta, on by default in
# 1.6) drives the chart's spec.deletionStrategy.deletionRules: enabled explicitly so a default change
# cannot silently ignore them.
start_operator() {
  install_operator_manifests
  write_operator_kubeconfig
  start ray-operator "$BIN/ray-operator" --kubeconfig="$STATE/ray-operator.kubeconfig" \
    --enable-leader-election=false \
    --metrics-addr="127.0.0.1:$OPERATOR_METRICS_PORT" \
    --health-probe-bind-address="127.0.0.1:$OPERATOR_PROBE_PORT" \
    --use-kubernetes-proxy --feature-gates=RayJobDeletionPolicy=true \
    --log-stdout-encoder=console
  wait_healthy ray-operator 60 curl -fsS "http://127.0.0.1:$OPERATOR_PROBE_PORT/readyz"
}

# --- the node (the kubelet's place) ----------------------------------------------------------------

# What the node agent's volume provisioner (tests/support/node_agent/provisioner.py) calls.
provisioner_rbac() {
  k apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kuberay-mnist:volume-provisioner
rules:
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch, create]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kuberay-mnist:volume-provisioner
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kuberay-mnist:volume-provisioner
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kuberay-mnist:volume-provisioner
EOF
}

node_ready() {
  [[ $(k get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

start_node_agent() {
  if [[ ${CLUSTER_NO_NODE:-} == 1 ]]; then
    log "node-agent: skipped (CLUSTER_NO_NODE=1): pods stay Pending"
    return 0
  fi
  [[ -x $ROOT/.venv/bin/python ]] || die "no $ROOT/.venv: run 'make venv' (or CLUSTER_NO_NODE=1 for no node)"
  mkdir -p "$STATE/node"
  provisioner_rbac
  # main runs from the repository root, so that -m finds the tests package.
  start node-agent "$ROOT/.venv/bin/python" -m tests.support.node_agent \
    --kubeconfig "$STATE/node-agent.kubeconfig" --node "$NODE_NAME" --bridge "$BRIDGE" \
    --gateway "$GATEWAY" --pod-cidr "$POD_CIDR" --state "$STATE/node" --cpu "$NODE_CPU" \
    --serving-cert "$PKI/kubelet-serving.crt" --serving-key "$PKI/kubelet-serving.key" --client-ca "$PKI/ca.crt" \
    --provisioner-kubeconfig "$STATE/volume-provisioner.kubeconfig"
  wait_healthy node-agent 60 node_ready
}

# Where `make kind-up` leaves kind: the platform chart installed, the dataset in its MinIO. The host reaches
# Services at their ClusterIPs (addresses of the bridge), so DVC needs no port-forward.
platform_up() {
  if [[ ${CLUSTER_NO_NODE:-} == 1 || ${CLUSTER_NO_PLATFORM:-} == 1 ]]; then
    log "platform: skipped (no node, or CLUSTER_NO_PLATFORM=1)"
    return 0
  fi
  bash "$ROOT/scripts/install-tools.sh" helm
  PATH="$ROOT/.tools/bin:$PATH" KUBECONFIG="$KUBECONFIG_ADMIN" DVC_REMOTE=local-cluster \
    bash "$ROOT/scripts/platform-up.sh" --s3 cluster-ip
}

summary() {
  local name
  log "up in $((SECONDS - T0))s; logs:"
  for name in "${COMPONENTS[@]}"; do
    [[ -f $PIDS/$name.pid ]] && printf '  %-24s %s\n' "$name" "$LOGS/$name.log"
  done
  log "API server $API_URL, $(k get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p'); stop with scripts/cluster-down.sh"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

on_exit() {
  local rc=$?
  ((rc == 0)) || printf 'cluster-up: failed; what started is still running: inspect %s, then run scripts/cluster-down.sh\n' "$LOGS" >&2
}

# --only NAME: start one component of a running cluster again, after `cluster-down.sh --only NAME`.
start_only() {
  local name=$1
  declare -A starter=(
    [etcd]=start_etcd [kube-apiserver]=start_apiserver [kube-controller-manager]=start_controller_manager
    [kube-scheduler]=start_scheduler [ray-operator]=start_operator [node-agent]=start_node_agent
  )
  [[ -n ${starter[$name]:-} ]] || die "--only: unknown component '$name' (one of: ${COMPONENTS[*]})"
  [[ -f $KUBECONFIG_ADMIN ]] || die "--only $name: no cluster in $STATE (run scripts/cluster-up.sh first)"
  if [[ -f $PIDS/$name.pid ]] && kill -0 -- "-$(<"$PIDS/$name.pid")" 2>/dev/null; then
    die "--only $name: it still runs (pid $(<"$PIDS/$name.pid")); stop it with scripts/cluster-down.sh --only $name"
  fi
  find_tools
  [[ -f $LOGS/$name.log ]] && mv "$LOGS/$name.log" "$LOGS/$name.before-restart.log"
  "${starter[$name]}"
}

main() {
  T0=$SECONDS
  cd "$ROOT"
  if [[ ${1:-} == --only ]]; then
    [[ $# -eq 2 ]] || die "usage: scripts/cluster-up.sh [--only COMPONENT]"
    start_only "$2"
    return
  fi
  check_host
  mkdir -p "$STATE" "$LOGS" "$PIDS"
  check_not_running
  check_ports_free
  find_tools
  trap on_exit EXIT
  make_pki
  make_kubeconfigs
  firewall_up # first: a refusal leaves nothing behind
  bridge_up
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_operator
  start_node_agent
  platform_up
  summary
}

main "$@"
