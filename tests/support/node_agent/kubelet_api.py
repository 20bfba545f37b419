"""The part of the kubelet's HTTPS API that the API server calls for ``kubectl logs``: /containerLogs.

Served on the node's InternalIP at port 10250 with a serving certificate of the cluster's CA; only clients
with a certificate of that CA get in (the API server's --kubelet-client-certificate).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("node-agent")


def tail_bytes(path: Path, lines: int | None, limit: int | None) -> bytes:
    data = path.read_bytes()
    if lines is not None:
        data = b"".join(data.splitlines(keepends=True)[-lines:]) if lines > 0 else b""
    if limit is not None:
        data = data[:limit]
    return data


def make_handler(log_file: Callable[[str, str, str, bool], tuple[Path | None, Callable[[], bool]]]):
    """``log_file(namespace, pod, container, previous)`` -> (path or None, is_running)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # the agent's log, not stderr
            log.debug("kubelet api: " + fmt, *args)

        def do_GET(self):  # noqa: N802 - http.server's name
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if parts == ["healthz"]:
                return self.answer(200, b"ok")
            if len(parts) != 4 or parts[0] != "containerLogs":
                return self.answer(404, b"not served by this node agent: only /containerLogs and /healthz")
            query = urllib.parse.parse_qs(url.query)
            first = {k: v[0] for k, v in query.items()}
            path, running = log_file(parts[1], parts[2], parts[3], first.get("previous") == "true")
            if path is None or not path.exists():
                return self.answer(404, f"container {parts[3]!r} of pod {parts[1]}/{parts[2]} has no log here".encode())
            lines = int(first["tailLines"]) if "tailLines" in first else None
            limit = int(first["limitBytes"]) if "limitBytes" in first else None
            data = tail_bytes(path, lines, limit)
            if first.get("follow") != "true":
                return self.answer(200, data)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.follow(path, data, running)

        def follow(self, path: Path, first: bytes, running: Callable[[], bool]) -> None:
            offset = path.stat().st_size
            try:
                self.chunk(first)
                while True:
                    size = path.stat().st_size if path.exists() else offset
                    if size > offset:
                        with path.open("rb") as handle:
                            handle.seek(offset)
                            self.chunk(handle.read(size - offset))
                        offset = size
                    elif not running():
                        break
                    time.sleep(0.3)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def chunk(self, data: bytes) -> None:
            if data:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        def answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve(address: str, port: int, cert: Path, key: Path, client_ca: Path, log_file) -> ThreadingHTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer((address, port), make_handler(log_file))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="kubelet-api").start()
    return server
