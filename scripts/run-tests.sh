#!/usr/bin/env bash
# Usage: scripts/run-tests.sh [PYTEST ARGS...]
#        scripts/run-tests.sh --check-location   (only the location check below; make test runs it first)
# pytest with the venv's interpreter and the shared environment (project.env), inside a
# network namespace with only loopback (scripts/in-netns.sh; MNIST_NO_NETNS=1 runs on the
# host network). Everything must be installed before: the namespace has no network.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# The pods of the local cluster each get their own /tmp, which hides anything of the
# project's below it: refuse that in one line instead of failing every pod test.
for path in "$PWD" "$(realpath -m "$VENV")"; do
  case "$path/" in /tmp/*)
    echo "run-tests: $path is under /tmp, which every test pod replaces with its own: clone the project (and its venv) elsewhere, e.g. under /var/tmp or your home" >&2
    exit 2 ;;
  esac
done
if [ "${1:-}" = --check-location ]; then exit 0; fi
# shellcheck disable=SC1091  # checked on its own
source scripts/project-env.sh
export PATH="$PWD/$VENV/bin:$PATH"
export PYTHONUNBUFFERED=1
exec scripts/in-netns.sh "$VENV/bin/python" -m pytest "$@"
