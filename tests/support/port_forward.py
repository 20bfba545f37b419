"""A local port that relays to a Service's address, as `kubectl port-forward svc/...` gives a user one.

The node agent has no streaming server for the API server's port-forward (tests/support/node_agent), and the
tests' network namespace reaches Service addresses directly: this relay gives a client the ``localhost`` URL a
user would have, which is what the platform's MLflow allows as a Host (charts/kuberay-mnist-platform).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading

from tests.support.node_agent.service_map import pump  # a Service's own relay, both ways


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.target, timeout=30)
        upstream.settimeout(None)
        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def port_forward(host: str, port: int):
    """``127.0.0.1:<a free port>`` relaying to ``host:port`` while the block runs; yields the local port."""
    with _Server(("127.0.0.1", 0), _Relay) as server:
        server.target = (host, port)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
