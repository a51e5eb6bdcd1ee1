"""Verifying one import: the items in DynamoDB that carry its import id against the job's manifests.

Counting never scans the table and never trusts DescribeTable's ItemCount (which lags by hours): the job
stamps every item with ``importSlot = <import_id>#<slot>`` (``slot = key_hash % index_slots``), and the
table's KEYS_ONLY GSI on ``importSlot`` answers one paginated ``Query(Select=COUNT)`` per slot. Spreading one
import over ``index_slots`` partition-key values keeps any single index partition from taking a whole
import's writes.

What "verified" means:

* The expected number is the sum of ``distinct_keys`` over the import's shard manifests. Sharding is by
  key hash, so duplicate keys always meet in one shard and the sum is exact.
* Counted == expected: verified.
* Counted < expected happens when another file shares keys with this one and was written after it (files
  of one partition run concurrently; PutItem is an upsert, so the later write wins and the item carries the
  other import id). Then the file is read again: every key of its rows that is neither among the import's
  items nor a rejected row's key (``rejected/<import_id>/``) must be in the table carrying a *different*
  import id (superseded), and these superseded keys must make up the whole shortfall. A key that is nowhere
  in the table, or a count above the manifests, fails verification with a message naming the numbers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from csv_importer.manifest import (
    ManifestError,
    ManifestTotals,
    import_prefix,
    read_manifests,
    total_manifests,
)
from csv_importer.reader import RecordError, iter_lines, iter_records, open_s3_object
from csv_importer.rows import canonical_key_part

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

IMPORT_SLOT_ATTRIBUTE = "importSlot"
IMPORT_ID_ATTRIBUTE = "importId"
_BATCH_GET_LIMIT = 100


class VerificationError(RuntimeError):
    """An import cannot be verified; the message names the import, the object and the numbers."""


@dataclass
class VerificationResult:
    """The numbers of one verification; ``verified`` says whether they agree."""

    import_id: str
    s3_key: str
    expected: int
    counted: int
    superseded: int = 0
    unaccounted_keys: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        if self.counted > self.expected:
            return False
        shortfall = self.expected - self.counted
        return shortfall == 0 or (not self.unaccounted_keys and self.superseded >= shortfall)

    def describe(self) -> str:
        text = (
            f"import {self.import_id} of {self.s3_key}: manifests say {self.expected} distinct keys imported, "
            f"the table's index counts {self.counted} items carrying the import id"
        )
        if self.superseded or self.unaccounted_keys:
            text += f", {self.superseded} keys of the file now carry another file's import id"
        if self.unaccounted_keys:
            sample = ", ".join(self.unaccounted_keys[:5])
            text += f", {len(self.unaccounted_keys)} keys of the file are not in the table (e.g. {sample})"
        return text


def count_import_items(
    dynamodb_client: DynamoDBClient, *, table_name: str, index_name: str, import_id: str, index_slots: int
) -> int:
    """Items carrying ``import_id``: one paginated ``Query(Select=COUNT)`` per index slot."""
    paginator = dynamodb_client.get_paginator("query")
    counted = 0
    for slot in range(index_slots):
        for page in paginator.paginate(
            TableName=table_name,
            IndexName=index_name,
            KeyConditionExpression="#slot = :slot",
            ExpressionAttributeNames={"#slot": IMPORT_SLOT_ATTRIBUTE},
            ExpressionAttributeValues={":slot": {"S": f"{import_id}#{slot}"}},
            Select="COUNT",
        ):
            counted += int(page["Count"])
    return counted


def _import_item_keys(
    dynamodb_client: DynamoDBClient,
    *,
    table_name: str,
    index_name: str,
    import_id: str,
    index_slots: int,
    key_names: Sequence[str],
) -> set[tuple[str, ...]]:
    """The table keys (as strings) of the items carrying ``import_id``, read from the KEYS_ONLY index."""
    paginator = dynamodb_client.get_paginator("query")
    keys: set[tuple[str, ...]] = set()
    for slot in range(index_slots):
        for page in paginator.paginate(
            TableName=table_name,
            IndexName=index_name,
            KeyConditionExpression="#slot = :slot",
            ExpressionAttributeNames={"#slot": IMPORT_SLOT_ATTRIBUTE},
            ExpressionAttributeValues={":slot": {"S": f"{import_id}#{slot}"}},
        ):
            for item in page["Items"]:
                keys.add(tuple(_attribute_text(item[name]) for name in key_names))
    return keys


def _attribute_text(value: dict[str, Any]) -> str:
    """A key attribute read back from DynamoDB, as the job's canonical key part."""
    (kind, text), *_ = value.items()
    return _canonical_part(str(text), kind)


def _canonical_part(text: str, key_type: str) -> str:
    try:
        return canonical_key_part(text, key_type)
    except ValueError:
        return text  # the job rejected this row's key: it is among the rejected rows, never in the table


def _row_keys(
    header: Sequence[str], rows: Iterable[Sequence[str]], key_schema: Sequence[tuple[str, str]]
) -> Iterator[tuple[str, ...]]:
    """The table key of every row that has one (rows without a usable key are skipped)."""
    positions = []
    for name, _ in key_schema:
        if name not in header:
            return
        positions.append(header.index(name))
    for row in rows:
        if len(row) != len(header):
            continue
        values = []
        for position, (_, key_type) in zip(positions, key_schema, strict=True):
            values.append(_canonical_part(row[position], key_type))
        if all(values):
            yield tuple(values)


def _file_header_and_rows(
    s3_client: S3Client, *, bucket_name: str, key: str, expected_etag: str | None
) -> tuple[list[str], Iterator[list[str]]]:
    """The object's header and data rows, read by the job's own reader (gzip by content, the same CSV rules)."""
    try:
        source = open_s3_object(s3_client, bucket_name, key, expected_etag=expected_etag)
    except Exception as err:  # the job's BadInput / ObjectChanged, named
        raise VerificationError(f"reading s3://{bucket_name}/{key} back failed: {err}") from err
    records = iter_records(iter_lines(source))
    first = next(records, None)
    if first is None or isinstance(first, RecordError):
        return [], iter(())
    header = [name.strip() for name in first[1]]
    return header, (record[1] for record in records if not isinstance(record, RecordError))


def _rejected_keys(
    s3_client: S3Client,
    *,
    bucket_name: str,
    rejected_prefix: str,
    import_id: str,
    header: Sequence[str],
    key_schema: Sequence[tuple[str, str]],
) -> set[tuple[str, ...]]:
    """The keys of the rows the job rejected (from ``rejected/<import_id>/*.csv``, column ``raw_row``)."""
    raw_rows: list[list[str]] = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket_name, Prefix=import_prefix(rejected_prefix, import_id)):
        for obj in page.get("Contents", []):
            text = (
                s3_client.get_object(Bucket=bucket_name, Key=obj["Key"])["Body"]
                .read()
                .decode("utf-8", "replace")
            )
            for record in csv.DictReader(io.StringIO(text, newline="")):
                raw_rows.extend(csv.reader(io.StringIO(record.get("raw_row") or "", newline="")))
    return set(_row_keys(header, raw_rows, key_schema))


def _present_import_ids(
    dynamodb_client: DynamoDBClient,
    *,
    table_name: str,
    key_schema: Sequence[tuple[str, str]],
    keys: Iterable[tuple[str, ...]],
) -> dict[tuple[str, ...], str]:
    """For each key present in the table, the import id its item carries (BatchGetItem, unprocessed retried)."""
    names = [name for name, _ in key_schema]
    pending = [
        {name: {key_type: value} for (name, key_type), value in zip(key_schema, key, strict=True)}
        for key in keys
    ]
    found: dict[tuple[str, ...], str] = {}
    while pending:
        chunk, pending = pending[:_BATCH_GET_LIMIT], pending[_BATCH_GET_LIMIT:]
        request: dict[str, Any] = {
            table_name: {
                "Keys": chunk,
                "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(names) + 1)),
                "ExpressionAttributeNames": {
                    **{f"#k{i}": name for i, name in enumerate(names)},
                    f"#k{len(names)}": IMPORT_ID_ATTRIBUTE,
                },
            }
        }
        attempt = 0
        while request:
            response = dynamodb_client.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(table_name, []):
                key = tuple(_attribute_text(item[name]) for name in names)
                found[key] = item.get(IMPORT_ID_ATTRIBUTE, {}).get("S", "")
            request = response.get("UnprocessedKeys") or {}
            attempt += 1
            if request:
                time.sleep(min(0.05 * 2**attempt, 2.0))
    return found


def verify_import(
    *,
    s3_client: S3Client,
    dynamodb_client: DynamoDBClient,
    bucket_name: str,
    manifest_prefix: str,
    rejected_prefix: str,
    s3_key: str,
    import_id: str,
    shard_count: int,
    table_name: str,
    index_name: str,
    key_schema: Sequence[tuple[str, str]],
    expected_etag: str | None = None,
) -> tuple[VerificationResult, ManifestTotals]:
    """Count the import's items and compare them with its manifests (see the module docstring).

    With ``expected_etag`` (the version the import was planned for), every manifest must name that ETag.
    """
    try:
        manifests = read_manifests(
            s3_client,
            bucket=bucket_name,
            manifest_prefix=manifest_prefix,
            import_id=import_id,
            shard_count=shard_count,
        )
        totals = total_manifests(import_id, shard_count, manifests)
    except ManifestError as err:
        raise VerificationError(str(err)) from err
    if totals.shards_found != shard_count:
        raise VerificationError(
            f"import {import_id} of s3://{bucket_name}/{s3_key}: found manifests of {totals.shards_found} "
            f"of {shard_count} shards under s3://{bucket_name}/{manifest_prefix}{import_id}/"
        )
    if totals.statuses != ("succeeded",):
        raise VerificationError(
            f"import {import_id} of s3://{bucket_name}/{s3_key} did not succeed: {totals.describe()}"
        )
    if expected_etag is not None and totals.etags != (expected_etag,):
        raise VerificationError(
            f"import {import_id} of s3://{bucket_name}/{s3_key}: the manifests name ETag(s) "
            f"{', '.join(totals.etags) or 'none'}, but the import was planned for ETag {expected_etag}"
        )
    if totals.index_slots < 1:
        raise VerificationError(f"import {import_id}: the manifests carry no index_slots")
    counted = count_import_items(
        dynamodb_client,
        table_name=table_name,
        index_name=index_name,
        import_id=import_id,
        index_slots=totals.index_slots,
    )
    result = VerificationResult(
        import_id=import_id, s3_key=s3_key, expected=totals.distinct_keys, counted=counted
    )
    if counted >= totals.distinct_keys:
        return result, totals
    # Short: accept only keys that another file's import has overwritten since.
    key_names = [name for name, _ in key_schema]
    ours = _import_item_keys(
        dynamodb_client,
        table_name=table_name,
        index_name=index_name,
        import_id=import_id,
        index_slots=totals.index_slots,
        key_names=key_names,
    )
    header, rows = _file_header_and_rows(
        s3_client, bucket_name=bucket_name, key=s3_key, expected_etag=expected_etag
    )
    candidates = set(_row_keys(header, rows, key_schema)) - ours
    candidates -= _rejected_keys(
        s3_client,
        bucket_name=bucket_name,
        rejected_prefix=rejected_prefix,
        import_id=import_id,
        header=header,
        key_schema=key_schema,
    )
    present = _present_import_ids(
        dynamodb_client, table_name=table_name, key_schema=key_schema, keys=candidates
    )
    result.superseded = sum(1 for owner in present.values() if owner and owner != import_id)
    result.unaccounted_keys = sorted("/".join(key) for key in candidates - set(present))
    log.info(
        "Import %s is %d items short of its manifests: %d keys superseded by other imports, %d not in the table",
        import_id,
        totals.distinct_keys - counted,
        result.superseded,
        len(result.unaccounted_keys),
    )
    return result, totals


def write_verified_marker(
    s3_client: S3Client, *, bucket_name: str, marker_key: str, result: VerificationResult, run_id: str
) -> None:
    """Record a successful verification, so a rerun without ``reprocess`` skips the file."""
    from datetime import UTC, datetime

    body = {
        "import_id": result.import_id,
        "s3_key": result.s3_key,
        "expected": result.expected,
        "counted": result.counted,
        "superseded": result.superseded,
        "run_id": run_id,
        "verified_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    try:
        s3_client.put_object(
            Bucket=bucket_name,
            Key=marker_key,
            Body=json.dumps(body).encode(),
            ContentType="application/json",
        )
    except ClientError as err:
        raise VerificationError(
            f"import {result.import_id}: writing s3://{bucket_name}/{marker_key} failed "
            f"({err.response.get('Error', {}).get('Code')})"
        ) from err
