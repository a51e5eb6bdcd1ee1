"""The endpoint's GSI query fast path (include.local_aws.dynamodb_index_query) answers as DynamoDB does.

Items of several index partitions, some without the index attribute, ~4 KB each so one partition spans several
1 MB pages: every page sequence must return each matching key exactly once, in key order (or reversed), with
the counts of a plain client-side filter.
"""

from __future__ import annotations

from typing import Any

import pytest

from include.local_aws import LocalAws
from tests.local_aws.batch_jobs import client

TABLE = "index-query"
INDEX = "importSlot-index"
SLOTS = 3
ITEMS = 1_500


@pytest.fixture
def table_items(local_aws: LocalAws) -> tuple[Any, dict[str, list[str]]]:
    dynamodb = client(local_aws, "dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "importSlot", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": INDEX,
                "KeySchema": [{"AttributeName": "importSlot", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    expected: dict[str, list[str]] = {f"import#{slot}": [] for slot in range(SLOTS)}
    requests = []
    for number in range(ITEMS):
        key = f"k{(number * 7919) % ITEMS:05d}"
        item = {"id": {"S": key}, "pad": {"S": "x" * 4000}}
        if number % 10:  # every tenth item has no index attribute: never in the index
            slot = f"import#{number % SLOTS}"
            item["importSlot"] = {"S": slot}
            expected[slot].append(key)
        requests.append({"PutRequest": {"Item": item}})
    for start in range(0, len(requests), 25):
        dynamodb.batch_write_item(RequestItems={TABLE: requests[start : start + 25]})
    return dynamodb, {slot: sorted(keys) for slot, keys in expected.items()}


def query_pages(dynamodb: Any, slot: str, **options: Any) -> list[dict[str, Any]]:
    paginator = dynamodb.get_paginator("query")
    return list(
        paginator.paginate(
            TableName=TABLE,
            IndexName=INDEX,
            KeyConditionExpression="importSlot = :slot",
            ExpressionAttributeValues={":slot": {"S": slot}},
            **options,
        )
    )


def test_count_pages_add_up_to_the_partition(table_items: tuple[Any, dict[str, list[str]]]) -> None:
    dynamodb, expected = table_items
    for slot, keys in expected.items():
        pages = query_pages(dynamodb, slot, Select="COUNT")
        assert len(pages) > 1, "the partition should span several 1 MB pages"
        assert sum(page["Count"] for page in pages) == len(keys)
    assert query_pages(dynamodb, "import#none", Select="COUNT")[0]["Count"] == 0


@pytest.mark.parametrize(
    ("options", "reverse"),
    [
        pytest.param({}, False, id="forward"),
        pytest.param({"ScanIndexForward": False}, True, id="backward"),
        pytest.param({"Limit": 70}, False, id="limit"),
    ],
)
def test_pages_return_each_key_once_in_key_order(
    table_items: tuple[Any, dict[str, list[str]]], options: dict[str, Any], reverse: bool
) -> None:
    dynamodb, expected = table_items
    slot = "import#1"
    pages = query_pages(dynamodb, slot, **options)
    keys = [item["id"]["S"] for page in pages for item in page["Items"]]
    assert keys == sorted(expected[slot], reverse=reverse)
    assert all(set(item) == {"id", "importSlot"} for page in pages for item in page["Items"])  # KEYS_ONLY
