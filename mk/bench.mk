# Benchmark against the peers (bench/). Included from the Makefile (include mk/*.mk).
# `make bench`: full run (whole dataset, to 99.0% test accuracy; tens of minutes on 2 cores).
# `make bench-quick`: the CI smoke run (subset, one epoch; a few minutes).
# `make bench-micro`: micro-benchmarks of the project's training step (width, threads, batch, layout, mkldnn).
# `make bench-serving`: requests/s and p50/p99 latency of `mnist-job serve` (single images, batches of 64).
# Results: bench/results/latest.{json,md,png} (micro: micro.json, serving: serving.{json,md}). Ray runs in a private network
# namespace with only loopback (scripts/in-netns.sh, docs/design-notes.md); MNIST_NO_NETNS=1 runs
# on the host network instead (it replaces BENCH_NO_NETNS).

BENCH_OUT ?= bench/results
BENCH_ARGS ?=

.PHONY: bench
bench: data ## benchmark vs pytorch/examples, single process, Ray 1/2 workers, then the serving figure
	scripts/in-netns.sh $(abspath $(PY)) -m bench.run --out $(BENCH_OUT) $(BENCH_ARGS)
	$(MAKE) bench-serving

# BENCH_SERVING_ARGS: e.g. --rounds 5 --requests 400 --concurrency 16 (bench/serving.py).
BENCH_SERVING_ARGS ?=

.PHONY: bench-serving
bench-serving: data ## serving figure: requests/s, p50/p99 latency of `mnist-job serve`: bench/results/serving.{json,md}
	scripts/in-netns.sh $(abspath $(PY)) -m bench.serving --out $(BENCH_OUT) $(BENCH_SERVING_ARGS)

.PHONY: bench-quick
bench-quick: data ## the benchmark's quick mode (CI): subset, one epoch, no 99% requirement
	scripts/in-netns.sh $(abspath $(PY)) -m bench.run --quick --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-micro
bench-micro: venv ## micro-benchmarks of the training step: bench/results/micro.json
	$(abspath $(PY)) -m bench.micro --out $(BENCH_OUT)/micro.json $(BENCH_ARGS)
