"""MLflow: a run per training, metrics while it trains, and the final results and registry version."""
