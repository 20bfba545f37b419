# Kubernetes / KubeRay targets. Included from the Makefile: `include mk/kubernetes.mk`.
# Cluster targets (image, kind-*, deploy-rayjob, logs, mlflow-ui-k8s) need Docker,
# kind or a cluster; the others (manifests, lint-charts, scan, test-manifests)
# run anywhere with PyPI access (tools come from scripts/install-tools.sh).

VENV ?= .venv
PY = $(VENV)/bin/python
TOOLS = .tools/bin
HELM = $(TOOLS)/helm
KUBECTL = $(TOOLS)/kubectl

VARIANT ?= cpu
IMAGE_REPO ?= kuberay-mnist
IMAGE_TAG ?= dev-$(VARIANT)
IMAGE ?= $(IMAGE_REPO):$(IMAGE_TAG)
KIND_CLUSTER ?= kuberay-mnist
NAMESPACE ?= mnist
PLATFORM_RELEASE ?= mnist-platform
RAYJOB_RELEASE ?= mnist-train
# cpu-kind -> k8s/rayjob-cpu-kind.yaml, gpu -> k8s/rayjob.yaml
PROFILE ?= cpu-kind
RAYJOB_MANIFEST = $(if $(filter gpu,$(PROFILE)),k8s/rayjob.yaml,k8s/rayjob-$(PROFILE).yaml)

CHECKOV_OUT ?= .tools/checkov-rendered

.PHONY: tools image kind-load kind-up kind-down kind-e2e manifests deploy-rayjob logs \
	mlflow-ui-k8s lint-charts scan test-manifests

tools: ## helm, kubectl, hadolint, shellcheck, checkov into .tools/
	bash scripts/install-tools.sh

image: ## docker build the project image (VARIANT=cpu|gpu)
	@case "$(VARIANT)" in cpu|gpu) ;; *) echo "VARIANT must be cpu or gpu" >&2; exit 2;; esac
	docker build -f image/Dockerfile --build-arg VARIANT=$(VARIANT) \
		--build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

kind-load: ## load $(IMAGE) into the kind cluster
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

kind-up: ## kind cluster + operator + platform + dataset in MinIO (CPU profile)
	KIND_CLUSTER=$(KIND_CLUSTER) NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) \
	IMAGE=$(IMAGE_REPO):dev-cpu PY=$(PY) bash scripts/kind-up.sh

kind-down: ## delete the kind cluster
	KIND_CLUSTER=$(KIND_CLUSTER) bash scripts/kind-down.sh

kind-e2e: kind-up ## kind-up, then the CPU RayJob to SUCCEEDED
	$(MAKE) deploy-rayjob PROFILE=cpu-kind

manifests: ## regenerate k8s/*.yaml from the charts
	bash scripts/install-tools.sh helm
	NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) RAYJOB_RELEASE=$(RAYJOB_RELEASE) \
	bash scripts/render-manifests.sh k8s

deploy-rayjob: ## apply k8s/rayjob[-PROFILE].yaml and wait for SUCCEEDED (PROFILE=cpu-kind|gpu)
	NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) bash scripts/deploy-rayjob.sh $(RAYJOB_MANIFEST)

logs: ## follow the driver logs of the RayJob (through its submitter Job)
	$(KUBECTL) -n $(NAMESPACE) logs -f job/$(RAYJOB_RELEASE)

mlflow-ui-k8s: ## port-forward the in-cluster MLflow to http://localhost:5000
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/$(PLATFORM_RELEASE)-mlflow 5000:5000

lint-charts: ## helm lint both charts, hadolint the Dockerfile, shellcheck the scripts
	bash scripts/install-tools.sh helm hadolint shellcheck
	$(HELM) lint charts/kuberay-mnist-rayjob
	$(HELM) lint charts/kuberay-mnist-rayjob -f charts/kuberay-mnist-rayjob/values-cpu-kind.yaml
	$(HELM) lint charts/kuberay-mnist-platform -f charts/kuberay-mnist-platform/values-dev.yaml
	$(TOOLS)/hadolint image/Dockerfile
	$(TOOLS)/shellcheck scripts/*.sh

scan: ## checkov on the rendered manifests (all profiles) and the Dockerfile
	bash scripts/install-tools.sh helm checkov
	rm -rf $(CHECKOV_OUT) && mkdir -p $(CHECKOV_OUT)
	bash scripts/render-manifests.sh $(CHECKOV_OUT)
	bash scripts/helm-template.sh charts/kuberay-mnist-platform $(PLATFORM_RELEASE) $(NAMESPACE) \
		--set kuberay-operator.enabled=false > $(CHECKOV_OUT)/platform.yaml
	$(TOOLS)/checkov --config-file charts/.checkov.yaml --skip-download --compact --quiet \
		-d $(CHECKOV_OUT) --framework kubernetes
	$(TOOLS)/checkov --config-file charts/.checkov.yaml --skip-download --compact --quiet \
		-f image/Dockerfile --framework dockerfile

test-manifests: ## pytest tests/manifests (installs the tools on first run)
	$(PY) -m pytest tests/manifests -q
