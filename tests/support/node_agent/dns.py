"""The cluster's DNS: A records for ``*.cluster.local``, answered on the bridge's address (what CoreDNS does).

Pods get ``nameserver <bridge>``, their namespace's search list and ``ndots:5`` in /etc/resolv.conf, as the
kubelet writes it for dnsPolicy ClusterFirst. gRPC (Ray's GCS client) resolves through DNS itself, not through
/etc/hosts, so the names must come from a server. Only UDP, only A records; a known name asked for another type
gets an empty answer, anything else NXDOMAIN (there is no upstream: nothing leaves this host).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable

log = logging.getLogger("node-agent")
A, NOERROR, NXDOMAIN, TTL = 1, 0, 3, 5


def resolv_conf(namespace: str, server: str) -> str:
    search = f"{namespace}.svc.cluster.local svc.cluster.local cluster.local"
    return f"nameserver {server}\nsearch {search}\noptions ndots:5\n"


def parse_question(packet: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of the question)"""
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("one question per query")
    labels, i = [], 12
    while packet[i]:
        labels.append(packet[i + 1: i + 1 + packet[i]].decode("ascii").lower())
        i += 1 + packet[i]
    qtype, _ = struct.unpack("!HH", packet[i + 1: i + 5])
    return ident, flags, ".".join(labels), qtype, i + 5


def answer(packet: bytes, lookup: Callable[[str], list[str] | None]) -> bytes:
    ident, flags, name, qtype, end = parse_question(packet)
    addresses = lookup(name)
    rcode = NXDOMAIN if addresses is None else NOERROR
    records = [a for a in addresses or []] if qtype == A else []
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode, 1, len(records), 0, 0)
    body = packet[12:end]
    for address in records:
        body += b"\xc0\x0c" + struct.pack("!HHIH", A, 1, TTL, 4) + socket.inet_aton(address)
    return header + body


class DnsServer(threading.Thread):
    def __init__(self, address: str, lookup: Callable[[str], list[str] | None], port: int = 53):
        super().__init__(daemon=True, name="dns")
        self.lookup = lookup
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))

    def run(self) -> None:
        while True:
            try:
                packet, peer = self.sock.recvfrom(512)
            except OSError:
                return
            try:
                self.sock.sendto(answer(packet, self.lookup), peer)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
                log.debug("dns: a query not understood from %s: %s", peer, exc)

    def close(self) -> None:
        self.sock.close()
