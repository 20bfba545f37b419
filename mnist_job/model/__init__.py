"""The network and how checkpoints of it are loaded."""
