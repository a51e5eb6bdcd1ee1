"""The landing files of one import run: which objects, under which import id, in how many shards.

Plain functions over one boto3 S3 client passed in by the caller (the ``list_files`` operator), so the
planning logic is testable without Airflow. Nothing here talks to Batch or DynamoDB.

* :func:`partition_date` derives the landing partition (``YYYY-MM-DD``) of a run, also for runs that were
  triggered through the REST API without a logical date.
* :func:`confine_to_landing_prefix` is the one gate every user-supplied ``s3_key`` passes before any job
  starts: anchored under the landing prefix, no ``.``/``..`` segments, ending ``.csv`` or ``.csv.gz``.
* :func:`plan_imports` turns the landed objects into the per-file keyword arguments of the mapped
  ``import_file``/``verify_file`` tasks (``expand_kwargs``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

LANDED_SUFFIXES = (".csv", ".csv.gz")
VERIFIED_MARKER = "verified.json"
JOB_CLAIM = "batch_job.json"
_NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")
# Batch job names: up to 128 letters, numbers, hyphens and underscores, starting with a letter or number.
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
JOB_NAME_START = "csv-import-"
# 11 + 70 + 1 + 24 (import id) + 1 + 16 = 123 characters at most.
_JOB_NAME_STEM_LENGTH = 70
_JOB_NAME_RUN_DIGEST_LENGTH = 16
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class LandingKeyError(ValueError):
    """An ``s3_key`` that this pipeline refuses to import; the message names the key and the reason."""


class LandedFile(TypedDict):
    """One object under the landing prefix, as listed or described by S3."""

    key: str
    size: int
    etag: str


class ImportPlan(TypedDict):
    """The keyword arguments of one mapped ``import_file``/``verify_file`` pair (see ``expand_kwargs``)."""

    s3_key: str
    import_id: str
    etag: str
    shard_count: int
    size_bytes: int
    job_name: str
    container_overrides: dict[str, Any]
    array_properties: dict[str, int] | None


@dataclass(frozen=True)
class ImportSettings:
    """What every file of one run shares: where it lands, how it is split, and the one job input a run may
    change (``max_reject_ratio``, from the UI form) beside the value the job definition holds."""

    bucket_name: str
    landing_prefix: str
    manifest_prefix: str
    max_reject_ratio: float
    configured_max_reject_ratio: float
    shard_threshold_bytes: int
    shard_target_bytes: int
    max_shards: int


def partition_date(context: Mapping[str, Any]) -> str:
    """The landing partition of a run, ``YYYY-MM-DD``.

    Scheduled and backfill runs use their logical date (the start of the data interval, i.e. ``ds``).
    A run created without a logical date (REST ``logical_date: null``) has no ``ds`` in its context:
    it uses the date of ``run_after``, the moment it was queued for.
    """
    logical_date = context.get("logical_date")
    if logical_date is None:
        dag_run = context.get("dag_run")
        logical_date = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
    if not isinstance(logical_date, datetime):
        raise ValueError(
            "the run has neither a logical date nor a run_after date to derive its partition from"
        )
    return logical_date.strftime("%Y-%m-%d")


def partition_prefix(landing_prefix: str, date: str) -> str:
    """``incoming/2026-01-02/`` for the landing prefix ``incoming/`` and the date ``2026-01-02``."""
    return f"{landing_prefix}{date}/"


def is_landed_csv(key: str) -> bool:
    """Whether an object key is a file this pipeline imports (``.csv`` or ``.csv.gz``, any case)."""
    return key.lower().endswith(LANDED_SUFFIXES)


def s3_key_pattern(landing_prefix: str) -> str:
    """The anchored JSON-Schema pattern of the ``s3_key`` param (the trigger form checks it server-side).

    Mirrors :func:`confine_to_landing_prefix`, which re-checks every key before a job starts.
    """
    return (
        rf"^{re.escape(landing_prefix)}(?!/)(?!(.*/)?\.{{1,2}}(/|$))(?!.*//)"
        # (?![\s\S]) ends the key in both ECMA-262 and Python, whose "$" also matches before a final "\n".
        r"[^\x00-\x1f\x7f]+\.[cC][sS][vV](\.[gG][zZ])?(?![\s\S])"
    )


def confine_to_landing_prefix(s3_key: str, *, landing_prefix: str, bucket_name: str) -> str:
    """Return ``s3_key`` if it names a CSV object under the landing prefix, else raise :class:`LandingKeyError`.

    ``s3://<bucket>/<key>`` of the pipeline's own bucket is accepted and reduced to the key.
    """
    if not isinstance(s3_key, str) or not s3_key.strip():
        raise LandingKeyError(f"s3_key {s3_key!r} refused: it is empty")
    key = s3_key
    own_bucket_url = f"s3://{bucket_name}/"
    if key.startswith(own_bucket_url):
        key = key[len(own_bucket_url) :]
    elif "://" in key:
        raise LandingKeyError(
            f"s3_key {s3_key!r} refused: only keys in the pipeline's bucket s3://{bucket_name} are imported"
        )
    if _CONTROL_CHARACTERS.search(key):
        raise LandingKeyError(f"s3_key {s3_key!r} refused: it contains control characters")
    if not key.startswith(landing_prefix):
        raise LandingKeyError(
            f"s3_key {s3_key!r} refused: it is not under the landing prefix {landing_prefix!r}"
        )
    segments = key[len(landing_prefix) :].split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise LandingKeyError(f"s3_key {s3_key!r} refused: empty, '.' or '..' path segments are not allowed")
    if not is_landed_csv(key):
        raise LandingKeyError(f"s3_key {s3_key!r} refused: only .csv and .csv.gz files are imported")
    return key


def shard_count_for(size_bytes: int, *, threshold_bytes: int, target_bytes: int, max_shards: int) -> int:
    """How many array-job shards a file of ``size_bytes`` runs as: 1 up to the threshold, then 2..max_shards."""
    if size_bytes <= threshold_bytes or max_shards < 2:
        return 1
    return max(2, min(max_shards, math.ceil(size_bytes / max(target_bytes, 1))))


def verified_marker_key(manifest_prefix: str, import_id: str) -> str:
    """Where ``verify_file`` records that an import was verified: ``manifests/<import_id>/verified.json``."""
    return f"{manifest_prefix}{import_id}/{VERIFIED_MARKER}"


def job_claim_key(manifest_prefix: str, import_id: str) -> str:
    """The import's claim on its Batch job (:mod:`batch_import.job_claims`): ``manifests/<import_id>/batch_job.json``."""
    return f"{manifest_prefix}{import_id}/{JOB_CLAIM}"


def job_name_prefix(s3_key: str, import_id: str = "") -> str:
    """The start of the Batch job names of one file: ``csv-import-<file name>-``, and with ``import_id``
    ``csv-import-<file name>-<import_id>-``, the name prefix every run's job of that import shares (the
    cross-run lookup lists the queue's jobs by it, ``ListJobs`` ``JOB_NAME`` filter ``<prefix>*``)."""
    stem = _JOB_NAME_UNSAFE.sub("-", s3_key.rsplit("/", 1)[-1]).strip("-_")[:_JOB_NAME_STEM_LENGTH] or "file"
    return f"{JOB_NAME_START}{stem}-{import_id}-" if import_id else f"{JOB_NAME_START}{stem}-"


def job_name_for(*, dag_id: str, run_id: str, import_id: str, s3_key: str) -> str:
    """A deterministic Batch job name for one file of one run, so a retried submit can find its job.

    :func:`job_name_prefix` of the import (file name, import id) + a digest of (dag_id, run_id): unique per
    run and file version, and findable by the import's prefix from any other run.
    """
    digest = hashlib.sha256("\0".join((dag_id, run_id)).encode()).hexdigest()[:_JOB_NAME_RUN_DIGEST_LENGTH]
    return f"{job_name_prefix(s3_key, import_id)}{digest}"


def list_partition(s3_client: S3Client, *, bucket_name: str, prefix: str) -> list[LandedFile]:
    """Every ``.csv``/``.csv.gz`` object under ``prefix`` (paginated), sorted by key."""
    landed: list[LandedFile] = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket_name, Prefix=prefix):
        for obj in page.get("Contents", []):
            if is_landed_csv(obj["Key"]):
                landed.append(LandedFile(key=obj["Key"], size=int(obj["Size"]), etag=obj["ETag"]))
    return sorted(landed, key=lambda landed_file: landed_file["key"])


def describe_landed_file(s3_client: S3Client, *, bucket_name: str, key: str) -> LandedFile:
    """The size and ETag of one named object; a missing object raises :class:`LandingKeyError`."""
    try:
        head = s3_client.head_object(Bucket=bucket_name, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            raise LandingKeyError(f"s3_key {key!r} refused: s3://{bucket_name}/{key} does not exist") from err
        raise
    return LandedFile(key=key, size=int(head["ContentLength"]), etag=head["ETag"])


def is_verified(s3_client: S3Client, *, bucket_name: str, manifest_prefix: str, import_id: str) -> bool:
    """Whether ``verify_file`` already verified this import (its marker object exists)."""
    try:
        s3_client.head_object(Bucket=bucket_name, Key=verified_marker_key(manifest_prefix, import_id))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            return False
        raise
    return True


def plan_imports(
    landed_files: list[LandedFile],
    settings: ImportSettings,
    *,
    dag_id: str,
    run_id: str,
) -> list[ImportPlan]:
    """One :class:`ImportPlan` per landed file: import id, shard count, job name and the job's inputs.

    The container overrides carry only what differs per file (key, import id, the listed ETag the job pins its
    reads to, shard count) and a ``max_reject_ratio`` that differs from the job definition's; everything else
    is in the job definition's environment (:func:`batch_import.provisioning.batch.job_environment_from_config`).
    """
    from csv_importer.import_id import derive_import_id
    from csv_importer.inputs import container_overrides

    plans: list[ImportPlan] = []
    for landed in landed_files:
        import_id = derive_import_id(settings.bucket_name, landed["key"], landed["etag"])
        shard_count = shard_count_for(
            landed["size"],
            threshold_bytes=settings.shard_threshold_bytes,
            target_bytes=settings.shard_target_bytes,
            max_shards=settings.max_shards,
        )
        plans.append(
            ImportPlan(
                s3_key=landed["key"],
                import_id=import_id,
                etag=landed["etag"],
                shard_count=shard_count,
                size_bytes=landed["size"],
                job_name=job_name_for(
                    dag_id=dag_id, run_id=run_id, import_id=import_id, s3_key=landed["key"]
                ),
                container_overrides=container_overrides(
                    {
                        "key": landed["key"],
                        "import_id": import_id,
                        "expected_etag": landed["etag"],
                        "shard_count": shard_count,
                    },
                    run={"max_reject_ratio": float(settings.max_reject_ratio)},
                    deployed={"max_reject_ratio": float(settings.configured_max_reject_ratio)},
                ),
                array_properties={"size": shard_count} if shard_count > 1 else None,
            )
        )
    return plans
