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

.PHONY: help venv data train repro evaluate mlflow-ui test test-fast lint bench bench-quick e2e-local clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' ; test $${PIPESTATUS[0]} -eq 0
	touch $@

venv: $(BIN)/.installed ## create .venv and install the package (reused when up to date)

data: venv ## fetch + prepare the dataset (DVC pipeline) and push it to the DVC remote
	dvc repro prepare
	dvc push data/mnist

train: data ## the whole job on embedded defaults: local Ray, SQLite MLflow, local DVC remote
	mnist-job train
	mnist-job evaluate
	@echo "MLflow UI on these runs: make mlflow-ui"

repro: venv ## the DVC pipeline: fetch -> prepare -> train -> evaluate (only what changed)
	dvc repro
	dvc metrics show

evaluate: venv ## re-score outputs/model on the test set: outputs/metrics.json + plots
	mnist-job evaluate

mlflow-ui: venv ## MLflow UI on the local runs (http://127.0.0.1:5000)
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000

test: data tools ## every test, inside a network namespace with only loopback
	scripts/run-tests.sh

test-fast: data tools ## the tests not marked slow
	scripts/run-tests.sh -m "not slow"

lint: venv ## ruff
	ruff check mnist_job tests bench

clean: ## remove outputs, local runs and caches (not the venv or the data)
	rm -rf outputs mlruns .cache .pytest_cache

-include mk/*.mk
