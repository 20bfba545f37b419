#!/usr/bin/env bash
# Run pytest inside a private network namespace that has only loopback, so Ray,
# MLflow and the S3 stand-in all live on 127.0.0.1 and the suite proves it needs
# no network (Ray otherwise talks to itself over the machine's routable address;
# see FIELD-NOTES). Everything must be installed before: the namespace has no network.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0
export PATH="$PWD/$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1

if [ "${MNIST_NO_NETNS:-0}" = 1 ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
if ! unshare -n true 2>/dev/null; then
  echo "run-tests: cannot create a network namespace (needs root or user namespaces);" >&2
  echo "run-tests: set MNIST_NO_NETNS=1 to run on the host network instead" >&2
  exit 1
fi
args=$(printf ' %q' "$@")
exec unshare -n bash -c "ip link set lo up && exec '$VENV/bin/python' -m pytest$args"
