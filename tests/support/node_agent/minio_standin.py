"""What runs for MinIO's image on the node agent (images.py): moto's S3 server, plus MinIO's health paths.

Takes MinIO's own arguments (``server /data --address=:9000 ...``); serves S3 on the ``--address`` port and
answers ``/minio/health/live`` and ``/minio/health/ready`` as MinIO does, so the chart's probes are real.
Object bodies go to the data path (the chart's PVC); the bucket index is in memory, so a restarted pod
starts empty (MinIO would find its buckets again).
"""

from __future__ import annotations

import argparse
import tempfile

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple
from werkzeug.wrappers import Response

HEALTH = {"/minio/health/live", "/minio/health/ready"}


def app_with_health(app):
    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") in HEALTH:
            return Response("", status=200)(environ, start_response)
        return app(environ, start_response)

    return wsgi


def main() -> None:
    parser = argparse.ArgumentParser(prog="minio (stand-in)")
    parser.add_argument("command", choices=["server"])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--address", default=":9000")
    parser.add_argument("--console-address", default=":9001")
    parser.add_argument("--certs-dir")
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    if args.paths:  # moto spools object bodies to temporary files: on MinIO's data volume, as MinIO stores them
        tempfile.tempdir = args.paths[0]
    app = app_with_health(DomainDispatcherApplication(create_backend_app))
    print(f"S3 stand-in for MinIO on {args.address} (moto; buckets in memory)", flush=True)
    run_simple(host or "0.0.0.0", int(port), app, threaded=True)


if __name__ == "__main__":
    main()
