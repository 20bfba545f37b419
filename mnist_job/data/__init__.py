"""The dataset: its format on disk (manifest, checksums, IDX), the fetch and prepare stages, DVC and S3."""
