"""Work across runs: comparing them, checking a run against a committed baseline, searching hyperparameters."""
