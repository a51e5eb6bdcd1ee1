"""What happened to each landed file, read back from the bucket: manifests and verification markers.

Every number comes from what the pipeline wrote (``manifests/<feed>/<import_id>/shard-<i>-of-<n>.json`` from the
job, ``manifests/<feed>/<import_id>/verified.json`` from ``verify_file``), never from the demo's own bookkeeping; the
generated files only supply what a correct import should report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batch_import import files
from include.demo.sample_files import SampleFile

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


@dataclass
class FileOutcome:
    """The pipeline's record of one file, and how it differs from what a correct import reports."""

    sample: SampleFile
    import_id: str
    expected_shards: int
    shard_count: int = 0
    shards_found: int = 0
    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    statuses: tuple[str, ...] = ()
    verified: bool = False
    duration_seconds: float | None = None
    landed_at: datetime | None = None
    verified_at: datetime | None = None
    estimated_cost_usd: float | None = None
    write_request_units: float | None = None
    read_request_units: float | None = None

    @property
    def problems(self) -> list[str]:
        """How these figures differ from what a correct import of the sample reports; empty when as expected."""
        return _problems(self)

    @property
    def as_expected(self) -> bool:
        return not self.problems

    @property
    def latency_seconds(self) -> float | None:
        """From the object's landing (its S3 LastModified) to ``verify_file``'s marker (``verified_at``)."""
        if self.landed_at is None or self.verified_at is None:
            return None
        return (self.verified_at - self.landed_at).total_seconds()

    def as_record(self) -> dict[str, Any]:
        """JSON-ready figures of this file (``--summary-json``)."""
        return {
            "feed": self.sample.feed,
            "key": self.sample.key,
            "partition_date": self.sample.partition_date.isoformat(),
            "bytes": len(self.sample.body),
            "shards": self.shard_count,
            "rows_read": self.rows_read,
            "rows_imported": self.rows_imported,
            "rows_rejected": self.rows_rejected,
            "verified": self.verified,
            "job_seconds": self.duration_seconds,
            "landed_at": self.landed_at.isoformat() if self.landed_at else None,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "latency_seconds": self.latency_seconds,
            "write_request_units": self.write_request_units,
            "read_request_units": self.read_request_units,
            "estimated_cost_usd": self.estimated_cost_usd,
            "as_expected": self.as_expected,
        }


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _read_json(s3_client: S3Client, bucket_name: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None
        raise
    return json.loads(body)


def read_outcome(
    s3_client: S3Client,
    sample: SampleFile,
    *,
    bucket_name: str,
    manifest_prefix: str,
    expected_shards: int,
) -> FileOutcome:
    """Add up the file's shard manifests, read its verification marker, and list what is not as expected."""
    from csv_importer.import_id import derive_import_id
    from csv_importer.manifest import read_totals

    landed = files.describe_landed_file(s3_client, bucket_name=bucket_name, key=sample.key)
    import_id = derive_import_id(bucket_name, sample.key, landed["etag"])
    outcome = FileOutcome(sample=sample, import_id=import_id, expected_shards=expected_shards)
    outcome.landed_at = s3_client.head_object(Bucket=bucket_name, Key=sample.key)["LastModified"]
    totals = read_totals(s3_client, bucket=bucket_name, manifest_prefix=manifest_prefix, import_id=import_id)
    outcome.shard_count = totals.shard_count if totals.shards_found else 0
    outcome.shards_found = totals.shards_found
    outcome.rows_read = totals.rows_read
    outcome.rows_imported = totals.rows_imported
    outcome.rows_rejected = totals.rows_rejected
    outcome.statuses = totals.statuses
    started, finished = _parse_time(totals.started_at), _parse_time(totals.finished_at)
    if started and finished:
        outcome.duration_seconds = (finished - started).total_seconds()
    marker = _read_json(s3_client, bucket_name, files.verified_marker_key(manifest_prefix, import_id))
    outcome.verified = marker is not None and marker.get("import_id") == import_id
    if outcome.verified and marker is not None:
        outcome.verified_at = _parse_time(marker.get("verified_at"))
        outcome.estimated_cost_usd = marker.get("estimated_cost_usd")
        outcome.write_request_units = marker.get("write_request_units")
        outcome.read_request_units = marker.get("read_request_units")
    return outcome


def _problems(outcome: FileOutcome) -> list[str]:
    sample = outcome.sample
    if not outcome.shards_found:
        return ["no manifest: the file was not imported"]
    problems = []
    if outcome.shards_found != outcome.shard_count:
        problems.append(f"manifests of {outcome.shards_found} of {outcome.shard_count} shards")
    if outcome.shard_count != outcome.expected_shards:
        problems.append(f"{outcome.shard_count} shards, expected {outcome.expected_shards}")
    if outcome.statuses != ("succeeded",):
        problems.append(f"status {','.join(outcome.statuses)}")
    for name, got, expected in (
        ("rows read", outcome.rows_read, sample.data_rows),
        ("rows imported", outcome.rows_imported, sample.good_rows),
        ("rows rejected", outcome.rows_rejected, sample.bad_rows),
    ):
        if got != expected:
            problems.append(f"{name} {got}, expected {expected}")
    if not outcome.verified:
        problems.append("not verified")
    return problems


def exit_code(outcomes: Sequence[FileOutcome], failed_runs: Sequence[str]) -> int:
    """The demo's exit code (after the summary with ``CI=true``, else after Ctrl-C): 0 only if there are files,
    every one came out as expected (the file with bad rows too, when its rejects are reported) and no backfill
    run failed; else 1."""
    ok = bool(outcomes) and all(outcome.as_expected for outcome in outcomes) and not failed_runs
    return 0 if ok else 1


def _figure(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def format_table(outcomes: Sequence[FileOutcome]) -> str:
    """A plain-text table, one line per file."""
    header = (
        "feed", "date", "key", "shards", "rows", "imported", "rejected", "verified", "duration", "WRU", "RRU", "cost",
        "result",
    )  # fmt: skip
    lines = [header]
    for o in outcomes:
        duration = f"{o.duration_seconds:.1f} s" if o.duration_seconds is not None else "-"
        result = "as expected" if o.as_expected else "; ".join(o.problems)
        lines.append(
            (
                o.sample.feed,
                o.sample.partition_date.isoformat(),
                o.sample.key,
                str(o.shard_count or "-"),
                str(o.rows_read),
                str(o.rows_imported),
                str(o.rows_rejected),
                "yes" if o.verified else "no",
                duration,
                _figure(o.write_request_units, "{:g}"),
                _figure(o.read_request_units, "{:g}"),
                _figure(o.estimated_cost_usd, "${:.6f}"),
                result,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header) - 1)]
    rendered = []
    for row in lines:
        cells = [cell.rjust(w) if i >= 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        rendered.append("  ".join([*cells, row[-1]]))
    rendered.insert(1, "-" * len(rendered[0]))
    return "\n".join(rendered)
