"""The endpoint's ConsumedCapacity for BatchWriteItem and BatchGetItem follows DynamoDB's documented rules
(include.local_aws.dynamodb_consumed_capacity): moto's own numbers (1.0 per request, one per key) would make the
pipeline's cost report fiction."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from include.local_aws.dynamodb_consumed_capacity import consumed_capacity_patch_problems, item_bytes

TABLE = "consumed-capacity"


def test_the_moto_internals_the_patch_relies_on_are_unchanged() -> None:
    assert consumed_capacity_patch_problems() == []


@pytest.fixture
def dynamodb(local_aws: Any) -> Any:
    client = boto3.client("dynamodb", endpoint_url=local_aws.url, region_name="us-east-1")
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "importId", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "importId-index",
                "KeySchema": [{"AttributeName": "importId", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    return client


def test_documented_item_sizes() -> None:
    # Names and string values in UTF-8 bytes; numbers (significant digits + 1) // 2 + 1; booleans one byte.
    assert item_bytes({"id": {"S": "abc"}}) == 5
    assert item_bytes({"n": {"N": "12345"}}) == 1 + 4
    assert item_bytes({"n": {"N": "1.50"}}) == 1 + 2  # two significant digits
    assert item_bytes({"é": {"S": "é"}, "ok": {"BOOL": True}, "z": {"NULL": True}}) == 4 + 3 + 2


def test_writes_cost_a_unit_per_started_kb_and_index_entries_their_own(dynamodb: Any) -> None:
    small = {"id": {"S": "a"}, "importId": {"S": "i1"}, "v": {"S": "x"}}  # 12 bytes: 1 unit, in the index
    big = {"id": {"S": "b"}, "v": {"S": "x" * 1500}}  # 1503 bytes: 2 units, not in the index (no importId)
    response = dynamodb.batch_write_item(
        RequestItems={TABLE: [{"PutRequest": {"Item": item}} for item in (small, big)]},
        ReturnConsumedCapacity="INDEXES",
    )
    (consumed,) = response["ConsumedCapacity"]
    assert consumed["Table"] == {"CapacityUnits": 3.0}
    # The index entry of `small`: table key + index key + 100 bytes of overhead, one unit.
    assert consumed["GlobalSecondaryIndexes"] == {"importId-index": {"CapacityUnits": 1.0}}
    assert consumed["CapacityUnits"] == 4.0
    unasked = dynamodb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": small}}]})
    assert "ConsumedCapacity" not in unasked


def test_reads_cost_half_a_unit_per_started_4_kb_when_eventually_consistent(dynamodb: Any) -> None:
    items = [{"id": {"S": "s"}}, {"id": {"S": "l"}, "v": {"S": "y" * 5000}}]  # 2 bytes, 5003 bytes
    dynamodb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item}} for item in items]})
    keys = [{"id": {"S": "s"}}, {"id": {"S": "l"}}, {"id": {"S": "absent"}}]

    def units(consistent: bool) -> float:
        response = dynamodb.batch_get_item(
            RequestItems={TABLE: {"Keys": keys, "ConsistentRead": consistent, "ProjectionExpression": "id"}},
            ReturnConsumedCapacity="TOTAL",
        )
        (consumed,) = response["ConsumedCapacity"]
        return float(consumed["CapacityUnits"])

    # Projection does not lower the cost: the whole item is read. A missing key costs the minimum.
    assert units(consistent=False) == 0.5 + 1.0 + 0.5
    assert units(consistent=True) == 1 + 2 + 1
