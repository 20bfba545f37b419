# Kubernetes / KubeRay targets. Included from the Makefile: `include mk/kubernetes.mk`.
# Cluster targets (image, kind-*, deploy-rayjob, deploy-rayservice, logs, mlflow-ui-k8s) need Docker,
# kind or a cluster; the others (manifests, lock, lint-charts, lint-workflows, scan,
# test-manifests) run anywhere with PyPI access (tools come from scripts/install-tools.sh).

# VENV, PY: the Makefile's.
TOOLS = .tools/bin
HELM = $(TOOLS)/helm
KUBECTL = $(TOOLS)/kubectl

VARIANT ?= cpu
# IMAGE: the image repository in your registry (no tag), e.g. ghcr.io/you/kuberay-mnist.
# `make manifests IMAGE=...` and `make deploy-rayjob IMAGE=...` render every project
# image from it (tags: the profile's, <version>-cpu / <version>-gpu); empty: the
# charts' default (ghcr.io/kuberay-mnist/kuberay-mnist, published by
# .github/workflows/release.yml), or the local kuberay-mnist:dev-cpu for kind.
IMAGE ?=
# `make deploy-rayjob SET="lifecycle.deleteClusterAfterSeconds=60"`: chart values for this deployment only.
SET ?=
# `make image` builds $(IMAGE_REPO):$(IMAGE_TAG) (local kuberay-mnist:dev-<variant> by default).
IMAGE_REPO ?= $(if $(IMAGE),$(IMAGE),kuberay-mnist)
IMAGE_TAG ?= dev-$(VARIANT)
LOCAL_IMAGE = $(IMAGE_REPO):$(IMAGE_TAG)
KIND_CLUSTER ?= kuberay-mnist
# NAMESPACE, PLATFORM_RELEASE, RAYJOB_RELEASE: project.env (included by the Makefile).
# cpu-kind (values-cpu-kind.yaml) or gpu (values.yaml)
PROFILE ?= cpu-kind
# Dependency locks the image installs (make lock): one per target architecture.
LOCK_ARCHES = x86_64 aarch64

CHECKOV_OUT ?= .tools/checkov-rendered

.PHONY: tools
tools: ## helm, kubectl, hadolint, shellcheck, actionlint, uv, checkov into .tools/
	bash scripts/install-tools.sh

# Every lock line carries the sha256 of each file PyPI serves for it: the image installs with
# `pip install --require-hashes` (image/Dockerfile), so a file that changes on the index fails the build.
.PHONY: lock
lock: ## requirements/lock-linux-<arch>.txt from pyproject.toml (uv pip compile --generate-hashes, x86_64 + aarch64)
	bash scripts/install-tools.sh uv
	@for arch in $(LOCK_ARCHES); do \
		echo "lock: requirements/lock-linux-$$arch.txt"; \
		$(TOOLS)/uv pip compile pyproject.toml --quiet --python-version 3.11 --generate-hashes \
			--python-platform $$arch-manylinux_2_28 --custom-compile-command "make lock" \
			--output-file requirements/lock-linux-$$arch.txt \
			|| exit 1; \
	done

# The CPU image's torch and torchvision come from PyTorch's CPU index alone (wheels without CUDA);
# their hashes need that index, which the machines this project is built on cannot reach: run this
# where https://download.pytorch.org answers, and commit the two files.
TORCH_CPU_INDEX_URL ?= https://download.pytorch.org/whl/cpu
.PHONY: lock-torch-cpu
lock-torch-cpu: ## requirements/torch-cpu-linux-<arch>.txt: torch/torchvision +cpu with hashes (needs download.pytorch.org)
	bash scripts/install-tools.sh uv
	@torch=$$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml); \
	vision=$$(sed -n 's/^ *"torchvision==\([^"]*\)".*/\1/p' pyproject.toml); \
	printf 'torch==%s+cpu\ntorchvision==%s+cpu\n' "$$torch" "$$vision" > requirements/torch-cpu.in; \
	for arch in $(LOCK_ARCHES); do \
		echo "lock: requirements/torch-cpu-linux-$$arch.txt"; \
		$(TOOLS)/uv pip compile requirements/torch-cpu.in --quiet --python-version 3.11 --no-deps --generate-hashes \
			--index-url $(TORCH_CPU_INDEX_URL) --python-platform $$arch-manylinux_2_28 \
			--custom-compile-command "make lock-torch-cpu" --output-file requirements/torch-cpu-linux-$$arch.txt \
			|| exit 1; \
	done

# The base images by digest: image/base-digests.txt (`<variant> <amd64|arm64> sha256:...`), which
# `make image` and the release workflow pass as BASE_DIGEST_AMD64/ARM64. Needs Docker Hub (docker
# buildx imagetools); run where it answers and commit the file.
RAY_BASE ?= rayproject/ray
RAY_BASE_TAG ?= 2.60.0-py311
.PHONY: pin-base
pin-base: ## image/base-digests.txt: the digest of each Ray base image (needs Docker Hub)
	@{ echo "# make pin-base: the digest of $(RAY_BASE):$(RAY_BASE_TAG)-<variant>[-aarch64]"; \
	for variant in cpu gpu; do \
		for arch in amd64 arm64; do \
			suffix=$$([ $$arch = arm64 ] && echo -aarch64); \
			digest=$$(docker buildx imagetools inspect "$(RAY_BASE):$(RAY_BASE_TAG)-$$variant$$suffix" \
				--format '{{.Manifest.Digest}}') || exit 1; \
			echo "$$variant $$arch $$digest"; \
		done; \
	done; } > image/base-digests.txt.new && mv image/base-digests.txt.new image/base-digests.txt
	cat image/base-digests.txt

.PHONY: image
image: ## docker build the project image (VARIANT=cpu|gpu) as $(IMAGE_REPO):$(IMAGE_TAG)
	@case "$(VARIANT)" in cpu|gpu) ;; *) echo "VARIANT must be cpu or gpu" >&2; exit 2;; esac
	@for arch in amd64 arm64; do grep -q "^$(VARIANT) $$arch sha256:" image/base-digests.txt \
		|| { echo "image/base-digests.txt has no $(VARIANT) $$arch digest: run make pin-base where Docker Hub answers" >&2; exit 1; }; done
	docker build -f image/Dockerfile --build-arg VARIANT=$(VARIANT) \
		--build-arg BASE_DIGEST_AMD64=$$(awk '$$1 == "$(VARIANT)" && $$2 == "amd64" {print $$3}' image/base-digests.txt) \
		--build-arg BASE_DIGEST_ARM64=$$(awk '$$1 == "$(VARIANT)" && $$2 == "arm64" {print $$3}' image/base-digests.txt) \
		--build-arg GIT_COMMIT=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(LOCAL_IMAGE) .

.PHONY: kind-load
kind-load: ## load $(IMAGE_REPO):$(IMAGE_TAG) into the kind cluster
	kind load docker-image $(LOCAL_IMAGE) --name $(KIND_CLUSTER)

.PHONY: kind-up
kind-up: ## kind cluster (checked for size) + KubeRay operator + platform + dataset in MinIO (CPU profile)
	KIND_CLUSTER=$(KIND_CLUSTER) NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) \
	LOCAL_IMAGE=kuberay-mnist:dev-cpu PY=$(PY) bash scripts/kind-up.sh

.PHONY: kind-down
kind-down: ## delete the kind cluster
	KIND_CLUSTER=$(KIND_CLUSTER) bash scripts/kind-down.sh

.PHONY: kind-e2e
kind-e2e: kind-up ## kind-up, then the CPU RayJob to SUCCEEDED
	$(MAKE) deploy-rayjob PROFILE=cpu-kind

.PHONY: manifests
manifests: ## regenerate the static k8s/*.yaml from the charts (IMAGE=<your repository> for your registry)
	bash scripts/install-tools.sh helm
	NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) RAYJOB_RELEASE=$(RAYJOB_RELEASE) \
	SERVE_RELEASE=$(SERVE_RELEASE) IMAGE=$(IMAGE) bash scripts/render-manifests.sh k8s

.PHONY: deploy-rayjob
deploy-rayjob: ## render a new RayJob <release>-<UTC time> (PROFILE=cpu-kind|gpu, IMAGE=..., SET="key=value ..."), apply it, wait for the end
	bash scripts/install-tools.sh helm kubectl
	NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) RAYJOB_RELEASE=$(RAYJOB_RELEASE) \
	PROFILE=$(PROFILE) IMAGE=$(IMAGE) bash scripts/deploy-rayjob.sh $(if $(SET),-- $(addprefix --set ,$(SET)))

.PHONY: deploy-rayservice
deploy-rayservice: ## render the RayService serving the champion (PROFILE=cpu-kind|gpu, IMAGE=..., SET="key=value ..."), apply it, wait until ready
	bash scripts/install-tools.sh helm kubectl
	NAMESPACE=$(NAMESPACE) PLATFORM_RELEASE=$(PLATFORM_RELEASE) SERVE_RELEASE=$(SERVE_RELEASE) \
	PROFILE=$(PROFILE) IMAGE=$(IMAGE) bash scripts/deploy-rayservice.sh $(if $(SET),-- $(addprefix --set ,$(SET)))

.PHONY: logs
logs: ## follow the driver logs of the newest RayJob (through its submitter Job)
	@job=$$($(KUBECTL) -n $(NAMESPACE) get rayjobs -l app.kubernetes.io/instance=$(RAYJOB_RELEASE) \
		--sort-by=.metadata.creationTimestamp -o jsonpath='{.items[-1:].metadata.name}'); \
	test -n "$$job" || { echo "no RayJob of release $(RAYJOB_RELEASE) in namespace $(NAMESPACE)" >&2; exit 1; }; \
	$(KUBECTL) -n $(NAMESPACE) logs -f job/$$job

.PHONY: mlflow-ui-k8s
mlflow-ui-k8s: ## port-forward the in-cluster MLflow to http://localhost:5000
	$(KUBECTL) -n $(NAMESPACE) port-forward svc/$(PLATFORM_RELEASE)-mlflow 5000:5000

.PHONY: lint-charts
lint-charts: ## helm lint both charts, hadolint the Dockerfile, shellcheck the scripts
	bash scripts/install-tools.sh helm hadolint shellcheck
	$(HELM) lint charts/kuberay-mnist-rayjob
	$(HELM) lint charts/kuberay-mnist-rayjob -f charts/kuberay-mnist-rayjob/values-cpu-kind.yaml
	$(HELM) lint charts/kuberay-mnist-platform -f charts/kuberay-mnist-platform/values-dev.yaml
	$(HELM) lint charts/kuberay-mnist-platform -f charts/kuberay-mnist-platform/values-production.yaml
	$(TOOLS)/hadolint image/Dockerfile
	$(TOOLS)/shellcheck scripts/*.sh

.PHONY: lint-workflows
lint-workflows: ## actionlint the GitHub Actions workflows
	bash scripts/install-tools.sh actionlint shellcheck
	PATH=$(abspath $(TOOLS)):$$PATH $(TOOLS)/actionlint .github/workflows/*.yml

.PHONY: scan
scan: ## checkov on the rendered manifests (all profiles; dev renders with their own skips) and the Dockerfile
	bash scripts/install-tools.sh helm checkov
	rm -rf $(CHECKOV_OUT) && mkdir -p $(CHECKOV_OUT)/rendered $(CHECKOV_OUT)/all $(CHECKOV_OUT)/dev
	bash scripts/render-manifests.sh $(CHECKOV_OUT)/rendered
	mv $(CHECKOV_OUT)/rendered/rayjob.yaml $(CHECKOV_OUT)/rendered/rayservice.yaml $(CHECKOV_OUT)/all/
	mv $(CHECKOV_OUT)/rendered/platform-dev.yaml $(CHECKOV_OUT)/rendered/rayjob-cpu-kind.yaml \
		$(CHECKOV_OUT)/rendered/rayservice-cpu-kind.yaml $(CHECKOV_OUT)/dev/
	bash scripts/helm-template.sh charts/kuberay-mnist-platform $(PLATFORM_RELEASE) $(NAMESPACE) \
		> $(CHECKOV_OUT)/all/platform.yaml
	bash scripts/helm-template.sh charts/kuberay-mnist-platform $(PLATFORM_RELEASE) $(NAMESPACE) \
		-f charts/kuberay-mnist-platform/values-production.yaml > $(CHECKOV_OUT)/all/platform-production.yaml
	$(TOOLS)/checkov --config-file charts/.checkov.yaml --skip-download --compact --quiet \
		-d $(CHECKOV_OUT)/all --framework kubernetes
	$(TOOLS)/checkov --config-file charts/.checkov-dev.yaml --skip-download --compact --quiet \
		-d $(CHECKOV_OUT)/dev --framework kubernetes
	$(TOOLS)/checkov --config-file charts/.checkov.yaml --skip-download --compact --quiet \
		-f image/Dockerfile --framework dockerfile

.PHONY: test-manifests
test-manifests: ## pytest tests/manifests (installs the tools on first run)
	$(PY) -m pytest tests/manifests -q
