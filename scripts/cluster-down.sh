#!/usr/bin/env bash
# Stops what scripts/cluster-up.sh started, by the PIDs it recorded: each component's whole process group
# (SIGTERM, up to 20 s, then SIGKILL), newest first. Then removes the pod bridge and the firewall rule,
# and the etcd data, so that the next cluster-up starts from an empty cluster. Keeps .cluster/pki (the
# certificates are reused) and the logs. Safe to run when nothing is up.
#
#   scripts/cluster-down.sh
#   CLUSTER_KEEP_ETCD=1 scripts/cluster-down.sh   # keep the cluster's objects for the next cluster-up
#   scripts/cluster-down.sh --only NAME           # stop one component, the rest keeps running
#                                                 # (cluster-up.sh --only NAME starts it again)
# The node agent stopped alone (--only node-agent) leaves its pods' containers running, as a kubelet's restart
# does, and the next one adopts them; the whole cluster going down takes them with it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CLUSTER_STATE:-$ROOT/.cluster}  # CLUSTER_STATE: another folder (the tests use their own)
PIDS=$STATE/pids
BRIDGE=mnistbr0
STOP_TIMEOUT=20

# Reverse start order: the node agent first (told to stop its pods), etcd last.
COMPONENTS=(node-agent ray-operator kube-scheduler kube-controller-manager kube-apiserver etcd)
# What each component's command line contains: a recycled PID of another program is never signalled.
declare -A PROGRAM=(
  [node-agent]=tests.support.node_agent [ray-operator]=ray-operator [kube-scheduler]=kube-scheduler
  [kube-controller-manager]=kube-controller-manager [kube-apiserver]=kube-apiserver [etcd]=etcd
)

log() { printf 'cluster-down: %s\n' "$*"; }

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

# The group is ours while its leader runs our program; with the leader gone, the kernel does not hand the
# group's ID to a new process while any member lives, so the members left are ours too.
is_ours() {
  local name=$1 pid=$2 cmdline
  [[ -r /proc/$pid/cmdline ]] || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  [[ $cmdline == *"${PROGRAM[$name]}"* ]]
}

# wait_gone PID SECONDS: until no process of the group is left.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  ! group_alive "$pid"
}

stop_component() {
  local name=$1 file=$PIDS/$1.pid pid t0=$SECONDS
  [[ -f $file ]] || return 0
  pid=$(<"$file")
  if ! [[ $pid =~ ^[0-9]+$ ]] || ! group_alive "$pid"; then
    rm -f "$file"
    return 0
  fi
  if ! is_ours "$name" "$pid"; then
    log "$name: pid $pid now runs another program; not signalled"
    rm -f "$file"
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  if wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "$name: stopped (pid $pid, $((SECONDS - t0))s)"
  else
    log "$name: still running after ${STOP_TIMEOUT}s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || log "$name: WARNING: process group $pid survived SIGKILL: $(pgrep -g "$pid" -a || true)"
  fi
  rm -f "$file"
}

# What is left of the pods once the agent is gone (it stopped them all, unless it had to be killed): each
# recorded process group (tests/support/node_agent/pids.py: "PID START-TIME"), if that very process still runs.
kill_pods() {
  local file pid start stat
  for file in "$STATE"/node/pods/*/containers/*/pid "$STATE"/node/pods/*/containers/*/shim.pid \
    "$STATE"/node/pods/*/holder.pid; do
    read -r pid start 2>/dev/null <"$file" || continue
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra stat <<<"${stat##*) }"
    [[ ${stat[19]} == "$start" ]] || continue
    kill -KILL -- "-$pid" 2>/dev/null && log "pod process group $pid (${file#"$STATE"/node/}) killed"
  done
  return 0
}

# Only the rule cluster-up recorded having added.
firewall_down() {
  [[ -f $STATE/firewall ]] || return 0
  case $(<"$STATE/firewall") in
    nft) nft delete table inet kuberay_mnist 2>/dev/null || true ;;
    iptables)
      local rule
      for rule in "-i $BRIDGE ! -o $BRIDGE" "-o $BRIDGE ! -i $BRIDGE"; do
        # shellcheck disable=SC2086 # the rule's words
        while iptables -D FORWARD $rule -j DROP -m comment --comment kuberay-mnist 2>/dev/null; do :; done
      done
      ;;
  esac
  rm -f "$STATE/firewall"
  log "firewall rule for $BRIDGE removed"
}

bridge_down() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || return 0
  ip link delete "$BRIDGE"
  log "bridge $BRIDGE removed"
}

# etcd data (the cluster's objects) and the operator's token, which named a ServiceAccount that is gone.
remove_state() {
  rm -f "$STATE/ray-operator.kubeconfig"
  if [[ ${CLUSTER_KEEP_ETCD:-} == 1 ]]; then
    log "etcd data kept in $STATE/etcd (CLUSTER_KEEP_ETCD=1)"
  elif [[ -d $STATE/etcd ]]; then
    rm -rf "$STATE/etcd"
    log "etcd data removed"
  fi
}

main() {
  [[ -d $STATE ]] || { log "nothing to stop (no $STATE)"; return 0; }
  local name
  if [[ ${1:-} == --only ]]; then
    [[ $# -eq 2 && -n ${PROGRAM[$2]:-} ]] || { log "usage: --only one of: ${COMPONENTS[*]}"; return 2; }
    stop_component "$2"
    return
  fi
  [[ -d $STATE/node ]] && : >"$STATE/node/drain"  # the node agent stops its pods too (tests/support/node_agent)
  for name in "${COMPONENTS[@]}"; do stop_component "$name"; done
  kill_pods
  firewall_down
  bridge_down
  remove_state
  log "down (certificates kept in $STATE/pki)"
}

main "$@"
