"""The landing bucket: exists, public access blocked, default encryption on. Never deleted or emptied."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from batch_import.provisioning.outcome import ProvisioningError, ProvisionResult

log = logging.getLogger(__name__)

RESOURCE = "bucket"
PUBLIC_ACCESS_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def desired_encryption(kms_key_id: str) -> dict[str, Any]:
    """The default-encryption rule: SSE-S3 (AES256), or SSE-KMS with a bucket key when a key is configured."""
    if not kms_key_id:
        return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    return {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id},
        "BucketKeyEnabled": True,
    }


def ensure_bucket(s3_client: Any, *, bucket_name: str, region: str, kms_key_id: str = "") -> ProvisionResult:
    """Create the bucket if missing; block public access and set default encryption where they differ."""
    created = False
    if not _bucket_exists(s3_client, bucket_name):
        _create_bucket(s3_client, bucket_name, region)
        created = True

    changes: list[str] = []
    current_block = _public_access_block(s3_client, bucket_name)
    if current_block != PUBLIC_ACCESS_BLOCKED:
        s3_client.put_public_access_block(
            Bucket=bucket_name, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCKED)
        )
        changes.append(f"public access block: {current_block} -> all blocked")

    wanted_rule = desired_encryption(kms_key_id)
    current_rule = _encryption_rule(s3_client, bucket_name)
    if _comparable_rule(current_rule) != _comparable_rule(wanted_rule):
        s3_client.put_bucket_encryption(
            Bucket=bucket_name, ServerSideEncryptionConfiguration={"Rules": [wanted_rule]}
        )
        changes.append(f"default encryption: {_algorithm(current_rule)} -> {_algorithm(wanted_rule)}")
    if created:
        changes.insert(0, f"region {region}")
    return ProvisionResult.from_changes(RESOURCE, bucket_name, created=created, changes=changes)


def _bucket_exists(s3_client: Any, bucket_name: str) -> bool:
    try:
        s3_client.head_bucket(Bucket=bucket_name)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ProvisioningError(
                f"S3 bucket {bucket_name}: exists but is not accessible with these credentials "
                "(owned by another account, or access denied); choose another bucket.name"
            ) from err
        raise
    return True


def _create_bucket(s3_client: Any, bucket_name: str, region: str) -> None:
    arguments: dict[str, Any] = {"Bucket": bucket_name}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3_client.create_bucket(**arguments)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code == "BucketAlreadyOwnedByYou":
            log.info("S3 bucket %s was created concurrently; continuing", bucket_name)
        elif code == "BucketAlreadyExists":
            raise ProvisioningError(
                f"S3 bucket {bucket_name}: the name is taken by another account; choose another bucket.name"
            ) from err
        else:
            raise
    s3_client.get_waiter("bucket_exists").wait(Bucket=bucket_name)
    log.info("S3 bucket %s created in %s", bucket_name, region)


def _public_access_block(s3_client: Any, bucket_name: str) -> dict[str, bool] | None:
    try:
        response = s3_client.get_public_access_block(Bucket=bucket_name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise
    return {key: bool(response["PublicAccessBlockConfiguration"].get(key)) for key in PUBLIC_ACCESS_BLOCKED}


def _encryption_rule(s3_client: Any, bucket_name: str) -> dict[str, Any] | None:
    try:
        response = s3_client.get_bucket_encryption(Bucket=bucket_name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ServerSideEncryptionConfigurationNotFoundError":
            return None
        raise
    rules = response.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    return rules[0] if rules else None


def _comparable_rule(rule: dict[str, Any] | None) -> tuple[str, str, bool] | None:
    if not rule:
        return None
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    algorithm = default.get("SSEAlgorithm", "")
    if algorithm == "AES256":
        # The bucket-key flag only means something for KMS; S3 may report it either way for AES256.
        return (algorithm, "", False)
    return (algorithm, default.get("KMSMasterKeyID", ""), bool(rule.get("BucketKeyEnabled", False)))


def _algorithm(rule: dict[str, Any] | None) -> str:
    if not rule:
        return "none"
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    key = default.get("KMSMasterKeyID")
    return f"{default.get('SSEAlgorithm')}({key})" if key else str(default.get("SSEAlgorithm"))
