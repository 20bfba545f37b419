# A local Kubernetes cluster without Docker: upstream etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (v1.35) and the KubeRay operator as host processes, with the project's node agent in the
# kubelet's place (scripts/cluster-up.sh; docs/kubernetes.md, "The local cluster"). Included from the Makefile
# (include mk/*.mk). State, logs and certificates: .cluster/ (gitignored). Needs root and Go.
# CLUSTER_NO_NODE=1 make cluster-up: the control plane and the operator only.

.PHONY: cluster-tools
cluster-tools: ## build etcd, the Kubernetes servers and the KubeRay operator into a cache (first time ~7 min on 2 cores; then a second)
	bash scripts/cluster-tools.sh

.PHONY: cluster-up
cluster-up: cluster-tools venv ## start the local cluster + KubeRay operator + node agent; prints export KUBECONFIG=...
	bash scripts/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## stop the local cluster (every process it started), remove its bridge and etcd data; keeps .cluster/pki
	bash scripts/cluster-down.sh

.PHONY: test-kubernetes
test-kubernetes: test-location data tools cluster-tools ## tests/kubernetes alone: every cluster user path and fault on a fresh local cluster (~25 min on 2 cores)
	scripts/run-tests.sh tests/kubernetes -s
