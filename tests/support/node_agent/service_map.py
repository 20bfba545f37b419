"""Service names and addresses inside the pods, in the place of CoreDNS and kube-proxy.

* Names: the DNS records that dns.py serves: ``<svc>.<ns>.svc.cluster.local`` leads to a ClusterIP Service's
  ClusterIP, or to a headless Service's pods (ready ones, or all with ``publishNotReadyAddresses``, as
  KubeRay's head Service has); each pod's /etc/hosts and /etc/resolv.conf are written as the kubelet writes them.
* ClusterIPs: each is an address of the bridge on this host (pods reach it through their default route), where
  a TCP proxy per port forwards to a ready pod of the Service at its targetPort (what kube-proxy's userspace
  mode did). Endpoints come from the pods this node runs, which are all the pods of this one-node cluster.
"""

from __future__ import annotations

import logging
import random
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from tests.support.node_agent.dns import resolv_conf
from tests.support.node_agent.network import HOST_ENV, hosts_file
from tests.support.node_agent.probes import named_port

log = logging.getLogger("node-agent")


@dataclass
class PodEntry:
    namespace: str
    ip: str
    hostname: str
    fqdn: str | None
    hosts: Path
    labels: dict
    containers: list
    ready: bool = False


class Proxy(threading.Thread):
    """One ClusterIP:port, forwarded to a ready endpoint per connection."""

    def __init__(self, address: str, port: int, endpoints):
        super().__init__(daemon=True, name=f"proxy-{address}:{port}")
        self.endpoints = endpoints  # () -> [(ip, port)]
        self.listener = socket.create_server((address, port), reuse_port=False)
        self.closed = False

    def run(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.forward, args=(conn,), daemon=True).start()

    def forward(self, conn: socket.socket) -> None:
        targets = self.endpoints()
        if not targets:
            conn.close()  # no ready endpoint: refused, as kube-proxy rejects it
            return
        try:
            upstream = socket.create_connection(random.choice(targets), timeout=5)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ServiceMap(threading.Thread):
    def __init__(self, core: client.CoreV1Api, bridge: str, gateway: str, interval: float = 1.0):
        super().__init__(daemon=True, name="service-map")
        self.core, self.bridge, self.gateway, self.interval = core, bridge, gateway, interval
        self.lock = threading.Lock()
        self.pods: dict[str, PodEntry] = {}
        self.services: list = []
        self.proxies: dict[tuple[str, int], Proxy] = {}
        self.stopped = threading.Event()

    # the pod workers' side
    def add_pod(self, uid: str, namespace: str, ip: str, hostname: str, fqdn: str | None, hosts: Path,
                labels: dict | None = None, containers: list | None = None) -> None:
        with self.lock:
            self.pods[uid] = PodEntry(namespace, ip, hostname, fqdn, hosts, labels or {}, containers or [])
        self.write_files(self.pods[uid])

    def set_ready(self, uid: str, ready: bool) -> None:
        with self.lock:
            if uid in self.pods:
                self.pods[uid].ready = ready

    def remove_pod(self, uid: str) -> None:
        with self.lock:
            self.pods.pop(uid, None)

    # the loop
    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.services = self.core.list_service_for_all_namespaces(_request_timeout=10).items
            except Exception as exc:  # noqa: BLE001 - the API server may be restarting
                log.debug("services not listed: %s", exc)
                continue
            self.sync_proxies()

    def endpoints(self, service) -> list[PodEntry]:
        selector = service.spec.selector or {}
        if not selector:
            return []
        with self.lock:
            pods = [p for p in self.pods.values() if p.namespace == service.metadata.namespace
                    and all(p.labels.get(k) == v for k, v in selector.items())]
        return [p for p in pods if p.ready or service.spec.publish_not_ready_addresses]

    def records(self) -> dict[str, list[str]]:
        """DNS names -> addresses: each Service (its ClusterIP, or a headless one's pods) and each pod with a
        hostname and subdomain (``<hostname>.<subdomain>.<ns>.svc.cluster.local``)."""
        out: dict[str, list[str]] = {}
        for svc in self.services:
            name = f"{svc.metadata.name}.{svc.metadata.namespace}.svc.cluster.local"
            if svc.spec.cluster_ip and svc.spec.cluster_ip != "None":
                out[name] = [svc.spec.cluster_ip]
            else:
                out[name] = [p.ip for p in self.endpoints(svc)]
        with self.lock:
            out.update({p.fqdn: [p.ip] for p in self.pods.values() if p.fqdn})
        return out

    def lookup(self, name: str) -> list[str] | None:
        return self.records().get(name.rstrip("."))

    def write_files(self, pod: PodEntry) -> None:
        """The pod's /etc/hosts and /etc/resolv.conf, as the kubelet writes them."""
        pod.hosts.write_text(hosts_file(pod.ip, pod.hostname, pod.fqdn))
        pod.hosts.with_name("resolv.conf").write_text(resolv_conf(pod.namespace, self.gateway))

    def sync_proxies(self) -> None:
        wanted = {}
        for svc in self.services:
            if not svc.spec.cluster_ip or svc.spec.cluster_ip == "None" or not svc.spec.selector:
                continue
            for port in svc.spec.ports or []:
                if (port.protocol or "TCP") == "TCP":
                    wanted[(svc.spec.cluster_ip, port.port)] = (svc, port)
        for key in set(self.proxies) - set(wanted):
            self.proxies.pop(key).close()
            if not any(address == key[0] for address, _ in self.proxies):
                subprocess.run(["ip", "addr", "del", f"{key[0]}/32", "dev", self.bridge], env=HOST_ENV,
                               capture_output=True)
        for key, (svc, port) in wanted.items():
            if key in self.proxies:
                continue
            subprocess.run(["ip", "addr", "add", f"{key[0]}/32", "dev", self.bridge], env=HOST_ENV,
                           capture_output=True)  # already there: fine
            try:
                proxy = Proxy(key[0], key[1], lambda s=svc, p=port: self.targets(s, p))
            except OSError as exc:
                log.warning("service %s/%s port %s: no proxy: %s", svc.metadata.namespace, svc.metadata.name,
                            key[1], exc)
                continue
            proxy.start()
            self.proxies[key] = proxy

    def targets(self, svc, port) -> list[tuple[str, int]]:
        out = []
        target = port.target_port if port.target_port is not None else port.port
        for pod in self.endpoints(svc):
            for container in pod.containers:
                try:
                    out.append((pod.ip, named_port(target, container)))
                    break
                except ValueError:
                    continue
        return out

    def stop(self) -> None:
        self.stopped.set()
        for proxy in self.proxies.values():
            proxy.close()
        for address in {a for a, _ in self.proxies}:
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", self.bridge], env=HOST_ENV,
                           capture_output=True)
        self.proxies.clear()
