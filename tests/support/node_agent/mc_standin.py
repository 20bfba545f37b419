"""What runs for MinIO's client image (``minio/mc``) on the node agent (images.py): the ``mc`` subcommands the
platform chart's buckets Job uses, against the S3 stand-in (minio_standin.py), with IAM calls for MinIO's admin
API. moto accepts any key, so the users and policies are recorded, not enforced; the platform chart's tests
check the policies themselves (tests/support/iam_s3.py).

    mc alias set NAME URL ACCESS_KEY SECRET_KEY
    mc admin policy create NAME POLICY FILE
    mc admin user add NAME ACCESS_KEY SECRET_KEY
    mc admin user info NAME ACCESS_KEY --json
    mc admin policy attach NAME POLICY --user ACCESS_KEY
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import boto3


def aliases_file() -> Path:
    return Path(os.environ.get("HOME", "/tmp")) / ".mc" / "aliases.json"


def iam(alias: str):
    entry = json.loads(aliases_file().read_text())[alias]
    return boto3.client("iam", endpoint_url=entry["url"], region_name="us-east-1",
                        aws_access_key_id=entry["key"], aws_secret_access_key=entry["secret"])


def alias_set(name: str, url: str, key: str, secret: str) -> None:
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                 aws_secret_access_key=secret).list_buckets()  # mc checks the endpoint answers
    path = aliases_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    aliases = json.loads(path.read_text()) if path.exists() else {}
    aliases[name] = {"url": url, "key": key, "secret": secret}
    path.write_text(json.dumps(aliases))
    print(f"Added `{name}` successfully.")


def admin(args: list[str]) -> None:
    what, verb, alias, *rest = args
    client = iam(alias)
    if (what, verb) == ("policy", "create"):
        name, file = rest
        try:
            client.create_policy(PolicyName=name, PolicyDocument=Path(file).read_text())
        except client.exceptions.EntityAlreadyExistsException:
            pass
        print(f"Created policy `{name}` successfully.")
    elif (what, verb) == ("user", "add"):
        try:
            client.create_user(UserName=rest[0])
        except client.exceptions.EntityAlreadyExistsException:
            pass
        print(f"Added user `{rest[0]}` successfully.")
    elif (what, verb) == ("user", "info"):
        attached = client.list_attached_user_policies(UserName=rest[0])["AttachedPolicies"]
        print(json.dumps({"status": "success", "accessKey": rest[0],
                          "policyName": ",".join(p["PolicyName"] for p in attached)}))
    elif (what, verb) == ("policy", "attach"):
        policy, _, user = rest
        arn = next(p["Arn"] for p in client.list_policies()["Policies"] if p["PolicyName"] == policy)
        client.attach_user_policy(UserName=user, PolicyArn=arn)
        print(f"Attached Policies: [{policy}] To User: {user}")
    else:
        raise SystemExit(f"mc (stand-in): admin {what} {verb} is not implemented")


def main(argv: list[str]) -> None:
    if argv[:2] == ["alias", "set"]:
        alias_set(*argv[2:6])
    elif argv[:1] == ["admin"]:
        admin(argv[1:])
    else:
        raise SystemExit(f"mc (stand-in): {' '.join(argv[:2])} is not implemented (tests/support/node_agent/mc_standin.py)")


if __name__ == "__main__":
    main(sys.argv[1:])
