"""Verification against the local endpoint, with items written by the real ``csv-importer``.

Covers the exact count, two files of one partition sharing keys (the later one wins the shared items, the
earlier one still verifies), and the refusals that name the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.provisioning.dynamodb import ensure_table
from batch_import.verification import VerificationError, verify_import
from csv_importer.import_id import derive_import_id
from tests.e2e.conftest import csv_text

BUCKET = "verification-bucket"
TABLE = "verification-items"
KEY_SCHEMA = [("id", "S")]
HEADER = ["id", "amount"]


@pytest.fixture
def clients(local_aws: Any) -> dict[str, Any]:
    s3 = boto3.client("s3", endpoint_url=local_aws.url, region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=local_aws.url, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    ensure_table(
        dynamodb,
        table_name=TABLE,
        key_schema=[("id", "HASH", "S")],
        poll_seconds=0.2,
    )
    return {"s3": s3, "dynamodb": dynamodb}


def import_file(
    clients: dict[str, Any],
    key: str,
    rows: list[list[str]],
    *,
    max_reject_ratio: float = 1.0,
    body: bytes | None = None,
    table: str = TABLE,
    shard_count: int = 1,
) -> str:
    """Land ``rows`` (or ``body``) under ``key`` and import them with the real job (one process per shard);
    returns the import id."""
    clients["s3"].put_object(
        Bucket=BUCKET, Key=key, Body=csv_text(HEADER, rows).encode() if body is None else body
    )
    etag = clients["s3"].head_object(Bucket=BUCKET, Key=key)["ETag"]
    import_id = derive_import_id(BUCKET, key, etag)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for shard_index in range(shard_count):
        done = subprocess.run(
            ["csv-importer", "--bucket", BUCKET, "--key", key, "--table", table, "--import-id", import_id,
             "--max-reject-ratio", str(max_reject_ratio), "--expected-etag", etag,
             "--shard-count", str(shard_count), "--shard-index", str(shard_index)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return import_id


def verify(
    clients: dict[str, Any],
    key: str,
    import_id: str,
    *,
    table: str = TABLE,
    key_schema: list[tuple[str, str]] = KEY_SCHEMA,
    expected_etag: str | None = None,
    shard_count: int = 1,
) -> Any:
    result, _ = verify_import(
        s3_client=clients["s3"],
        dynamodb_client=clients["dynamodb"],
        bucket_name=BUCKET,
        manifest_prefix="manifests/",
        rejected_prefix="rejected/",
        s3_key=key,
        import_id=import_id,
        shard_count=shard_count,
        table_name=table,
        key_schema=key_schema,
        expected_etag=expected_etag,
    )
    return result


def rows(start: int, stop: int) -> list[list[str]]:
    return [[f"k{n:04d}", str(n)] for n in range(start, stop)]


def test_exact_count_with_duplicates_and_rejected_rows(clients: dict[str, Any]) -> None:
    key = "incoming/2026-04-01/a.csv"
    import_id = import_file(clients, key, rows(0, 20) + rows(0, 5) + [["", "no key"]])

    result = verify(clients, key, import_id)

    assert (result.expected, result.counted, result.superseded) == (20, 20, 0)
    assert result.verified


def test_keys_taken_over_by_a_later_file_of_the_partition_still_verify(clients: dict[str, Any]) -> None:
    first_key, second_key = "incoming/2026-04-02/a.csv", "incoming/2026-04-02/b.csv"
    first = import_file(clients, first_key, rows(0, 20) + [["", "rejected, no key"]])
    second = import_file(clients, second_key, rows(15, 30))  # k0015..k0019 now carry the second import id

    first_result = verify(clients, first_key, first)
    second_result = verify(clients, second_key, second)

    assert (first_result.expected, first_result.counted, first_result.superseded) == (20, 15, 5)
    assert first_result.unaccounted_keys == []
    assert first_result.verified
    assert second_result.verified
    assert (second_result.expected, second_result.counted) == (15, 15)


def test_a_lost_item_fails_verification_naming_the_numbers(clients: dict[str, Any]) -> None:
    first_key = "incoming/2026-04-03/a.csv"
    first = import_file(clients, first_key, rows(0, 20))
    import_file(clients, "incoming/2026-04-03/b.csv", rows(15, 30))
    clients["dynamodb"].delete_item(TableName=TABLE, Key={"id": {"S": "k0003"}})

    result = verify(clients, first_key, first)

    assert not result.verified
    assert result.unaccounted_keys == ["k0003"]
    message = result.describe()
    assert "manifests say 20 distinct keys imported" in message
    assert "20 distinct keys of the file's 20 valid rows read back: 14 items carry the import id" in message
    assert "5 keys of the file now carry another file's import id" in message
    assert "1 keys of the file are not in the table (e.g. k0003)" in message


def test_an_import_without_manifests_is_refused_by_name(clients: dict[str, Any]) -> None:
    with pytest.raises(
        VerificationError, match=r"found manifests of 0 of 1 shards under s3://verification-bucket/"
    ):
        verify(clients, "incoming/2026-04-04/never.csv", "0" * 24)


def test_a_34_digit_number_key_with_duplicates_verifies_also_when_superseded(clients: dict[str, Any]) -> None:
    ensure_table(
        clients["dynamodb"],
        table_name="verification-numbers",
        key_schema=[("n", "HASH", "N")],
        poll_seconds=0.2,
    )
    big = "1234567890123456789012345678901234"  # 34 digits: Python's default context keeps 28
    first_rows = [[big, "a"], [f"{big}.0", "dup"], [f"{big[:-1]}5", "b"], ["7", "c"]]
    first_key, second_key = "incoming/2026-04-05/n1.csv", "incoming/2026-04-05/n2.csv"
    first = import_file(
        clients, first_key, [], body=csv_text(["n", "v"], first_rows).encode(), table="verification-numbers"
    )
    # The second file takes the 34-digit key over (written as +1.234...E+33): the first must still verify,
    # which means the verifier canonicalises the file's keys and the table's at 38 digits as the job did.
    second = import_file(
        clients, second_key, [], body=csv_text(["n", "v"], [[f"+{big[0]}.{big[1:]}E+33", "x"]]).encode(),
        table="verification-numbers",
    )  # fmt: skip
    schema = [("n", "N")]
    first_result = verify(clients, first_key, first, table="verification-numbers", key_schema=schema)
    assert (first_result.expected, first_result.counted, first_result.superseded) == (3, 2, 1)
    assert first_result.unaccounted_keys == []
    assert first_result.verified
    assert verify(clients, second_key, second, table="verification-numbers", key_schema=schema).verified


@pytest.mark.parametrize(
    "key", ["incoming/2026-04-06/UPPER.CSV.GZ", "incoming/2026-04-06/gzip-without-suffix.csv"]
)
def test_gzip_files_are_read_back_by_content_when_keys_were_taken_over(
    clients: dict[str, Any], key: str
) -> None:
    import gzip

    first = import_file(clients, key, [], body=gzip.compress(csv_text(HEADER, rows(0, 10)).encode()))
    import_file(clients, f"{key}.later.csv", rows(5, 12))  # takes k0005..k0009 over: the file must be re-read

    result = verify(clients, key, first)

    assert (result.expected, result.counted, result.superseded) == (10, 5, 5)
    assert result.unaccounted_keys == []
    assert result.verified


def test_manifests_naming_another_etag_than_planned_are_refused(clients: dict[str, Any]) -> None:
    key = "incoming/2026-04-07/a.csv"
    import_id = import_file(clients, key, rows(0, 3))
    etag = clients["s3"].head_object(Bucket=BUCKET, Key=key)["ETag"]

    assert verify(clients, key, import_id, expected_etag=etag).verified
    with pytest.raises(
        VerificationError, match=r"the manifests name ETag\(s\) .* planned for ETag \"other\""
    ):
        verify(clients, key, import_id, expected_etag='"other"')


def test_a_sharded_file_is_verified_per_shard_and_reads_cost_at_most_half_a_unit_per_row(
    clients: dict[str, Any],
) -> None:
    key = "incoming/2026-04-08/sharded.csv"
    file_rows = rows(0, 120) + rows(0, 30) + [["", "rejected"]]  # 30 duplicate keys, one rejected row
    import_id = import_file(clients, key, file_rows, shard_count=3)

    result = verify(clients, key, import_id, shard_count=3)

    assert result.verified, result.describe()
    assert (result.expected, result.keys_checked, result.counted, result.rows_checked) == (120, 120, 120, 150)
    # DynamoDB's own figure (the endpoint computes it as AWS does): eventually consistent, items under 4 KB.
    assert result.read_units_source == "consumed_capacity"
    assert result.read_request_units <= 0.5 * len(file_rows)
    assert result.read_request_units == 0.5 * 120
    assert result.strongly_consistent_reads == 0


def test_a_verification_reads_nothing_twice_and_re_reads_only_misses_strongly(
    clients: dict[str, Any],
) -> None:
    key = "incoming/2026-04-09/a.csv"
    import_id = import_file(clients, key, rows(0, 10))
    clients["dynamodb"].delete_item(TableName=TABLE, Key={"id": {"S": "k0004"}})

    result = verify(clients, key, import_id)

    assert not result.verified
    assert (result.missing_keys, result.unaccounted_keys, result.strongly_consistent_reads) == (
        1,
        ["k0004"],
        1,
    )
    assert result.read_request_units == 10 * 0.5 + 1 * 1.0
    assert "1 keys of the file are not in the table (e.g. k0004)" in result.describe()


def test_a_table_still_carrying_the_old_import_slot_index_is_verified_correctly(
    clients: dict[str, Any],
) -> None:
    # A table provisioned before verification read keys back: its importSlot GSI stays (provisioning never
    # deletes) and no longer gets entries; verification does not depend on it.
    create_table_with_the_old_import_slot_index(clients["dynamodb"], "verification-legacy")
    key = "incoming/2026-04-10/legacy.csv"
    import_id = import_file(clients, key, rows(0, 30) + rows(0, 3), table="verification-legacy")

    result = verify(clients, key, import_id, table="verification-legacy")

    assert result.verified, result.describe()
    assert (result.expected, result.counted) == (30, 30)
    items = clients["dynamodb"].scan(TableName="verification-legacy")["Items"]
    assert not [item for item in items if "importSlot" in item]


def create_table_with_the_old_import_slot_index(
    dynamodb: Any, table_name: str, partition_key: str = "id"
) -> None:
    """A table as provisioning made it before verification read keys back: with the ``importSlot`` KEYS_ONLY GSI."""
    dynamodb.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": partition_key, "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": partition_key, "AttributeType": "S"},
            {"AttributeName": "importSlot", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "importSlot-index",
                "KeySchema": [{"AttributeName": "importSlot", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
