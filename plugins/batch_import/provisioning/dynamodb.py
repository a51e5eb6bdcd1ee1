"""The items table: on demand, the configured key schema, PITR on. Never deleted, nor are its indexes.

Verification needs no index (it reads the file's keys back). An opt-in KEYS_ONLY GSI on ``importId``
(config ``table.import_id_index``) lets users query one import's items, e.g. to undo it; it costs one index
write per item. Tables provisioned before carry the ``importSlot`` GSI the old verification counted with: it is
left in place (nothing is ever deleted) and each run says it is no longer needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from batch_import.provisioning.outcome import ProvisioningError, ProvisionResult
from batch_import.provisioning.polling import poll_until

log = logging.getLogger(__name__)

RESOURCE = "table"
INDEX_PARTITION_KEY = "importId"
LEGACY_INDEX_PARTITION_KEY = "importSlot"  # the GSI the pipeline used to count an import's items with
ON_DEMAND = "PAY_PER_REQUEST"

KeySchema = Sequence[tuple[str, str, str]]  # (attribute name, HASH|RANGE, S|N|B)


def ensure_table(
    dynamodb_client: Any,
    *,
    table_name: str,
    key_schema: KeySchema,
    import_id_index: str = "",
    timeout_seconds: float = 600,
    poll_seconds: float = 5,
) -> ProvisionResult:
    """Create the table if missing; otherwise check its keys and bring billing, the opt-in GSI and PITR in line.

    :param import_id_index: name of the opt-in KEYS_ONLY GSI on ``importId``; empty: no index
    """
    table = _describe_table(dynamodb_client, table_name)
    created = table is None
    changes: list[str] = []
    if table is None:
        _create_table(dynamodb_client, table_name, key_schema, import_id_index)
        table = _wait_active(dynamodb_client, table_name, timeout_seconds, poll_seconds)
    else:
        _check_key_schema(table, key_schema)
        if table["TableStatus"] != "ACTIVE" or _pending_indexes(table):
            table = _wait_active(dynamodb_client, table_name, timeout_seconds, poll_seconds)
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        if billing != ON_DEMAND:
            dynamodb_client.update_table(TableName=table_name, BillingMode=ON_DEMAND)
            changes.append(f"billing mode: {billing} -> {ON_DEMAND}")
            table = _wait_active(dynamodb_client, table_name, timeout_seconds, poll_seconds)
        for legacy in _legacy_indexes(table):
            log.info(
                "DynamoDB table %s: index %s (on %s) is no longer needed: verification reads the keys back; "
                "it is left in place (provisioning never deletes), delete it yourself to stop paying its writes",
                table_name,
                legacy,
                LEGACY_INDEX_PARTITION_KEY,
            )
        index = _find_index(table, import_id_index) if import_id_index else None
        if import_id_index and index is None:
            _create_index(dynamodb_client, table_name, import_id_index)
            changes.append(f"global secondary index {import_id_index} added")
            table = _wait_active(dynamodb_client, table_name, timeout_seconds, poll_seconds)
        elif index is not None:
            _check_index(table_name, index)

    if not _point_in_time_recovery_enabled(dynamodb_client, table_name):
        _enable_point_in_time_recovery(dynamodb_client, table_name, timeout_seconds, poll_seconds)
        changes.append("point-in-time recovery: off -> on")
    if created:
        changes.insert(
            0, f"{ON_DEMAND}, index {import_id_index}" if import_id_index else f"{ON_DEMAND}, no index"
        )
    return ProvisionResult.from_changes(
        RESOURCE, table_name, created=created, changes=changes, arn=table["TableArn"]
    )


def _describe_table(dynamodb_client: Any, table_name: str) -> dict[str, Any] | None:
    try:
        return dynamodb_client.describe_table(TableName=table_name)["Table"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


def _index_definition(index_name: str) -> dict[str, Any]:
    return {
        "IndexName": index_name,
        "KeySchema": [{"AttributeName": INDEX_PARTITION_KEY, "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }


def _create_table(dynamodb_client: Any, table_name: str, key_schema: KeySchema, index_name: str) -> None:
    attributes = {name: attr_type for name, _, attr_type in key_schema}
    indexes: dict[str, Any] = {}
    if index_name:
        if attributes.get(INDEX_PARTITION_KEY, "S") != "S":
            raise ProvisioningError(
                f"DynamoDB table {table_name}: key attribute {INDEX_PARTITION_KEY} must be a string; the job stamps "
                "it with the import id"
            )
        attributes[INDEX_PARTITION_KEY] = "S"
        indexes["GlobalSecondaryIndexes"] = [_index_definition(index_name)]
    try:
        dynamodb_client.create_table(
            TableName=table_name,
            BillingMode=ON_DEMAND,
            KeySchema=[{"AttributeName": name, "KeyType": role} for name, role, _ in key_schema],
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": attr_type} for name, attr_type in attributes.items()
            ],
            **indexes,
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        log.info("DynamoDB table %s was created concurrently; continuing", table_name)
    log.info("DynamoDB table %s created (%s, index %s)", table_name, ON_DEMAND, index_name or "none")


def _check_key_schema(table: dict[str, Any], key_schema: KeySchema) -> None:
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    actual = [
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")) for k in table["KeySchema"]
    ]
    wanted = [tuple(entry) for entry in key_schema]
    if actual != wanted:
        raise ProvisioningError(
            f"DynamoDB table {table['TableName']}: key schema {_format_keys(actual)} differs from the configured "
            f"{_format_keys(wanted)}; a table's keys cannot be changed in place and the table is never deleted. "
            "Configure a new table.name (and migrate the data) or restore the configured keys."
        )


def _format_keys(keys: Sequence[Sequence[str]]) -> str:
    return "[" + ", ".join(f"{name} {role} {attr_type}" for name, role, attr_type in keys) + "]"


def _find_index(table: dict[str, Any], index_name: str) -> dict[str, Any] | None:
    for index in table.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] == index_name:
            return index
    return None


def _legacy_indexes(table: dict[str, Any]) -> list[str]:
    """Indexes on ``importSlot``: what the pipeline's verification used to count with."""
    return [
        index["IndexName"]
        for index in table.get("GlobalSecondaryIndexes", [])
        if [k["AttributeName"] for k in index["KeySchema"]] == [LEGACY_INDEX_PARTITION_KEY]
    ]


def _check_index(table_name: str, index: dict[str, Any]) -> None:
    keys = [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]]
    projection = index.get("Projection", {}).get("ProjectionType")
    if keys != [(INDEX_PARTITION_KEY, "HASH")] or projection != "KEYS_ONLY":
        raise ProvisioningError(
            f"DynamoDB table {table_name}: index {index['IndexName']} has keys {keys} and projection "
            f"{projection}, not [({INDEX_PARTITION_KEY!r}, 'HASH')] and KEYS_ONLY; an index cannot be changed in "
            "place. Configure another table.import_id_index name (it is added next to the old one)."
        )


def _create_index(dynamodb_client: Any, table_name: str, index_name: str) -> None:
    dynamodb_client.update_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": INDEX_PARTITION_KEY, "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": _index_definition(index_name)}],
    )
    log.info("DynamoDB table %s: adding index %s", table_name, index_name)


def _pending_indexes(table: dict[str, Any]) -> list[str]:
    return [
        index["IndexName"]
        for index in table.get("GlobalSecondaryIndexes", [])
        if index.get("IndexStatus", "ACTIVE") != "ACTIVE"
    ]


def _wait_active(
    dynamodb_client: Any, table_name: str, timeout_seconds: float, poll_seconds: float
) -> dict[str, Any]:
    """Until the table and every index are ACTIVE (boto3's table_exists waiter ignores indexes)."""

    def describe() -> dict[str, Any]:
        return dynamodb_client.describe_table(TableName=table_name)["Table"]

    return poll_until(
        describe,
        lambda table: table["TableStatus"] == "ACTIVE" and not _pending_indexes(table),
        what=f"DynamoDB table {table_name} and its indexes to be ACTIVE",
        timeout_seconds=timeout_seconds,
        poll_seconds=poll_seconds,
    )


def _point_in_time_recovery_enabled(dynamodb_client: Any, table_name: str) -> bool:
    backups = dynamodb_client.describe_continuous_backups(TableName=table_name)[
        "ContinuousBackupsDescription"
    ]
    status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
    return status == "ENABLED"


def _enable_point_in_time_recovery(
    dynamodb_client: Any, table_name: str, timeout_seconds: float, poll_seconds: float
) -> None:
    """Turn PITR on; a table that was just created may refuse for a while (ContinuousBackupsUnavailable)."""

    def attempt() -> bool:
        try:
            dynamodb_client.update_continuous_backups(
                TableName=table_name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ContinuousBackupsUnavailableException":
                return False
            raise
        return True

    poll_until(
        attempt,
        bool,
        what=f"DynamoDB table {table_name} to accept point-in-time recovery",
        timeout_seconds=timeout_seconds,
        poll_seconds=poll_seconds,
    )
    log.info("DynamoDB table %s: point-in-time recovery enabled", table_name)
