# kuberay-mnist. `make train` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# The shared environment (telemetry off, namespace and release names), exported to every recipe;
# override a name on the command line: make manifests NAMESPACE=...
include project.env
export $(shell sed -n 's/^\([A-Z][A-Z0-9_]*\)=.*/\1/p' project.env)
# The venv's commands first on PATH (dvc.yaml calls mnist-job).
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# pip prints each package as it goes (a first install takes minutes); the local index's
# "WARNING: Location ... is ignored" lines are noise.
$(BIN)/.installed: pyproject.toml
	@echo "venv: $(VENV) with the package and its dev tools (first time: a few minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PYTHONUNBUFFERED=1 $(PY) -m pip install --progress-bar off -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' ; \
		test $${PIPESTATUS[0]} -eq 0
	touch $@

.PHONY: venv
venv: $(BIN)/.installed ## create .venv and install the package (reused when up to date)

.PHONY: data
data: venv ## fetch + prepare the dataset (DVC pipeline) and push it to the DVC remote
	dvc repro prepare prepare-blurred
	dvc push data/mnist data/mnist-blurred

# The stages themselves are in dvc.yaml, once: make runs them through DVC, which skips what
# has not changed since the last run (force a new run: dvc repro --force --single-item train evaluate).
.PHONY: train
train: data ## dvc.yaml's train + evaluate stages on embedded defaults (local Ray, SQLite MLflow): run id, accuracy
	dvc repro evaluate
	@$(PY) -c 'import json; r = json.load(open("outputs/run.json")); \
		print("run id:", r["run_id"]); print("test accuracy:", r["test_accuracy"]); print("registered:", r["registered"])'
	@echo "MLflow UI on these runs: make mlflow-ui; every metric: dvc metrics show"

.PHONY: evaluate
evaluate: venv ## re-score outputs/model on the test set: outputs/metrics.json + plots
	mnist-job evaluate

.PHONY: mlflow-ui
mlflow-ui: venv ## MLflow UI on the local runs (http://127.0.0.1:5000)
	mlflow ui --backend-store-uri "$$($(PY) -c 'from mnist_job.core.config import Runtime; print(Runtime.from_env().mlflow_uri)')" \
		--host 127.0.0.1 --port 5000

# Before anything is installed: a project under /tmp cannot run the pod tests (scripts/run-tests.sh says why).
.PHONY: test-location
test-location:
	@scripts/run-tests.sh --check-location

.PHONY: test
test: test-location data tools cluster-tools ## every test, inside a network namespace with only loopback (the local cluster's included)
	scripts/run-tests.sh

.PHONY: test-fast
test-fast: test-location data tools cluster-tools ## the tests not marked slow
	scripts/run-tests.sh -m "not slow"

.PHONY: lint
lint: venv ## ruff
	ruff check mnist_job tests bench loopback

.PHONY: clean
clean: ## remove outputs, local runs and caches (not the venv or the data)
	rm -rf outputs mlruns .cache .pytest_cache

# Every file is required: a missing one fails here rather than leaving its targets undefined.
include mk/*.mk
