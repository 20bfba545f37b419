# End-to-end harness (tests/e2e, driven by tests/support/kuberay): the CPU RayJob
# (charts/kuberay-mnist-rayjob + values-cpu-kind.yaml) run the way KubeRay would run it, each pod in a
# sandbox as rendered (read-only root, declared volumes as empty tmpfs, runAsUser, exactly its env):
# moto_server for MinIO, the bucket Job's and MLflow Deployment's pods, `dvc push` to the manifest's
# remote, KubeRay's `ray start` for the head and each worker replica, KubeRay's submitter command.
# Prints every substitution, the phase timings, the MLflow run id and the S3 keys. Included from the
# Makefile (include mk/*.mk). Steps it shares with `make kind-e2e` (scripts/kind-up.sh +
# scripts/deploy-rayjob.sh): bucket job, dvc push (remote add --local, endpointurl, push), the
# submitter, wait for SUCCEEDED. What it cannot reproduce: docs/kubernetes.md.

.PHONY: e2e-local
e2e-local: data ## the CPU RayJob end to end on local processes (S3 stand-in, mlflow server, Ray nodes), ~4-6 min
	scripts/run-tests.sh tests/e2e -m e2e -s -p no:cacheprovider

.PHONY: e2e-contract
e2e-contract: venv ## only the static chart/image/package contract checks of tests/e2e (seconds, no processes)
	scripts/run-tests.sh tests/e2e -m "e2e and not slow" -p no:cacheprovider
