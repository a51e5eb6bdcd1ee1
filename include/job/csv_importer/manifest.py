"""The per-shard manifest (JSON under ``manifests/``) and the rejected-rows file path; reading them back.

Manifest path: ``manifests/<import_id>/shard-<index>-of-<count>.json``; rejected rows:
``rejected/<import_id>/shard-<index>-of-<count>.csv`` (columns ``line_number, reason, raw_row``).
:func:`aggregate_manifests` is pure, so the DAG's verification can add shards up without the job's code paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

MANIFEST_PREFIX = "manifests/"
REJECTED_PREFIX = "rejected/"
REJECTED_COLUMNS = ("line_number", "reason", "raw_row")
SHARD_MANIFEST_NAME = re.compile(r"/shard-\d+-of-\d+\.json$")
Status = Literal["succeeded", "failed", "reject_ratio_exceeded"]


def shard_name(shard_index: int, shard_count: int) -> str:
    return f"shard-{shard_index}-of-{shard_count}"


def manifest_key(import_id: str, shard_index: int, shard_count: int) -> str:
    return f"{MANIFEST_PREFIX}{import_id}/{shard_name(shard_index, shard_count)}.json"


def rejected_key(import_id: str, shard_index: int, shard_count: int) -> str:
    return f"{REJECTED_PREFIX}{import_id}/{shard_name(shard_index, shard_count)}.csv"


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
    index_slots: int
    rejected_key: str
    started_at: str
    finished_at: str
    status: Status
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def write_manifest(s3: S3Client, manifest: ImportManifest) -> str:
    """Put the manifest into the object's bucket; returns its key."""
    key = manifest_key(manifest.import_id, manifest.shard_index, manifest.shard_count)
    s3.put_object(
        Bucket=manifest.bucket,
        Key=key,
        Body=manifest.to_json().encode("utf-8"),
        ContentType="application/json",
    )
    return key


def read_manifests(s3: S3Client, bucket: str, import_id: str) -> list[dict[str, Any]]:
    """Every shard manifest (``shard-<i>-of-<n>.json``) of one import, any shard count, parsed."""
    manifests = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{MANIFEST_PREFIX}{import_id}/"):
        for entry in page.get("Contents", []):
            if not SHARD_MANIFEST_NAME.search(entry["Key"]):
                continue  # e.g. the DAG's verified.json next to the shard manifests
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            manifests.append(json.loads(body))
    return manifests


_COUNTERS = ("rows_read", "rows_imported", "rows_rejected", "duplicate_keys", "distinct_keys")


def aggregate_manifests(
    manifests: Iterable[Mapping[str, Any]], shard_count: int | None = None
) -> dict[str, Any]:
    """Add up one import's shard manifests.

    Only manifests of the expected ``shard_count`` (default: the largest seen) count. Returns the summed
    counters plus ``shards_reported``, ``shards_missing`` (indexes), ``statuses`` (index -> status) and
    ``complete`` (every shard reported ``succeeded``).
    """
    manifests = list(manifests)
    if shard_count is None:
        shard_count = max((int(m["shard_count"]) for m in manifests), default=1)
    by_index = {int(m["shard_index"]): m for m in manifests if int(m["shard_count"]) == shard_count}
    totals: dict[str, Any] = {name: sum(int(m[name]) for m in by_index.values()) for name in _COUNTERS}
    totals["shard_count"] = shard_count
    totals["shards_reported"] = len(by_index)
    totals["shards_missing"] = [index for index in range(shard_count) if index not in by_index]
    totals["statuses"] = {index: by_index[index]["status"] for index in sorted(by_index)}
    totals["complete"] = not totals["shards_missing"] and all(
        m["status"] == "succeeded" for m in by_index.values()
    )
    return totals
