"""moto_server with IAM enforced: S3 requests are authenticated and authorized against IAM users' policies.

moto authenticates only after INITIAL_NO_AUTH_ACTION_COUNT requests; here that count is exactly the three
calls that bootstrap an admin user (create it, give it `*`, make its key). Every request after them,
the admin's included, is checked: signed by a known key and allowed by that user's policies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loopback import services

BOOTSTRAP_CALLS = 3
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass
class IamS3:
    process: services.Managed
    endpoint: str
    admin_key: tuple[str, str]

    def client(self, service: str, key: tuple[str, str]):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key[0], aws_secret_access_key=key[1])

    def user(self, name: str, policy: dict) -> tuple[str, str]:
        """An IAM user with ``policy`` as its only (inline) policy: its access key."""
        iam = self.client("iam", self.admin_key)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


def start_iam_s3(log_dir: Path) -> IamS3:
    port = services.free_port()
    env = services.base_env(INITIAL_NO_AUTH_ACTION_COUNT=str(BOOTSTRAP_CALLS))
    process = services.start("moto-iam-s3", [str(services.VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                             log_dir, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(f"{endpoint}/moto-api/", 60, process)  # moto's own API: not an AWS action, not counted
        import boto3

        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
    except BaseException:
        process.stop()
        raise
    return IamS3(process, endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
