#!/usr/bin/env bash
# Usage: scripts/run-tests.sh [PYTEST ARGS...]
# pytest with the venv's interpreter and the shared environment (project.env), inside a
# network namespace with only loopback (scripts/in-netns.sh; MNIST_NO_NETNS=1 runs on the
# host network). Everything must be installed before: the namespace has no network.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# shellcheck disable=SC1091  # checked on its own
source scripts/project-env.sh
export PATH="$PWD/$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1
exec scripts/in-netns.sh "$VENV/bin/python" -m pytest "$@"
