#!/usr/bin/env bash
# Usage: scripts/run-experiments.sh [--set KEY=VALUE ...]   (make experiments EXPERIMENTS_ARGS=...)
# Trains every preset `mnist-job presets` lists, one after the other, into the MLflow experiment
# $EXPERIMENTS_EXPERIMENT (default: experiments), then prints `mnist-job compare` of those runs: the
# params that differ and test accuracy, loss, training time, images/s with deltas to the first
# preset. Extra arguments go to every `mnist-job train` (e.g. a tiny budget). Run it where Ray may
# start (make experiments runs it in a loopback-only network namespace, scripts/in-netns.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
experiment=${EXPERIMENTS_EXPERIMENT:-experiments}
if ! listing=$("$PY" -m mnist_job presets 2>&1); then
  echo "experiments: \`mnist-job presets\` failed; this needs the presets (mnist_job/presets/):" >&2
  echo "$listing" >&2
  exit 2
fi
# `mnist-job presets` prints each name first on its line; indented lines describe it
mapfile -t names < <(awk '/^[A-Za-z0-9]/ {print $1}' <<<"$listing")
if [ "${#names[@]}" -lt 2 ]; then
  echo "experiments: fewer than 2 presets listed by \`mnist-job presets\`: nothing to compare" >&2
  exit 2
fi
stamp=$(date -u +%Y%m%d-%H%M%S)
out=outputs/experiments/$stamp
ids=()
for name in "${names[@]}"; do
  echo "experiments: training preset $name" >&2
  "$PY" -m mnist_job train --preset "$name" --set "train.run_name=exp-$stamp-$name" \
    --set "mlflow.experiment=$experiment" --set "train.output_dir=$out/$name" \
    --set "train.storage_path=$out/ray" "$@" >&2
  ids+=("$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["run_id"])' "$out/$name/run.json")")
done
"$PY" -m mnist_job compare "${ids[@]}" --experiment "$experiment" --out "$out"
