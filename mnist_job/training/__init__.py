"""Ray Train: the driver (train stage) and the loop every worker runs."""
