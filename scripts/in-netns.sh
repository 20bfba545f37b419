#!/usr/bin/env bash
# Usage: scripts/in-netns.sh COMMAND [ARGS...]
# Runs COMMAND in a private network namespace that has only loopback, so Ray, MLflow
# and the S3 stand-in all meet on 127.0.0.1 and the run proves it needs no network
# (docs/design-notes.md, "Loopback-only network namespace"). Used by the tests
# (scripts/run-tests.sh) and the benchmark (mk/bench.mk). MNIST_NO_NETNS=1 runs
# COMMAND on the host network instead. Install everything first: the namespace
# has no network.
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
if [ "${MNIST_NO_NETNS:-0}" = 1 ]; then
  exec "$@"
fi
if ! unshare -n true 2>/dev/null; then
  echo "in-netns: cannot create a network namespace (needs root or user namespaces);" >&2
  echo "in-netns: set MNIST_NO_NETNS=1 to run on the host network instead" >&2
  exit 1
fi
# "$@" travels as arguments, not as text to re-parse: no quoting to get wrong.
exec unshare -n bash -c 'ip link set lo up && exec "$@"' in-netns "$@"
