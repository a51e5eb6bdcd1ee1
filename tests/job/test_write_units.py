"""What an import costs: item sizes by DynamoDB's documented rules, and the write request units each shard records.

The sizes here are computed by :func:`documented_size`, written from the documentation and not from the job's
code: "DynamoDB item sizes and formats",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html

- strings: UTF-8 bytes of the attribute name + UTF-8 bytes of the value;
- numbers: name bytes + 1 byte per two significant digits (leading and trailing zeroes trimmed) + 1 byte;
- BOOL and NULL: name bytes + 1 byte.

Write units, "DynamoDB read and write operations" and "On-demand capacity mode"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html): one write
request unit per write of an item up to 1 KB, "if your item size is 2 KB, you require 2 write request units";
BatchWriteItem rounds each item up to the next 1 KB boundary on its own; 1 KB is 1024 bytes (Constraints page).

moto 5.2.5 answers every BatchWriteItem with ``CapacityUnits: 1.0`` whatever the items; the local endpoint (and,
through tests/conftest.py, every in-process moto of the test session) answers by DynamoDB's rules instead
(include/local_aws/dynamodb_consumed_capacity.py). The fakes below answer with implausible or missing figures to
check that the job then records the computed units (``write_request_units_source: computed``).
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from csv_importer.exit_codes import BadInput, UsageProblem
from csv_importer.manifest import read_totals, total_manifests
from csv_importer.rows import (
    MAX_ITEM_BYTES,
    KeyAttribute,
    KeySchema,
    RowConverter,
    RowRejected,
    parse_number,
    write_request_units,
)
from csv_importer.settings import load_settings
from csv_importer.writer import BatchItemWriter, RowOrigin, WriteOutcome, table_consumed_capacity
from tests.job.conftest import BUCKET, ImportRunner, csv_text, put_object, scan_items

WRITER_TABLE = "units-test"


def documented_number_bytes(text: str) -> int:
    digits = str(Decimal(text).copy_abs()).replace(".", "").upper().split("E")[0].strip("0")
    return math.ceil(len(digits) / 2) + 1


def documented_size(item: dict[str, dict[str, Any]]) -> int:
    size = 0
    for name, value in item.items():
        ((kind, content),) = value.items()
        size += len(name.encode("utf-8"))
        if kind == "S":
            size += len(content.encode("utf-8"))
        elif kind == "N":
            size += documented_number_bytes(content)
        elif kind in ("BOOL", "NULL"):
            size += 1
        else:
            raise AssertionError(f"the job writes no {kind} attribute")
    return size


def documented_units(item: dict[str, dict[str, Any]]) -> int:
    return max(1, math.ceil(documented_size(item) / 1024))


# --- the size rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "stored_bytes"),
    [
        ("7", 2),  # 1 significant digit: 1 byte + 1
        ("12", 2),  # 2 digits: 1 byte + 1
        ("123", 3),  # 3 digits: 2 bytes + 1
        ("-123", 3),  # the sign is no digit
        ("0012.3400", 3),  # leading and trailing zeroes trimmed: 1234
        ("1000000", 2),  # trailing zeroes trimmed: 1
        ("0.000001", 2),
        ("1e125", 2),
        ("0", 1),  # no significant digit is left
        ("1" * 38, 20),  # the most DynamoDB stores: 19 bytes + 1
    ],
)
def test_number_sizes_follow_the_documented_rule(number: str, stored_bytes: int) -> None:
    assert documented_number_bytes(number) == stored_bytes  # the test's rule reads the docs as stated
    assert parse_number(number)[1] == stored_bytes


@pytest.mark.parametrize(
    ("item_bytes", "units"),
    [(0, 1), (1, 1), (500, 1), (1024, 1), (1025, 2), (2048, 2), (2049, 3), (MAX_ITEM_BYTES, 400)],
)
def test_write_request_units_are_one_per_started_kilobyte(item_bytes: int, units: int) -> None:
    assert write_request_units(item_bytes) == units


def _converter(column_types: dict[str, Any], *, header: list[str], **options: Any) -> RowConverter:
    return RowConverter(
        header=header,
        key_schema=KeySchema(KeyAttribute("id", "S")),
        column_types=column_types,
        stamps={"importId": "imp-1", "sourceKey": "s3://b/k.csv", "importedAt": "2026-01-01T00:00:00.000Z"},
        source_uri="s3://b/k.csv",
        table="t",
        **options,
    )


@pytest.mark.parametrize("empty_cells", ["keep", "omit", "null"])
def test_the_converter_sizes_items_as_the_documented_rules_do(empty_cells: str) -> None:
    header = ["id", "naïve", "price", "active", "note"]
    converter = _converter({"price": "N", "active": "BOOL"}, header=header, empty_cells=empty_cells)
    rng = random.Random(3)
    words = ["", "a", "é", "€uro", "日本語", "🦆🦆", "x" * 1500]
    numbers = ["", "0", "7", "-0012.3400", "1e-130", "9" * 38, "123456.789"]
    for n in range(300):
        fields = [f"k{n}", rng.choice(words), rng.choice(numbers), rng.choice(["", "true", "no"]), ""]
        converter.key_of(fields)
        item, size = converter.convert(fields)
        assert size == documented_size(item), item


def test_the_400_kb_limit_is_the_documented_size_to_the_byte() -> None:
    converter = _converter({}, header=["id", "text"])
    probe, _ = converter.convert(["k", ""])
    room = MAX_ITEM_BYTES - documented_size(probe)
    at_limit, size = converter.convert(["k", "x" * room])
    assert size == documented_size(at_limit) == MAX_ITEM_BYTES
    assert write_request_units(size) == 400
    with pytest.raises(RowRejected, match=f"item is {MAX_ITEM_BYTES + 1} bytes"):
        converter.convert(["k", "x" * (room + 1)])
    # multi-byte characters count by their UTF-8 bytes: 2 bytes each
    with pytest.raises(RowRejected, match="over DynamoDB's"):
        converter.convert(["k", "é" * (room // 2 + 1)])


# --- the writer against clients that answer as DynamoDB does ---------------------------------------------------


class DynamoDBLike:
    """Answers BatchWriteItem as DynamoDB does with ReturnConsumedCapacity=INDEXES: the table's units are each
    processed item's size rounded up to 1 KB (computed here by the documented rules), plus one unit per item for
    a global secondary index. Leaves the last item of the first ``unprocessed`` requests unprocessed."""

    def __init__(self, *, unprocessed: int = 0, fixed_units: float | None = None) -> None:
        self.unprocessed_left = unprocessed
        self.fixed_units = fixed_units
        self.writes: list[dict[str, Any]] = []
        self.capacity_asked: set[str] = set()

    def batch_write_item(self, RequestItems: Any, ReturnConsumedCapacity: str = "NONE") -> Any:  # noqa: N803
        self.capacity_asked.add(ReturnConsumedCapacity)
        requests = RequestItems[WRITER_TABLE]
        unprocessed = []
        if self.unprocessed_left and len(requests) > 1:
            self.unprocessed_left -= 1
            requests, unprocessed = (
                requests[:-1],
                [dict(requests[-1])],
            )  # an equal copy, as botocore parses it
        items = [request["PutRequest"]["Item"] for request in requests]
        self.writes.extend(items)
        table_units = sum(float(documented_units(item)) for item in items)
        if self.fixed_units is not None:
            table_units = self.fixed_units
        consumed = {
            "TableName": WRITER_TABLE,
            "CapacityUnits": table_units + len(items),
            "Table": {"CapacityUnits": table_units},
            "GlobalSecondaryIndexes": {"bySlot": {"CapacityUnits": float(len(items))}},
        }
        return {
            "UnprocessedItems": {WRITER_TABLE: unprocessed} if unprocessed else {},
            "ConsumedCapacity": [consumed],
        }


def _write(client: Any, items: list[dict[str, Any]], **options: Any) -> BatchItemWriter:
    outcomes: list[WriteOutcome] = []
    writer = BatchItemWriter(
        client=client,
        table=WRITER_TABLE,
        concurrency=2,
        on_outcome=outcomes.append,
        sleep=lambda _s: None,
        rng=random.Random(1),
        **options,
    )
    with writer:
        for n, item in enumerate(items):
            writer.put(item["id"]["S"], item, documented_size(item), RowOrigin(n + 2, []))
    return writer


def _items(count: int) -> list[dict[str, Any]]:
    return [{"id": {"S": f"k{n}"}, "v": {"S": "é" * (n * 37 % 1800)}} for n in range(count)]


def test_dynamodb_s_consumed_capacity_is_recorded_with_each_index_s_units() -> None:
    items = _items(60)
    client = DynamoDBLike()
    writer = _write(client, items)
    assert client.capacity_asked == {"INDEXES"}
    assert writer.units.source == "consumed_capacity"
    assert writer.units.units == sum(documented_units(item) for item in items)
    assert isinstance(writer.units.units, float)  # as DynamoDB answers it
    assert writer.units.index_units == {"bySlot": 60.0}


def test_unprocessed_items_count_once_when_they_are_processed() -> None:
    items = _items(60)
    client = DynamoDBLike(unprocessed=3)
    writer = _write(client, items)
    assert sorted(item["id"]["S"] for item in client.writes) == sorted(item["id"]["S"] for item in items)
    expected = sum(documented_units(item) for item in items)
    assert (writer.units.source, writer.units.units) == ("consumed_capacity", expected)
    assert writer.units.computed == expected


def test_a_fixed_figure_below_what_the_items_cost_is_not_trusted() -> None:
    items = _items(60)  # most over 1 KB: DynamoDB charges well over 1 unit a request
    writer = _write(DynamoDBLike(fixed_units=1.0), items)
    assert writer.units.source == "computed"
    assert writer.units.units == sum(documented_units(item) for item in items)
    assert writer.units.index_units is None


def test_no_consumed_capacity_falls_back_to_the_computed_units_and_refused_items_cost_nothing() -> None:
    class Refusing:
        def __init__(self) -> None:
            self.stored: list[dict[str, Any]] = []

        def batch_write_item(self, RequestItems: Any, **_: Any) -> Any:  # noqa: N803
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "too big"}}, "BatchWriteItem"
            )

        def put_item(self, TableName: str, Item: Any, **_: Any) -> Any:  # noqa: N803
            if Item["id"]["S"] == "k7":
                raise ClientError({"Error": {"Code": "ValidationException", "Message": "too big"}}, "PutItem")
            self.stored.append(Item)
            return {}

    items = _items(10)
    client = Refusing()
    writer = _write(client, items)
    assert writer.units.source == "computed"
    assert writer.units.units == sum(documented_units(item) for item in client.stored)
    assert [item["id"]["S"] for item in items if item not in client.stored] == ["k7"]


# --- imports against moto: recorded units == units of what landed ----------------------------------------------


def _rows(count: int) -> list[list[str]]:
    rng = random.Random(11)
    words = ["a", "é", "日本語", "🦆", "x" * 900, "y" * 3000]
    return [
        [f"k{n:04d}", rng.choice(words) * rng.randint(1, 3), str(rng.randint(0, 10**6) / 100)]
        for n in range(count)
    ]


def test_an_import_records_the_units_of_the_items_that_landed(s3, dynamodb, table, run: ImportRunner) -> None:
    put_object(s3, "in/units.csv", csv_text([["id", "text", "price"], *_rows(120)]))
    manifest = run("in/units.csv", column_types={"price": "N"})
    landed = scan_items(dynamodb)
    assert len(landed) == 120
    # DynamoDB's own figure (moto as the local endpoint patches it, tests/conftest.py), equal to the documented sizes.
    assert manifest.write_request_units_source == "consumed_capacity"
    assert manifest.write_request_units == sum(documented_units(item) for item in landed)
    assert manifest.write_request_units > 120  # the large rows cost more than one unit each
    assert manifest.index_write_request_units == {}  # the table has no index: no index unit


def test_every_write_of_a_duplicated_key_costs(s3, dynamodb, table, run: ImportRunner) -> None:
    rows = [
        ["far", "z" * 4800, "1"],  # sent in the first request (25 items a request), overwritten 80 rows later
        *_rows(80),
        ["far", "short", "2"],
        ["near", "w" * 4000, "3"],  # replaced by the next row while its request is still pending: never sent
        ["near", "short", "4"],
    ]
    put_object(s3, "in/dups.csv", csv_text([["id", "text", "price"], *rows]))
    manifest = run("in/dups.csv", column_types={"price": "N"})
    landed = {item["id"]["S"]: item for item in scan_items(dynamodb)}
    assert (landed["far"]["text"], landed["near"]["text"]) == ({"S": "short"}, {"S": "short"})
    superseded = {**landed["far"], "text": {"S": "z" * 4800}, "price": {"N": "1"}}
    assert documented_units(superseded) == 5
    assert manifest.duplicate_keys == 2
    assert manifest.write_request_units == sum(documented_units(item) for item in landed.values()) + 5


def test_a_sharded_import_s_shards_add_up_to_what_landed(s3, dynamodb, table, run: ImportRunner) -> None:
    put_object(s3, "in/sharded.csv", csv_text([["id", "text", "price"], *_rows(150)]))
    manifests = [
        run("in/sharded.csv", column_types={"price": "N"}, shard_count=3, shard_index=index)
        for index in range(3)
    ]
    landed = scan_items(dynamodb)
    assert all(m.write_request_units > 0 for m in manifests)
    totals = read_totals(s3, bucket=BUCKET, manifest_prefix="manifests/", import_id=manifests[0].import_id)
    assert totals.write_request_units == sum(m.write_request_units for m in manifests)
    assert totals.write_request_units == sum(documented_units(item) for item in landed)
    assert totals.write_request_units_sources == ("consumed_capacity",)


# --- lineage -----------------------------------------------------------------------------------------------------


def test_lineage_import_id_stamps_only_the_import_id(s3, dynamodb, table, run: ImportRunner) -> None:
    put_object(s3, "in/lean.csv", csv_text([["id", "text"], ["a", "x" * 1000], ["b", "y"]]))
    manifest = run("in/lean.csv", lineage="import_id")
    landed = scan_items(dynamodb)
    assert {name for item in landed for name in item} == {"id", "text", "importId"}
    assert {item["importId"]["S"] for item in landed} == {manifest.import_id}
    assert manifest.write_request_units == sum(documented_units(item) for item in landed)


def test_lineage_all_stamps_the_source_and_the_time(s3, dynamodb, table, run: ImportRunner) -> None:
    put_object(s3, "in/full.csv", csv_text([["id"], ["a"]]))
    run("in/full.csv")
    (item,) = scan_items(dynamodb)
    assert item["sourceKey"] == {"S": f"s3://{BUCKET}/in/full.csv"}
    assert item["importedAt"]["S"].endswith("Z")


@pytest.mark.parametrize("reserved", ["sourceKey", "importedAt"])
def test_reserved_columns_stay_reserved_with_lineage_import_id(
    s3, dynamodb, table, run: ImportRunner, reserved: str
) -> None:
    put_object(s3, "in/reserved.csv", csv_text([["id", reserved], ["a", "b"]]))
    with pytest.raises(BadInput, match="reserved column"):
        run("in/reserved.csv", lineage="import_id")
    assert scan_items(dynamodb) == []


def test_the_lineage_setting_is_parsed_from_env_and_flag() -> None:
    base = {"bucket_name": "b", "key": "k.csv", "table_name": "t"}
    assert load_settings([], base).lineage == "all"
    assert load_settings([], {**base, "lineage": "IMPORT_ID"}).lineage == "import_id"
    assert load_settings(["--lineage", "all"], {**base, "lineage": "import_id"}).lineage == "all"
    with pytest.raises(UsageProblem, match="lineage must be one of all, import_id"):
        load_settings([], {**base, "lineage": "none"})


def test_the_summer_adds_the_units_and_each_index_s_units_up() -> None:
    base = {"status": "succeeded"}
    manifests = [
        {**base, "write_request_units": 2.5, "write_request_units_source": "consumed_capacity",
         "index_write_request_units": {"bySlot": 1.0}},
        {**base, "write_request_units": 3.0, "write_request_units_source": "consumed_capacity",
         "index_write_request_units": {"bySlot": 2.0, "byDate": 1.5}},
        {**base, "write_request_units": 4, "write_request_units_source": "computed",
         "index_write_request_units": None},
        base,  # a manifest written before the job recorded units
    ]  # fmt: skip
    totals = total_manifests("imp", 4, manifests)
    assert totals.write_request_units == 9.5
    assert totals.write_request_units_sources == ("computed", "consumed_capacity")
    assert totals.index_write_request_units == {"bySlot": 3.0, "byDate": 1.5}
    assert total_manifests("imp", 1, [base]).index_write_request_units is None


@pytest.mark.parametrize(
    ("consumed", "expected"),
    [
        (  # INDEXES: the table's own figure beside each index's
            [{"TableName": "t", "CapacityUnits": 3.0, "Table": {"CapacityUnits": 2.0},
              "LocalSecondaryIndexes": {"byDate": {"CapacityUnits": 1.0}}}],
            (2.0, {"byDate": 1.0}),
        ),
        (  # no Table entry: the total less the indexes'
            {"TableName": "t", "CapacityUnits": 7.0, "GlobalSecondaryIndexes": {"bySlot": {"CapacityUnits": 2.0}}},
            (5.0, {"bySlot": 2.0}),
        ),
        ([{"TableName": "other", "CapacityUnits": 1.0}], None),
        ([], None),
        (None, None),
    ],
)  # fmt: skip
def test_the_table_s_and_each_index_s_units_are_read_from_consumed_capacity(
    consumed: Any, expected: Any
) -> None:
    assert table_consumed_capacity(consumed, "t") == expected
