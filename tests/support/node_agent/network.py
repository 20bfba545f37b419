"""Pod networking: each pod its own network namespace with one address on the cluster's bridge.

A holder process (``unshare --net --mount --uts --ipc``) keeps the pod's namespaces for the pod's lifetime, as a
runtime's pause container does; its mount namespace also holds the pod's emptyDirs (volumes.py), so all the
pod's containers share them. A veth pair joins the namespace to the bridge that scripts/cluster-up.sh made
(no uplink, no NAT): the pod's default route points at the bridge, and the host does not forward, so nothing a
pod sends leaves the pods and the host. Ray binds every interface; inside a pod that is its veth and loopback.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from loopback import services
from tests.support.node_agent import pids

HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def sh(*argv: str) -> str:
    done = subprocess.run(list(argv), env=HOST_ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class AddressPool:
    """Pod IPs from the node's CIDR (the gateway's excepted), kept in a file so a restarted agent reuses them."""

    def __init__(self, cidr: str, gateway: str, state: Path):
        self.network = ipaddress.ip_network(cidr)
        self.gateway = ipaddress.ip_address(gateway)
        self.file = state / "addresses.json"
        self.lock = threading.Lock()
        self.taken: dict[str, str] = json.loads(self.file.read_text()) if self.file.exists() else {}

    def take(self, pod_uid: str) -> str:
        with self.lock:
            if pod_uid in self.taken:
                return self.taken[pod_uid]
            used = set(self.taken.values()) | {str(self.gateway)}
            free = next((str(a) for a in self.network.hosts() if str(a) not in used), None)
            if free is None:
                raise RuntimeError(f"no free pod address left in {self.network}")
            self.taken[pod_uid] = free
            self._save()
            return free

    def release(self, pod_uid: str) -> None:
        with self.lock:
            if self.taken.pop(pod_uid, None) is not None:
                self._save()

    def _save(self) -> None:
        self.file.write_text(json.dumps(self.taken, indent=1))


@dataclass
class PodNetwork:
    """A pod's namespaces (held by ``holder``) and its address on the bridge."""

    pod: str  # namespace/name, for messages
    ip: str
    prefix: int
    gateway: str
    bridge: str
    host_veth: str
    holder: services.Managed | pids.Group  # a Group: adopted from an earlier agent (pod_state.py)

    @property
    def pid(self) -> int:
        return self.holder.pid

    def stop(self) -> None:
        self.holder.stop(timeout=5)  # the namespace, its veth end and its emptyDirs go with the holder
        subprocess.run(["ip", "link", "delete", self.host_veth], env=HOST_ENV, capture_output=True)


def veth_name(pod_uid: str) -> str:
    return f"veth{pod_uid.replace('-', '')[:11]}"  # interface names: 15 characters at most


def start_pod_network(pod: str, uid: str, hostname: str, ip: str, pool: AddressPool, bridge: str,
                      holder_script: str, log_dir: Path) -> PodNetwork:
    """Start the holder (running ``holder_script``, which mounts the emptyDirs and sleeps), then wire its veth."""
    holder = services.start(f"{uid}-holder", ["unshare", "--net", "--mount", "--uts", "--ipc", "bash", "-c",
                                               holder_script], log_dir, env=HOST_ENV)
    deadline = time.monotonic() + 20
    while "holder-ready" not in holder.log.read_text(errors="replace"):
        if not holder.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{pod}: its sandbox did not start: {holder.tail()}")
        time.sleep(0.05)
    net = PodNetwork(pod, ip, pool.network.prefixlen, str(pool.gateway), bridge, veth_name(uid), holder)
    host_veth = net.host_veth
    try:
        subprocess.run(["ip", "link", "delete", host_veth], env=HOST_ENV, capture_output=True)  # a stale one
        sh("ip", "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", str(holder.pid))
        sh("ip", "link", "set", host_veth, "master", bridge, "up")
        inside = ["nsenter", f"--target={holder.pid}", "--net", "--uts"]
        sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "addr", "add", f"{ip}/{net.prefix}", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        sh(*inside, "ip", "route", "add", "default", "via", net.gateway)
        sh(*inside, "hostname", hostname)
    except Exception:
        net.stop()
        raise
    return net


def hosts_file(pod_ip: str, hostname: str, fqdn_of_pod: str | None) -> str:
    """A pod's /etc/hosts, as the kubelet writes it."""
    own = f"{fqdn_of_pod}\t{hostname}" if fqdn_of_pod else hostname
    return "\n".join(["# Kubernetes-managed hosts file (the node agent's).", "127.0.0.1\tlocalhost",
                      "::1\tlocalhost ip6-localhost ip6-loopback", f"{pod_ip}\t{own}"]) + "\n"
