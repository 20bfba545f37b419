# Benchmark against the peers (bench/). Included from the Makefile (include mk/*.mk).
# `make bench`: full run, 5 interleaved rounds = 5 seeds of every contender's fixed schedule (whole dataset;
#   about 70 minutes on 2 idle cores, more under load: bench/README.md), then the user's commands (about 15
#   minutes) and the serving figure.
# `make bench-quick`: the CI smoke run (2 rounds on a subset, one epoch; a few minutes on idle cores).
# `make bench-micro`: micro-benchmarks of the project's training step (width, threads, batch, layout, mkldnn).
# `make bench-serving`: requests/s and p50/p99 latency of `mnist-job serve` (single images, batches of 64).
# Results: bench/RESULTS.{json,md,png} (quick: bench/results/quick/; logs: bench/results/logs; micro: micro.json,
# serving: serving.{json,md} in bench/results). Ray runs in a private network
# namespace with only loopback (scripts/in-netns.sh, docs/design-notes.md); MNIST_NO_NETNS=1 runs
# on the host network instead (it replaces BENCH_NO_NETNS).

BENCH_OUT ?= bench/results
# BENCH_ARGS: e.g. --rounds 3, --only fast default, --examples-epochs 6 (python -m bench.run --help).
BENCH_ARGS ?=

.PHONY: bench
bench: data ## 5 interleaved rounds: pytorch/examples (+preloaded), fast, default, Ray 2 workers; then the user's commands and serving
	scripts/in-netns.sh $(abspath $(PY)) -m bench.run $(BENCH_ARGS)
	$(MAKE) bench-commands
	$(MAKE) bench-serving

# BENCH_SERVING_ARGS: e.g. --rounds 5 --requests 400 --concurrency 16 (bench/serving.py).
BENCH_SERVING_ARGS ?=

.PHONY: bench-serving
bench-serving: data ## serving figure: requests/s, p50/p99 latency of `mnist-job serve`: bench/results/serving.{json,md}
	scripts/in-netns.sh $(abspath $(PY)) -m bench.serving --out $(BENCH_OUT) $(BENCH_SERVING_ARGS)

.PHONY: bench-quick
bench-quick: data ## the benchmark's quick mode (CI): 2 rounds, subset, one epoch, 80% target: bench/results/quick
	scripts/in-netns.sh $(abspath $(PY)) -m bench.run --quick $(BENCH_ARGS)

.PHONY: bench-micro
bench-micro: venv ## micro-benchmarks of the training step: bench/results/micro.json
	$(abspath $(PY)) -m bench.micro --out $(BENCH_OUT)/micro.json $(BENCH_ARGS)

# BENCH_COMMANDS_ARGS: e.g. --rounds 3, --set data.train_subset=10000 (bench/commands.py).
BENCH_COMMANDS_ARGS ?=

.PHONY: bench-commands
bench-commands: data ## what a user waits for: `mnist-job train --preset fast` and `mnist-job train`, exec to exit: bench/results/commands.{json,md}
	scripts/in-netns.sh $(abspath $(PY)) -m bench.commands --out $(BENCH_OUT) $(BENCH_COMMANDS_ARGS)
