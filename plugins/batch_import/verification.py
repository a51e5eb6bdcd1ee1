"""Verifying one import: every valid row's key read back from the table, against the job's manifests.

Nothing is written for verification's sake: no index, no attribute. The file is read again with the job's own
reader (:mod:`csv_importer.reader`: gzip by content, the same CSV rules), every row the job did not reject (its
line number is not in ``<rejected_prefix><import_id>/``) gives its canonical key (:mod:`csv_importer.rows`, the
job's own key rules, numbers at 38 digits), and each distinct key is read back with ``BatchGetItem``
(projection: the key and ``importId``; eventually consistent, 0.5 read units an item up to 4 KB). A key the
eventually consistent read misses is read again strongly consistent before it counts as missing.

What "verified" means:

* Every distinct key of the file's valid rows is in the table, carrying this import's id (``counted``) or the
  id of another import that wrote the same key since (``superseded``: files of one partition run concurrently,
  PutItem is an upsert, the later write wins).
* The number of distinct keys read back equals the manifests' ``distinct_keys`` (the job's own count), so the
  file verified is the file imported.
* A key that is nowhere in the table fails verification, naming the numbers and examples.

A sharded file is verified per shard in parallel threads, each taking the keys that hash to it (the job's
sharding rule), so the task time stays what one shard's job took. The read units are DynamoDB's own
(``ReturnConsumedCapacity``) where it reports them, else 0.5 per eventually consistent and 1 per strongly
consistent item read (items up to 4 KB); the result says which.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from csv_importer.fingerprints import KeyFingerprints
from csv_importer.manifest import (
    ManifestError,
    ManifestTotals,
    import_prefix,
    read_manifests,
    total_manifests,
)
from csv_importer.reader import RecordError, iter_lines, iter_records, open_s3_object
from csv_importer.rows import canonical_key, canonical_key_part, key_hash

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

IMPORT_ID_ATTRIBUTE = "importId"
BATCH_GET_LIMIT = 100
MAX_PARALLEL_SHARDS = 8
EVENTUAL_READ_UNITS, STRONG_READ_UNITS = 0.5, 1.0
MAX_EXAMPLES = 5


class VerificationError(RuntimeError):
    """An import cannot be verified; the message names the import, the object and the numbers."""


@dataclass
class VerificationResult:
    """The numbers of one verification; ``verified`` says whether they agree."""

    import_id: str
    s3_key: str
    expected: int
    counted: int = 0
    superseded: int = 0
    keys_checked: int = 0
    rows_checked: int = 0
    unaccounted_keys: list[str] = field(default_factory=list)
    missing_keys: int = 0
    strongly_consistent_reads: int = 0
    read_request_units: float = 0.0
    read_units_source: str = "consumed_capacity"

    @property
    def verified(self) -> bool:
        return self.missing_keys == 0 and self.keys_checked == self.expected

    def add(self, other: VerificationResult) -> None:
        """Fold one shard's numbers into this one."""
        self.counted += other.counted
        self.superseded += other.superseded
        self.keys_checked += other.keys_checked
        self.rows_checked += other.rows_checked
        self.missing_keys += other.missing_keys
        self.unaccounted_keys = sorted([*self.unaccounted_keys, *other.unaccounted_keys])[:MAX_EXAMPLES]
        self.strongly_consistent_reads += other.strongly_consistent_reads
        self.read_request_units += other.read_request_units
        if other.read_units_source != "consumed_capacity":
            self.read_units_source = other.read_units_source

    def describe(self) -> str:
        text = (
            f"import {self.import_id} of {self.s3_key}: manifests say {self.expected} distinct keys imported, "
            f"{self.keys_checked} distinct keys of the file's {self.rows_checked} valid rows read back: "
            f"{self.counted} items carry the import id"
        )
        if self.superseded:
            text += f", {self.superseded} keys of the file now carry another file's import id"
        if self.missing_keys:
            sample = ", ".join(self.unaccounted_keys)
            text += f", {self.missing_keys} keys of the file are not in the table (e.g. {sample})"
        if self.keys_checked != self.expected:
            text += f"; the file has {self.keys_checked} distinct valid keys, the manifests {self.expected}"
        return text + f" ({self.read_request_units:g} read request units)"


@dataclass(frozen=True)
class _KeyPlan:
    """How to turn a row into its table key: the key columns' positions and types."""

    names: tuple[str, ...]
    types: tuple[str, ...]
    positions: tuple[int, ...]
    column_count: int

    def key_of(self, fields: Sequence[str]) -> tuple[str, ...] | None:
        if len(fields) != self.column_count:
            return None
        parts = []
        for position, key_type in zip(self.positions, self.types, strict=True):
            try:
                parts.append(canonical_key_part(fields[position], key_type))
            except ValueError:
                return None
        return tuple(parts) if all(parts) else None


def _rejected_lines(
    s3_client: S3Client, *, bucket_name: str, rejected_prefix: str, import_id: str
) -> set[int]:
    """The line numbers the job rejected (``<rejected_prefix><import_id>/*.csv``, column ``line_number``)."""
    lines: set[int] = set()
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket_name, Prefix=import_prefix(rejected_prefix, import_id)):
        for obj in page.get("Contents", []):
            text = s3_client.get_object(Bucket=bucket_name, Key=obj["Key"])["Body"].read().decode("utf-8")
            lines.update(
                int(record["line_number"]) for record in csv.DictReader(io.StringIO(text, newline=""))
            )
    return lines


def _valid_keys(
    s3_client: S3Client,
    *,
    bucket_name: str,
    key: str,
    expected_etag: str | None,
    key_schema: Sequence[tuple[str, str]],
    rejected_lines: set[int],
    shard_index: int,
    shard_count: int,
    counts: VerificationResult,
) -> Iterator[tuple[str, ...]]:
    """Each distinct key of this shard's valid rows, once (read by the job's own reader and key rules)."""
    try:
        source = open_s3_object(s3_client, bucket_name, key, expected_etag=expected_etag)
        records = iter_records(iter_lines(source))
        first = next(records, None)
    except Exception as err:  # the job's BadInput / ObjectChanged, already naming the object
        raise VerificationError(f"reading s3://{bucket_name}/{key} back failed: {err}") from err
    if first is None or isinstance(first, RecordError):
        return
    header = [name.strip() for name in first[1]]
    missing = [name for name, _ in key_schema if name not in header]
    if missing:
        raise VerificationError(
            f"s3://{bucket_name}/{key}: the header lacks the table's key column(s) {missing}"
        )
    plan = _KeyPlan(
        names=tuple(name for name, _ in key_schema),
        types=tuple(key_type for _, key_type in key_schema),
        positions=tuple(header.index(name) for name, _ in key_schema),
        column_count=len(header),
    )
    seen = KeyFingerprints()
    for record in records:
        if isinstance(record, RecordError) or record[0] in rejected_lines:
            continue
        parts = plan.key_of(record[1])
        if parts is None:  # the job rejected it too: then its line is in the rejected rows
            continue
        hashed = key_hash(canonical_key(parts))
        if hashed % shard_count != shard_index:
            continue
        counts.rows_checked += 1
        if seen.add(hashed):
            yield parts


def _read_back(
    dynamodb_client: DynamoDBClient,
    *,
    table_name: str,
    key_schema: Sequence[tuple[str, str]],
    keys: list[tuple[str, ...]],
    consistent: bool,
    counts: VerificationResult,
) -> dict[tuple[str, ...], str]:
    """For each key present in the table, the import id its item carries (BatchGetItem, unprocessed retried)."""
    names = [name for name, _ in key_schema]
    request_keys = [
        {name: {key_type: value} for (name, key_type), value in zip(key_schema, key, strict=True)}
        for key in keys
    ]
    projection = {
        "ProjectionExpression": ", ".join(f"#k{i}" for i in range(len(names) + 1)),
        "ExpressionAttributeNames": {
            **{f"#k{i}": name for i, name in enumerate(names)},
            f"#k{len(names)}": IMPORT_ID_ATTRIBUTE,
        },
        "ConsistentRead": consistent,
    }
    per_item = STRONG_READ_UNITS if consistent else EVENTUAL_READ_UNITS
    found: dict[tuple[str, ...], str] = {}
    request: dict[str, Any] = {table_name: {"Keys": request_keys, **projection}}
    attempt = 0
    while request:
        asked = len(request[table_name]["Keys"])
        response = dynamodb_client.batch_get_item(RequestItems=request, ReturnConsumedCapacity="TOTAL")
        request = response.get("UnprocessedKeys") or {}
        processed = asked - len(request.get(table_name, {}).get("Keys", []))
        consumed = [c for c in response.get("ConsumedCapacity", []) if c.get("TableName") == table_name]
        if consumed:
            counts.read_request_units += sum(float(c.get("CapacityUnits", 0)) for c in consumed)
        else:
            counts.read_request_units += processed * per_item
            counts.read_units_source = "computed (items up to 4 KB)"
        for item in response["Responses"].get(table_name, []):
            found[tuple(_attribute_text(item[name]) for name in names)] = item.get(
                IMPORT_ID_ATTRIBUTE, {}
            ).get("S", "")
        attempt += 1
        if request:
            time.sleep(min(0.05 * 2**attempt, 2.0))
    return found


def _attribute_text(value: dict[str, Any]) -> str:
    """A key attribute read back from DynamoDB, as the job's canonical key part."""
    (kind, text), *_ = value.items()
    return canonical_key_part(str(text), kind)


def _verify_shard(
    *,
    s3_client: S3Client,
    dynamodb_client: DynamoDBClient,
    bucket_name: str,
    s3_key: str,
    expected_etag: str | None,
    import_id: str,
    table_name: str,
    key_schema: Sequence[tuple[str, str]],
    rejected_lines: set[int],
    shard_index: int,
    shard_count: int,
) -> VerificationResult:
    counts = VerificationResult(import_id=import_id, s3_key=s3_key, expected=0)
    keys = _valid_keys(
        s3_client,
        bucket_name=bucket_name,
        key=s3_key,
        expected_etag=expected_etag,
        key_schema=key_schema,
        rejected_lines=rejected_lines,
        shard_index=shard_index,
        shard_count=shard_count,
        counts=counts,
    )
    chunk: list[tuple[str, ...]] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) == BATCH_GET_LIMIT:
            _check_keys(dynamodb_client, table_name, key_schema, chunk, import_id, counts)
            chunk = []
    if chunk:
        _check_keys(dynamodb_client, table_name, key_schema, chunk, import_id, counts)
    return counts


def _check_keys(
    dynamodb_client: DynamoDBClient,
    table_name: str,
    key_schema: Sequence[tuple[str, str]],
    keys: list[tuple[str, ...]],
    import_id: str,
    counts: VerificationResult,
) -> None:
    owners = _read_back(
        dynamodb_client,
        table_name=table_name,
        key_schema=key_schema,
        keys=keys,
        consistent=False,
        counts=counts,
    )
    misses = [key for key in keys if key not in owners]
    if misses:
        counts.strongly_consistent_reads += len(misses)
        owners |= _read_back(
            dynamodb_client,
            table_name=table_name,
            key_schema=key_schema,
            keys=misses,
            consistent=True,
            counts=counts,
        )
    counts.keys_checked += len(keys)
    for key in keys:
        owner = owners.get(key)
        if owner is None:
            counts.missing_keys += 1
            if len(counts.unaccounted_keys) < MAX_EXAMPLES:
                counts.unaccounted_keys.append("/".join(key))
        elif owner == import_id:
            counts.counted += 1
        else:
            counts.superseded += 1


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
    key_schema: Sequence[tuple[str, str]],
    expected_etag: str | None = None,
) -> tuple[VerificationResult, ManifestTotals]:
    """Read the import's keys back and compare them with its manifests (see the module docstring).

    With ``expected_etag`` (the version the import was planned for), every manifest must name that ETag and the
    file is read back at that version.
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
    rejected_lines = _rejected_lines(
        s3_client, bucket_name=bucket_name, rejected_prefix=rejected_prefix, import_id=import_id
    )
    shard_arguments = dict(
        s3_client=s3_client,
        dynamodb_client=dynamodb_client,
        bucket_name=bucket_name,
        s3_key=s3_key,
        expected_etag=expected_etag or (totals.etags[0] if len(totals.etags) == 1 else None),
        import_id=import_id,
        table_name=table_name,
        key_schema=key_schema,
        rejected_lines=rejected_lines,
        shard_count=shard_count,
    )
    with ThreadPoolExecutor(max_workers=min(shard_count, MAX_PARALLEL_SHARDS)) as pool:
        shards = list(
            pool.map(lambda index: _verify_shard(shard_index=index, **shard_arguments), range(shard_count))
        )
    result = VerificationResult(import_id=import_id, s3_key=s3_key, expected=totals.distinct_keys)
    for shard in shards:
        result.add(shard)
    log.info(
        "Import %s: %d distinct keys read back (%d rows), %d carry the import id, %d superseded, %d missing; "
        "%g read request units (%s), %d strongly consistent re-reads",
        import_id,
        result.keys_checked,
        result.rows_checked,
        result.counted,
        result.superseded,
        result.missing_keys,
        result.read_request_units,
        result.read_units_source,
        result.strongly_consistent_reads,
    )
    return result, totals


def write_verified_marker(
    s3_client: S3Client,
    *,
    bucket_name: str,
    marker_key: str,
    result: VerificationResult,
    run_id: str,
    report: dict[str, Any] | None = None,
) -> None:
    """Record a successful verification (and the import's cost report), so a rerun without ``reprocess`` skips
    the file."""
    from datetime import UTC, datetime

    body = {
        "import_id": result.import_id,
        "s3_key": result.s3_key,
        "expected": result.expected,
        "counted": result.counted,
        "superseded": result.superseded,
        "keys_checked": result.keys_checked,
        "read_request_units": result.read_request_units,
        "read_units_source": result.read_units_source,
        **(report or {}),
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
