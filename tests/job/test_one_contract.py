"""The job's side of "one contract per fact": empty cells by choice, the pinned object version, gzip by content,
prefix-aware manifests and rejected rows, and 38-digit number keys."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from csv_importer.exit_codes import ExitCode, ObjectChanged
from csv_importer.manifest import read_totals
from tests.job.conftest import (
    BUCKET,
    ImportRunner,
    create_table,
    csv_text,
    items_by_id,
    put_object,
    rejected_rows,
    scan_items,
)

# Row b: unquoted empty cells; row c: quoted empty cells (""), which CSV reads as the same empty string.
EMPTY_CELLS_CSV = 'id,name,price,active\na,x,1,true\nb,,,\nc,"","",""\n'


@pytest.mark.parametrize(
    ("choice", "expected_b"),
    [
        pytest.param("keep", {"name": {"S": ""}}, id="keep"),
        pytest.param("omit", {}, id="omit"),
        pytest.param(
            "null", {"name": {"NULL": True}, "price": {"NULL": True}, "active": {"NULL": True}}, id="null"
        ),
    ],
)
def test_empty_cells_are_kept_omitted_or_null_by_choice(
    s3: Any, dynamodb: Any, table: str, run: ImportRunner, choice: str, expected_b: dict[str, Any]
) -> None:
    put_object(s3, "in/empty.csv", EMPTY_CELLS_CSV)
    manifest = run("in/empty.csv", column_types={"price": "N", "active": "BOOL"}, empty_cells=choice)
    items = items_by_id(dynamodb)
    data_columns = ("name", "price", "active")
    for key in ("b", "c"):  # quoted and unquoted empty cells alike
        assert {name: value for name, value in items[key].items() if name in data_columns} == expected_b
    assert items["a"]["price"] == {"N": "1"}
    assert (manifest.rows_imported, manifest.rows_rejected) == (3, 0)


def test_an_empty_key_cell_is_still_rejected_under_every_choice(
    s3: Any, dynamodb: Any, table: str, run: ImportRunner
) -> None:
    put_object(s3, "in/empty-key.csv", 'id,name\n"",x\n,y\nz,\n')
    for choice in ("keep", "omit", "null"):
        manifest = run("in/empty-key.csv", empty_cells=choice)
        assert (manifest.rows_imported, manifest.rows_rejected) == (1, 2)
        assert {row["reason"] for row in rejected_rows(s3, manifest)} == {"key 'id' is empty"}


def test_a_file_replaced_after_it_was_listed_fails_with_object_changed_and_writes_nothing(
    s3: Any, dynamodb: Any, table: str, run: ImportRunner
) -> None:
    put_object(s3, "in/replaced.csv", "id,v\na,1\n")
    listed = s3.head_object(Bucket=BUCKET, Key="in/replaced.csv")["ETag"]
    put_object(s3, "in/replaced.csv", "id,v\nb,2\n")  # a new version lands before the job starts
    with pytest.raises(ObjectChanged, match="in/replaced.csv: object changed since it was listed") as raised:
        run("in/replaced.csv", expected_etag=listed)
    assert raised.value.exit_code == ExitCode.OBJECT_CHANGED == 5
    assert scan_items(dynamodb) == []
    # The current version, planned with its own ETag, imports under its own id.
    current = s3.head_object(Bucket=BUCKET, Key="in/replaced.csv")["ETag"]
    manifest = run("in/replaced.csv", expected_etag=current)
    assert manifest.etag == current
    assert set(items_by_id(dynamodb)) == {"b"}


@pytest.mark.parametrize(
    ("key", "compress"),
    [
        pytest.param("in/UPPER.CSV.GZ", True, id="upper-case-suffix"),
        pytest.param("in/no-suffix.csv", True, id="gzip-body-without-suffix"),
        pytest.param("in/plain-body.csv.gz", False, id="plain-body-with-gz-suffix"),
    ],
)
def test_gzip_is_recognised_by_content(
    s3: Any, dynamodb: Any, table: str, run: ImportRunner, key: str, compress: bool
) -> None:
    put_object(s3, key, "id,v\na,1\nb,2\n", compress=compress)
    manifest = run(key)
    assert (manifest.rows_read, manifest.rows_imported) == (2, 2)
    assert set(items_by_id(dynamodb)) == {"a", "b"}


def test_manifests_and_rejected_rows_follow_their_prefixes(
    s3: Any, dynamodb: Any, table: str, run: ImportRunner
) -> None:
    put_object(s3, "in/prefixed.csv", "id,v\na,1\n,2\n")
    manifest = run(
        "in/prefixed.csv",
        manifest_prefix="audit/manifests/",
        rejected_prefix="audit/rejects/",
        max_reject_ratio=0.5,
    )
    assert manifest.rejected_key == f"audit/rejects/{manifest.import_id}/shard-0-of-1.csv"
    assert len(rejected_rows(s3, manifest)) == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert f"audit/manifests/{manifest.import_id}/shard-0-of-1.json" in keys
    assert not [k for k in keys if k.startswith(("manifests/", "rejected/"))]
    totals = read_totals(s3, bucket=BUCKET, manifest_prefix="audit/manifests/", import_id=manifest.import_id)
    assert (totals.rows_imported, totals.rows_rejected, totals.complete) == (1, 1, True)


def test_a_34_digit_number_key_keeps_every_digit_and_duplicates_meet(
    s3: Any, dynamodb: Any, run: ImportRunner
) -> None:
    create_table(dynamodb, "numbers", pk="n", pk_type="N")
    digits = "1234567890123456789012345678901234"  # 34 significant digits: beyond Python's 28-digit default
    rows = [["n", "v"], [digits, "first"], [f"{digits}.000", "second"], [f"+{digits}", "third"]]
    put_object(s3, "in/numbers.csv", csv_text(rows))
    manifest = run("in/numbers.csv", table="numbers")
    (item,) = scan_items(dynamodb, "numbers")
    assert item["n"] == {"N": digits}
    assert item["v"] == {"S": "third"}
    assert (manifest.distinct_keys, manifest.duplicate_keys) == (1, 2)


def test_gzip_detection_needs_the_magic_bytes_not_the_suffix() -> None:
    from csv_importer.compression import is_gzip

    body = gzip.compress(b"id\n1\n")
    assert is_gzip(body[:2], "a.csv")
    assert is_gzip(body[:2], "a.CSV.GZ")
    assert not is_gzip(b"id", "a.csv.gz")
    assert is_gzip(b"", "a.csv.Gz")  # too short to tell: the suffix decides
    assert not is_gzip(b"i", "a.csv")
