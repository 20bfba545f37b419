"""S3 (MinIO in the cluster): fail-fast checks and bucket creation.

Credentials are never passed around: boto3 reads AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY from the environment (a Kubernetes Secret in the cluster).
"""

from __future__ import annotations

import logging
import urllib.parse

from mnist_job.core.errors import InvalidInput, ServiceUnavailable

logger = logging.getLogger(__name__)


def _client(endpoint: str | None, connect_timeout: float = 3.0, attempts: int = 2):
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=connect_timeout, read_timeout=10, retries={"max_attempts": attempts, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def split_s3_url(url: str, field: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidInput(f"{field}: {url!r} is not an s3://bucket/prefix URL")
    return parts.netloc, parts.path.lstrip("/")


def check_s3_location(url: str, endpoint: str | None, field: str) -> None:
    """The bucket of ``url`` exists and answers, or ServiceUnavailable naming endpoint and bucket."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, _ = split_s3_url(url, field)
    where = endpoint or "the default AWS endpoint"
    try:
        _client(endpoint).head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise ServiceUnavailable(f"S3 {where}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ServiceUnavailable(f"S3 {where}: bucket {bucket!r} of {field} does not exist") from None
        raise ServiceUnavailable(f"S3 {where}: bucket {bucket!r} of {field} refused access ({code})") from None
    except BotoCoreError as exc:
        raise ServiceUnavailable(f"S3 endpoint {where} is unreachable ({type(exc).__name__}) for {field}") from None


def ensure_buckets(buckets: list[str], endpoint: str | None, timeout: float) -> None:
    """Create each bucket unless it exists, retrying until the endpoint answers (MinIO starting up)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    client = _client(endpoint, attempts=1)
    waiting = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(2.0), reraise=True,
                       retry=retry_if_exception_type((BotoCoreError, ClientError)),
                       before_sleep=lambda state: logger.info(f"buckets: waiting for {endpoint} "
                                                      f"({type(state.outcome.exception()).__name__})"))
    try:
        existing = waiting(lambda: {b["Name"] for b in client.list_buckets().get("Buckets", [])})
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailable(f"S3 endpoint {endpoint} did not answer within {timeout:.0f} s: {exc}") from None
    for bucket in buckets:
        if bucket in existing:
            logger.info(f"buckets: {bucket} exists")
        else:
            client.create_bucket(Bucket=bucket)
            logger.info(f"buckets: created {bucket}")
