"""One AWS Batch job per import at a time, whichever run asks for it: the import's claim object in S3.

Runs that import the same file version (an event run, the timetable's run of its day, a UI trigger, a backfill)
first look for an active job of the import on the queue and follow it (:func:`submit_once`'s ``find_active``:
``ListJobs`` by the import's job-name prefix). Between that look and ``SubmitJob`` another run may look too; the
claim closes that window. A run submits only after creating ``<manifest_prefix><import_id>/batch_job.json`` with
S3's conditional write (``If-None-Match: *``), and records the job id in it. A run that finds the claim taken

* follows the job the claim names while the caller's ``follows`` says so: the operator follows a job that is
  active (SUBMITTED..RUNNING), and one that SUCCEEDED unless the run asks to ``reprocess``: an import is not over
  when its job ends but when a run verifies it, and the run that finds the job SUCCEEDED before that verifies
  the rows that job wrote instead of importing the file a second time,
* takes the claim over (``If-Match`` on its ETag, so only one run wins) when it follows not that job (it FAILED,
  Batch no longer knows it, or the run reprocesses), or when the claim names no job and is older than
  :data:`STALE_AFTER_SECONDS` (its owner died before submitting) or was written by the same run (a retry of the
  try that died),
* else waits: the owner is submitting right now.

Plain functions over one boto3 S3 client; the Batch side comes in as callables (the operator's hook).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# A claim that names no job after this long belongs to a submitter that died (SubmitJob takes well under 1 s).
STALE_AFTER_SECONDS = 60.0
# How long a run waits for another run's claim to name its job before failing its try (retryable).
WAIT_SECONDS = 90.0
PAUSE_SECONDS = 1.0
# S3's answers to a conditional write that lost: 412 (the object exists / changed), 409 (a concurrent write).
_LOST_WRITE_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")


class ClaimWaitTimeout(RuntimeError):
    """Another run held the import's claim without naming a job for longer than the wait."""


@dataclass(frozen=True)
class ImportClaim:
    """Where one import's claim lives and who asks for it (the asking run's job name)."""

    bucket_name: str
    key: str
    owner: str


def submit_once(
    s3_client: S3Client,
    claim: ImportClaim,
    *,
    find_active: Callable[[], str | None],
    follows: Callable[[str], bool],
    submit: Callable[[], str],
    wait_seconds: float = WAIT_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
) -> tuple[str, bool]:
    """The job id to wait on, and whether this call submitted it (False: another run's job is followed).

    :param find_active: the id of an active job of the import on the queue, or None
    :param follows: whether to wait on the job id the claim names instead of submitting another
    :param submit: submits the import's job, returning its id
    :raises ClaimWaitTimeout: another run's claim named no job for ``wait_seconds``
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        active = find_active()
        if active is not None:
            return active, False
        etag, followed = _take(s3_client, claim, follows)
        if followed is not None:
            return followed, False
        if etag is not None:
            return _submit_claimed(s3_client, claim, etag, submit), True
        if time.monotonic() > deadline:
            raise ClaimWaitTimeout(
                f"s3://{claim.bucket_name}/{claim.key} is held by another run that has named no AWS Batch job "
                f"for {wait_seconds:.0f} s; not submitting a second job meanwhile"
            )
        time.sleep(pause_seconds)


def _take(
    s3_client: S3Client, claim: ImportClaim, follows: Callable[[str], bool]
) -> tuple[str | None, str | None]:
    """``(etag, None)`` when this run now holds the claim, ``(None, job_id)`` to follow, ``(None, None)`` to wait."""
    etag = _write(s3_client, claim, {"owner": claim.owner, "job_id": None}, IfNoneMatch="*")
    if etag is not None:
        return etag, None
    current = _read(s3_client, claim)
    if current is None:  # released between the write and the read: try again
        return None, None
    body, current_etag, age_seconds = current
    job_id = body.get("job_id")
    if job_id and follows(str(job_id)):
        return None, str(job_id)
    if job_id or age_seconds > STALE_AFTER_SECONDS or body.get("owner") == claim.owner:
        log.info("Taking over the claim s3://%s/%s (%s)", claim.bucket_name, claim.key, body)
        etag = _write(s3_client, claim, {"owner": claim.owner, "job_id": None}, IfMatch=current_etag)
        return etag, None
    return None, None


def _submit_claimed(s3_client: S3Client, claim: ImportClaim, etag: str, submit: Callable[[], str]) -> str:
    try:
        job_id = submit()
    except BaseException:
        # Nobody else may take a young claim without a job, so none did: release it for the next try.
        s3_client.delete_object(Bucket=claim.bucket_name, Key=claim.key)
        raise
    if _write(s3_client, claim, {"owner": claim.owner, "job_id": job_id}, IfMatch=etag) is None:
        log.warning(
            "The claim s3://%s/%s changed before job %s was recorded", claim.bucket_name, claim.key, job_id
        )
    return job_id


def _write(s3_client: S3Client, claim: ImportClaim, body: dict[str, Any], **condition: str) -> str | None:
    """The new ETag of the claim, or None when the conditional write lost."""
    stamped = {**body, "written_at": datetime.now(UTC).isoformat()}
    try:
        answer = s3_client.put_object(
            Bucket=claim.bucket_name,
            Key=claim.key,
            Body=json.dumps(stamped).encode(),
            ContentType="application/json",
            **condition,  # type: ignore[arg-type]
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in _LOST_WRITE_CODES:
            return None
        raise
    return str(answer["ETag"])


def _read(s3_client: S3Client, claim: ImportClaim) -> tuple[dict[str, Any], str, float] | None:
    """The claim's body, ETag and age in seconds; None when there is none."""
    try:
        answer = s3_client.get_object(Bucket=claim.bucket_name, Key=claim.key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            return None
        raise
    try:
        body = json.loads(answer["Body"].read())
    except json.JSONDecodeError:
        body = {}  # not ours to read: treated as a claim without a job
    age = (datetime.now(UTC) - answer["LastModified"]).total_seconds()
    return (body if isinstance(body, dict) else {}), str(answer["ETag"]), age
