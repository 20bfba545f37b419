"""Real services on 127.0.0.1 for the tests and the benchmark: S3 (moto_server), an MLflow server, a Ray
cluster of ``ray start`` processes, ``mnist-job serve`` on it, and a small trained and registered network.

Both tests/ and bench/ use them, so they live beside both rather than in tests/support (the tests' own
helpers), which bench/ does not import.
"""
