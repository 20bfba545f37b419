# Work across runs (mnist_job/experiments/). Included from the Makefile (include mk/*.mk).
# `make ci-report`: CI's last step: trains the small fixed configuration in bench/ci-baseline.json
# (local Ray in a loopback-only network namespace, the embedded MLflow store) and prints it against
# the baseline; fails only when test accuracy drops beyond its tolerance.
# `make ci-baseline`: retrains it and rewrites bench/ci-baseline.json (old vs new printed); commit it.

CI_BASELINE ?= bench/ci-baseline.json

.PHONY: ci-report
ci-report: data ## train CI's fixed small configuration, compare with bench/ci-baseline.json (~2 min)
	scripts/in-netns.sh $(abspath $(PY)) -m mnist_job ci-report --baseline $(CI_BASELINE)

.PHONY: ci-baseline
ci-baseline: data ## retrain CI's configuration and rewrite bench/ci-baseline.json (review and commit the diff)
	scripts/in-netns.sh $(abspath $(PY)) -m mnist_job ci-report --baseline $(CI_BASELINE) --refresh
	git --no-pager diff --stat -- $(CI_BASELINE) || true

# `make experiments`: every preset trained and compared (scripts/run-experiments.sh); EXPERIMENTS_ARGS
# go to each `mnist-job train`, e.g. EXPERIMENTS_ARGS="--set train.epochs=1".
EXPERIMENTS_ARGS ?=

.PHONY: experiments
experiments: data ## train every preset (mnist-job presets) and print their comparison from MLflow
	PY=$(abspath $(PY)) scripts/in-netns.sh scripts/run-experiments.sh $(EXPERIMENTS_ARGS)
