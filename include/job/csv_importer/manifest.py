"""The per-shard manifest and the rejected-rows file: where they go, writing them, reading them back, adding up.

Manifest: ``<manifest_prefix><import_id>/shard-<index>-of-<count>.json``; rejected rows:
``<rejected_prefix><import_id>/shard-<index>-of-<count>.csv`` (columns ``line_number, reason, raw_row``). Both
prefixes are job inputs (defaults ``manifests/`` and ``rejected/``). This module is the one reader and summer of
manifests: the job writes them, the DAG's verification, the demo's summary and the benchmarks read them with
:func:`read_manifests` and add them up with :func:`total_manifests`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

REJECTED_COLUMNS = ("line_number", "reason", "raw_row")
SHARD_MANIFEST_NAME = re.compile(r"/shard-(\d+)-of-(\d+)\.json$")
Status = Literal["succeeded", "failed", "reject_ratio_exceeded"]
WriteUnitsSource = Literal["consumed_capacity", "computed"]
_COUNTERS = ("rows_read", "rows_imported", "rows_rejected", "duplicate_keys", "distinct_keys")


class ManifestError(ValueError):
    """A manifest that cannot be read or added up; the message names the object or the import."""


def shard_name(shard_index: int, shard_count: int) -> str:
    return f"shard-{shard_index}-of-{shard_count}"


def import_prefix(prefix: str, import_id: str) -> str:
    """``<prefix><import_id>/``: where one import's manifests (or rejected rows) are."""
    return f"{prefix}{import_id}/"


def manifest_key(manifest_prefix: str, import_id: str, shard_index: int, shard_count: int) -> str:
    return f"{import_prefix(manifest_prefix, import_id)}{shard_name(shard_index, shard_count)}.json"


def rejected_key(rejected_prefix: str, import_id: str, shard_index: int, shard_count: int) -> str:
    return f"{import_prefix(rejected_prefix, import_id)}{shard_name(shard_index, shard_count)}.csv"


@dataclass
class ImportManifest:
    import_id: str
    bucket: str
    key: str
    etag: str
    table: str
    shard_index: int
    shard_count: int
    rows_read: int
    rows_imported: int
    rows_rejected: int
    duplicate_keys: int
    distinct_keys: int
    rejected_key: str
    started_at: str
    finished_at: str
    status: Status
    error: str | None = None
    batch_job_id: str | None = None
    # What the shard's writes consumed: DynamoDB's ConsumedCapacity for the table (a float, as DynamoDB answers)
    # when every answer carried a plausible one, else computed from the written items' sizes (an int).
    write_request_units: float | int = 0
    write_request_units_source: WriteUnitsSource = "computed"
    # Each global secondary index's units, known only from DynamoDB's answers (None when computed).
    index_write_request_units: dict[str, float] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def write_manifest(s3: S3Client, manifest: ImportManifest, *, manifest_prefix: str) -> str:
    """Put the manifest into the object's bucket under ``manifest_prefix``; returns its key."""
    key = manifest_key(manifest_prefix, manifest.import_id, manifest.shard_index, manifest.shard_count)
    s3.put_object(
        Bucket=manifest.bucket,
        Key=key,
        Body=manifest.to_json().encode("utf-8"),
        ContentType="application/json",
    )
    return key


def read_manifests(
    s3: S3Client, *, bucket: str, manifest_prefix: str, import_id: str, shard_count: int | None = None
) -> list[dict[str, Any]]:
    """The import's shard manifests, parsed, by shard index.

    Only manifests of ``shard_count`` shards count (default: the largest count found, so a rerun with another
    shard count never mixes with an earlier one); other objects there (``verified.json``) are not manifests.

    :raises ManifestError: a manifest is not JSON.
    """
    found: dict[int, dict[int, dict[str, Any]]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=import_prefix(manifest_prefix, import_id)):
        for entry in page.get("Contents", []):
            match = SHARD_MANIFEST_NAME.search(entry["Key"])
            if not match or (shard_count is not None and int(match.group(2)) != shard_count):
                continue
            try:
                body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue  # deleted between the listing and the read
                raise
            try:
                manifest = json.loads(body)
            except json.JSONDecodeError as error:
                raise ManifestError(
                    f"manifest s3://{bucket}/{entry['Key']} is not valid JSON: {error}"
                ) from None
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = manifest
    if not found:
        return []
    by_index = found[shard_count if shard_count is not None else max(found)]
    return [by_index[index] for index in sorted(by_index)]


@dataclass(frozen=True)
class ManifestTotals:
    """One import's shard manifests, added up."""

    import_id: str
    shard_count: int
    shards_found: int
    rows_read: int
    rows_imported: int
    rows_rejected: int
    duplicate_keys: int
    distinct_keys: int
    statuses: tuple[str, ...]
    etags: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    started_at: str | None = None
    finished_at: str | None = None
    run_seconds: float = 0.0
    batch_job_ids: tuple[str, ...] = ()
    write_request_units: float | int = 0
    write_request_units_sources: tuple[str, ...] = ()
    index_write_request_units: dict[str, float] | None = None

    @property
    def complete(self) -> bool:
        """Every shard reported, and every one succeeded."""
        return self.shards_found == self.shard_count and self.statuses == ("succeeded",)

    def describe(self) -> str:
        """``rows_read=.. rows_imported=.. ...`` for log lines and failure messages."""
        text = (
            f"rows_read={self.rows_read} rows_imported={self.rows_imported} rows_rejected={self.rows_rejected} "
            f"duplicate_keys={self.duplicate_keys} distinct_keys={self.distinct_keys} "
            f"(manifests of {self.shards_found}/{self.shard_count} shards, status {','.join(self.statuses)})"
        )
        if self.errors:
            text += f"; errors: {' | '.join(self.errors)}"
        return text


def total_manifests(import_id: str, shard_count: int, manifests: Sequence[dict[str, Any]]) -> ManifestTotals:
    """Add the shard manifests up (as :func:`read_manifests` returns them)."""
    totals = {name: sum(int(m.get(name) or 0) for m in manifests) for name in _COUNTERS}
    index_units: dict[str, float] | None = None
    for manifest in manifests:
        for index, units in (manifest.get("index_write_request_units") or {}).items():
            index_units = index_units or {}
            index_units[index] = index_units.get(index, 0.0) + units
    starts = sorted(str(m["started_at"]) for m in manifests if m.get("started_at"))
    ends = sorted(str(m["finished_at"]) for m in manifests if m.get("finished_at"))
    return ManifestTotals(
        import_id=import_id,
        shard_count=shard_count,
        shards_found=len(manifests),
        statuses=tuple(sorted({str(m.get("status", "unknown")) for m in manifests})) or ("missing",),
        etags=tuple(sorted({str(m["etag"]) for m in manifests if m.get("etag")})),
        errors=tuple(str(m["error"]) for m in manifests if m.get("error")),
        started_at=starts[0] if starts else None,
        finished_at=ends[-1] if ends else None,
        run_seconds=sum(_run_seconds(m) for m in manifests),
        batch_job_ids=tuple(sorted({str(m["batch_job_id"]) for m in manifests if m.get("batch_job_id")})),
        write_request_units=sum(m.get("write_request_units") or 0 for m in manifests),
        write_request_units_sources=tuple(
            sorted(
                {
                    str(m["write_request_units_source"])
                    for m in manifests
                    if m.get("write_request_units_source")
                }
            )
        ),
        index_write_request_units=index_units,
        **totals,
    )


def _run_seconds(manifest: dict[str, Any]) -> float:
    """One shard's run time, from its ``started_at`` to its ``finished_at`` (0 when either is missing)."""
    from datetime import datetime

    try:
        started = datetime.fromisoformat(str(manifest["started_at"]).replace("Z", "+00:00"))
        finished = datetime.fromisoformat(str(manifest["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return max(0.0, (finished - started).total_seconds())


def read_totals(
    s3: S3Client, *, bucket: str, manifest_prefix: str, import_id: str, shard_count: int | None = None
) -> ManifestTotals:
    """:func:`read_manifests` then :func:`total_manifests` (``shard_count`` None: the largest found, or 1)."""
    manifests = read_manifests(
        s3, bucket=bucket, manifest_prefix=manifest_prefix, import_id=import_id, shard_count=shard_count
    )
    count = (
        shard_count if shard_count is not None else max((int(m["shard_count"]) for m in manifests), default=1)
    )
    return total_manifests(import_id, count, manifests)
