"""kuberay-mnist: train an MNIST CNN with Ray Train, tracked in MLflow, data versioned with DVC."""

__version__ = "0.1.0"
