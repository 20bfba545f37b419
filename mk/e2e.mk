# End-to-end harness (tests/e2e): the CPU RayJob (charts/kuberay-mnist-rayjob + values-cpu-kind.yaml)
# run for real on local processes, the way KubeRay would run it: moto_server for MinIO, the chart's
# bucket job command, `mlflow server` with the Deployment's arguments, `dvc push` to the manifest's
# remote, `ray start` head + one node per worker replica (own mount namespace, empty data cache),
# the manifest's entrypoint and runtime env through the Ray Jobs API. Prints every substitution,
# the phase timings, the MLflow run id and the S3 keys. Included from the Makefile (-include mk/*.mk).
# Steps it shares with `make kind-e2e` (scripts/kind-up.sh + scripts/deploy-rayjob.sh): bucket job,
# dvc push (remote add --local, endpointurl, push), submit the entrypoint, wait for SUCCEEDED.

.PHONY: e2e-local e2e-contract

e2e-local: data ## the CPU RayJob end to end on local processes (S3 stand-in, mlflow server, Ray nodes), ~4-6 min
	scripts/run-tests.sh tests/e2e -m e2e -s -p no:cacheprovider

e2e-contract: venv ## only the static chart/image/package contract checks of tests/e2e (seconds, no processes)
	scripts/run-tests.sh tests/e2e -m "e2e and not slow" -p no:cacheprovider
