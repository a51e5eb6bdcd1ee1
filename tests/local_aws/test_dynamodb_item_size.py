"""The endpoint's linear item-size check (include.local_aws.dynamodb_item_size) accepts and refuses as moto does.

moto's own check (``LimitedSizeDict.__setitem__``) is the reference: every item is built both ways and must be
accepted or refused alike, and the endpoint answers BatchWriteItem, PutItem and UpdateItem at the limit as moto does.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

from include.local_aws import LocalAws
from include.local_aws.dynamodb_item_size import (
    MOTO_ITEM_SIZE_LIMIT,
    _item_init,
    install_item_size_patch,
    item_size_patch_problems,
)
from tests.local_aws.batch_jobs import client

TABLE = "item-size"


def test_the_moto_internals_the_patch_relies_on_are_unchanged() -> None:
    assert item_size_patch_problems() == []


def _moto_accepts(attrs: dict[str, Any]) -> bool:
    """moto's own check: one LimitedSizeDict.__setitem__ per attribute, as moto's Item.__init__ does."""
    checked = LimitedSizeDict()
    try:
        for key, value in attrs.items():
            checked[key] = DynamoType(value)
    except ItemSizeTooLarge:
        return False
    return True


def _patched_accepts(attrs: dict[str, Any]) -> bool:
    item = object.__new__(Item)
    try:
        _item_init(item, DynamoType(attrs["id"]), None, attrs)
    except ItemSizeTooLarge:
        return False
    assert dict(item.attrs) == {key: DynamoType(value) for key, value in attrs.items()}
    return True


values = st.one_of(
    st.builds(lambda n: {"S": "x" * n}, st.integers(0, 150_000)),
    st.builds(lambda n: {"N": str(n)}, st.integers(0, 10**30)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.builds(lambda n: {"L": [{"S": "y" * n}] * 3}, st.integers(0, 60_000)),
    st.builds(lambda n: {"M": {"inner": {"S": "z" * n}, "flag": {"BOOL": True}}}, st.integers(0, 150_000)),
)


@settings(max_examples=300, deadline=None)
@given(attrs=st.dictionaries(st.text(min_size=1, max_size=8), values, min_size=1, max_size=8))
def test_same_verdict_as_moto_for_any_item(attrs: dict[str, Any]) -> None:
    attrs = {"id": {"S": "key"}, **attrs}

    assert _patched_accepts(attrs) == _moto_accepts(attrs)


@pytest.mark.parametrize("slack", [0, 1])
def test_same_verdict_as_moto_at_the_exact_limit(slack: int) -> None:
    fixed = len("id") + len("key") + len("pad")
    attrs = {"id": {"S": "key"}, "pad": {"S": "p" * (MOTO_ITEM_SIZE_LIMIT - fixed + slack)}}

    assert _moto_accepts(attrs) is (slack == 0)
    assert _patched_accepts(attrs) is (slack == 0)


@pytest.fixture
def dynamodb(local_aws: LocalAws) -> Any:
    install_item_size_patch()  # idempotent; the endpoint has installed it already
    dynamodb = client(local_aws, "dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def _padded(key: str, total: int) -> dict[str, Any]:
    return {"id": {"S": key}, "pad": {"S": "p" * (total - len("id") - len(key) - len("pad"))}}


def test_the_endpoint_writes_items_up_to_the_limit_and_refuses_larger_ones(dynamodb: Any) -> None:
    dynamodb.batch_write_item(
        RequestItems={
            TABLE: [{"PutRequest": {"Item": _padded(f"k{n}", MOTO_ITEM_SIZE_LIMIT)}} for n in range(3)]
        }
    )
    dynamodb.put_item(TableName=TABLE, Item=_padded("single", MOTO_ITEM_SIZE_LIMIT))

    with pytest.raises(ClientError) as batch_refusal:
        dynamodb.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": _padded("big", MOTO_ITEM_SIZE_LIMIT + 1)}}]}
        )
    with pytest.raises(ClientError) as put_refusal:
        dynamodb.put_item(TableName=TABLE, Item=_padded("big", MOTO_ITEM_SIZE_LIMIT + 1))
    with pytest.raises(ClientError) as update_refusal:
        dynamodb.update_item(
            TableName=TABLE,
            Key={"id": {"S": "k0"}},
            UpdateExpression="SET more = :more",
            ExpressionAttributeValues={":more": {"S": "m" * 10}},
        )

    for refusal in (batch_refusal, put_refusal, update_refusal):
        assert refusal.value.response["Error"]["Code"] == "ValidationException"
        assert "has exceeded the maximum allowed size" in refusal.value.response["Error"]["Message"]
    pages = dynamodb.get_paginator("scan").paginate(TableName=TABLE, Select="COUNT")
    assert sum(page["Count"] for page in pages) == 4  # k0, k1, k2 and single: nothing refused was written
    stored = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "k1"}})["Item"]
    assert stored == _padded("k1", MOTO_ITEM_SIZE_LIMIT)
