# Benchmark against the peers (bench/). Included from the Makefile (include mk/*.mk).
# `make bench`: full run (whole dataset, to 99.0% test accuracy; tens of minutes on 2 cores).
# `make bench-quick`: the CI smoke run (subset, one epoch; a few minutes).
# `make bench-micro`: micro-benchmarks of the project's training step (width, threads, batch, layout, mkldnn).
# Results: bench/results/latest.{json,md,png} (micro: micro.json). Ray runs in a private network
# namespace with only loopback (scripts/in-netns.sh, docs/design-notes.md); MNIST_NO_NETNS=1 runs
# on the host network instead (it replaces BENCH_NO_NETNS).

BENCH_OUT ?= bench/results
BENCH_ARGS ?=

.PHONY: bench
bench: data ## benchmark vs pytorch/examples, single process, Ray 1/2 workers: bench/results/latest.{json,md,png}
	scripts/in-netns.sh $(abspath $(PY)) -m bench.run --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: data ## the benchmark's quick mode (CI): subset, one epoch, no 99% requirement
	scripts/in-netns.sh $(abspath $(PY)) -m bench.run --quick --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-micro
bench-micro: venv ## micro-benchmarks of the training step: bench/results/micro.json
	$(abspath $(PY)) -m bench.micro --out $(BENCH_OUT)/micro.json $(BENCH_ARGS)
