"""Hooks of the import DAG, and the plain functions its operators hand their logic to.

The operators in :mod:`batch_import.operators` only wire these together (the Amazon provider's style: thin
operators, thick hooks; the hooks keep no per-run state, the operators keep ``job_id``).

* :class:`ImportJobHook` (``BatchClientHook``): polls at most every ``poll_interval_seconds``, finds the job
  a retry reattaches to (:meth:`~ImportJobHook.find_submitted_job`) and an active job of the same import from
  any run (:meth:`~ImportJobHook.find_active_import_job`), and reads the exit codes of a failed job
  or of the failed children of an array job (:meth:`~ImportJobHook.failed_exit_codes`).
* :class:`DynamoDBClientHook`: a plain low-level ``dynamodb`` client for counting an import's items.
* :func:`requested_file`, :func:`landed_files`, :func:`event_files`, :func:`split_verified`: the files a
  run imports (the one ``s3_key``, those its events name, or the partition's), minus those already verified.
* :func:`describe_manifests`: the manifests' counts of an import, for the final failure message.
* :func:`verify_until_settled`: counts again while the verification index settles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook
from airflow.sdk.exceptions import AirflowException
from botocore.exceptions import ClientError

from batch_import import files
from csv_importer.exit_codes import NON_RETRYABLE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from batch_import.verification import VerificationResult
    from csv_importer.manifest import ManifestTotals

log = logging.getLogger(__name__)

# Failures a retry cannot fix: USAGE, BAD_INPUT, REJECT_RATIO_EXCEEDED (the job's documented exit codes).
NON_RETRYABLE_EXIT_CODES = frozenset(int(code) for code in NON_RETRYABLE)
# DescribeJobs takes at most 100 job ids per call.
_DESCRIBE_JOBS_LIMIT = 100


class ImportJobHook(BatchClientHook):
    """``BatchClientHook`` that polls at most every ``poll_interval_seconds``.

    The provider waits 1-10 s at random before each polling phase and backs off exponentially up to
    10 minutes between polls: too slow to follow short imports and to fail a bad file within a minute.
    Here the initial wait is at most 1 s and the back-off is capped at the poll interval.

    :param poll_interval_seconds: the longest pause between two polls of a job's status
    """

    INITIAL_DELAY_SECONDS = 1.0

    def __init__(self, *args: Any, poll_interval_seconds: float = 15.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poll_interval_seconds = poll_interval_seconds

    def delay(self, delay: float | None = None) -> None:  # type: ignore[override]
        """Sleep ``delay`` seconds (capped at the poll interval); with no delay, the short initial wait."""
        wanted = min(self.INITIAL_DELAY_SECONDS, self.poll_interval_seconds) if delay is None else delay
        time.sleep(max(0.0, min(wanted, self.poll_interval_seconds)))

    def exponential_delay(self, tries: int) -> float:  # type: ignore[override]
        """The provider's back-off with jitter, capped at the poll interval."""
        return min(BatchClientHook.exponential_delay(tries), self.poll_interval_seconds)

    def find_submitted_job(self, job_queue: str, job_name: str) -> dict[str, Any] | None:
        """The newest job named ``job_name`` on ``job_queue`` that is in flight or succeeded, if any.

        ``ListJobs`` with a ``JOB_NAME`` filter (which ignores ``jobStatus``, so every status comes back).

        .. seealso:: https://docs.aws.amazon.com/batch/latest/APIReference/API_ListJobs.html
        """
        reusable = (*self.INTERMEDIATE_STATES, self.SUCCESS_STATE)
        candidates = [
            job
            for page in self.client.get_paginator("list_jobs").paginate(
                jobQueue=job_queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
            )
            for job in page.get("jobSummaryList", [])
            if job.get("jobName") == job_name and job.get("status") in reusable
        ]
        return max(candidates, key=lambda job: job.get("createdAt", 0), default=None)

    def find_active_import_job(
        self, job_queue: str, name_prefix: str, import_id: str
    ) -> dict[str, Any] | None:
        """The oldest job on ``job_queue`` that is SUBMITTED..RUNNING for ``import_id``, from any run.

        ``ListJobs`` with a ``JOB_NAME`` filter ``<name_prefix>*`` (every run's job of one import shares the
        prefix, :func:`batch_import.files.job_name_prefix`); the candidates' ``import_id`` tag is checked with
        ``DescribeJobs``, so a file name that merely starts alike never counts.
        """
        active = [
            job["jobId"]
            for page in self.client.get_paginator("list_jobs").paginate(
                jobQueue=job_queue, filters=[{"name": "JOB_NAME", "values": [f"{name_prefix}*"]}]
            )
            for job in page.get("jobSummaryList", [])
            if job.get("status") in self.INTERMEDIATE_STATES
            and str(job.get("jobName", "")).startswith(name_prefix)
        ]
        described = [
            job
            for start in range(0, len(active), _DESCRIBE_JOBS_LIMIT)
            for job in self.client.describe_jobs(jobs=active[start : start + _DESCRIBE_JOBS_LIMIT])["jobs"]
            if job.get("status") in self.INTERMEDIATE_STATES
            and job.get("tags", {}).get("import_id") == import_id
        ]
        return min(described, key=lambda job: (job.get("createdAt", 0), job["jobId"]), default=None)

    def job_status(self, job_id: str) -> str | None:
        """The job's status, or None when Batch no longer knows the job."""
        jobs = self.client.describe_jobs(jobs=[job_id])["jobs"]
        return str(jobs[0].get("status")) if jobs else None

    def failed_exit_codes(self, job: dict[str, Any]) -> set[int]:
        """Exit codes of a failed job (a ``DescribeJobs`` entry), or of an array job's failed children."""
        codes = {self.exit_code(job)}
        if job.get("arrayProperties", {}).get("size"):
            child_ids = [
                child["jobId"]
                for page in self.client.get_paginator("list_jobs").paginate(
                    arrayJobId=job["jobId"], jobStatus=self.FAILURE_STATE
                )
                for child in page.get("jobSummaryList", [])
            ]
            for start in range(0, len(child_ids), _DESCRIBE_JOBS_LIMIT):
                chunk = child_ids[start : start + _DESCRIBE_JOBS_LIMIT]
                codes.update(self.exit_code(child) for child in self.client.describe_jobs(jobs=chunk)["jobs"])
        return {code for code in codes if code is not None}

    def job_log_streams(self, job_id: str) -> list[dict[str, str]]:
        """The job's CloudWatch log streams (the provider's lookup); empty, with a warning, when it fails."""
        try:
            return list(self.get_job_all_awslogs_info(job_id))
        except (AirflowException, ClientError) as err:  # a link is a convenience, never a failure
            self.log.warning("No CloudWatch log link for AWS Batch job %s: %s", job_id, err)
            return []

    @staticmethod
    def exit_code(job: dict[str, Any]) -> int | None:
        """The container's exit code of a job, else that of its last attempt; None if it never exited."""
        code = job.get("container", {}).get("exitCode")
        if code is None:
            attempts = job.get("attempts") or []
            code = attempts[-1].get("container", {}).get("exitCode") if attempts else None
        return int(code) if code is not None else None


class DynamoDBClientHook(AwsBaseHook):
    """A plain ``dynamodb`` client hook.

    The provider's ``DynamoDBHook`` wraps the resource API, whose client re-serializes DynamoDB-JSON values
    (``{"S": ...}``) as maps, which breaks ``Query``/``BatchGetItem`` written against the low-level API.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "dynamodb"
        super().__init__(*args, **kwargs)


def requested_file(
    s3_client: S3Client, s3_key: str, *, bucket_name: str, landing_prefix: str
) -> files.LandedFile:
    """The one object a run's ``s3_key`` names, once confined to the landing prefix.

    Raises :class:`batch_import.files.LandingKeyError` for a key outside the prefix or a missing object.
    """
    key = files.confine_to_landing_prefix(s3_key, landing_prefix=landing_prefix, bucket_name=bucket_name)
    return files.describe_landed_file(s3_client, bucket_name=bucket_name, key=key)


def landed_files(
    s3_client: S3Client, *, bucket_name: str, landing_prefix: str, s3_key: str | None, date: Callable[[], str]
) -> list[files.LandedFile]:
    """The files of a run: the one ``s3_key``, or else every CSV of the partition ``date()``."""
    if s3_key is not None:
        return [requested_file(s3_client, s3_key, bucket_name=bucket_name, landing_prefix=landing_prefix)]
    prefix = files.partition_prefix(landing_prefix, date())
    return files.list_partition(s3_client, bucket_name=bucket_name, prefix=prefix)


def event_files(s3_client: S3Client, keys: Sequence[str], *, bucket_name: str) -> list[files.LandedFile]:
    """The landed objects of keys named by events (already confined); a key gone since is logged and left out."""
    landed: list[files.LandedFile] = []
    for key in keys:
        try:
            landed.append(files.describe_landed_file(s3_client, bucket_name=bucket_name, key=key))
        except files.LandingKeyError as err:
            log.info("Not importing a file named by an event: %s", err)
    return landed


def split_verified(
    s3_client: S3Client, plans: list[files.ImportPlan], *, bucket_name: str, manifest_prefix: str
) -> tuple[list[files.ImportPlan], list[files.ImportPlan]]:
    """``(to_import, already_verified)``: the plans without and with a verification marker, in order."""
    to_import: list[files.ImportPlan] = []
    verified: list[files.ImportPlan] = []
    for plan in plans:
        is_verified = files.is_verified(
            s3_client, bucket_name=bucket_name, manifest_prefix=manifest_prefix, import_id=plan["import_id"]
        )
        (verified if is_verified else to_import).append(plan)
    return to_import, verified


def describe_manifests(
    s3_client: S3Client, *, bucket_name: str, manifest_prefix: str, import_id: str, shard_count: int
) -> str:
    """The manifests' counts summed over the shards, ``no manifest was written``, or why they are unreadable.

    For the failure message of an import that no retry can fix.
    """
    from csv_importer.manifest import ManifestError, read_totals

    try:
        totals = read_totals(
            s3_client,
            bucket=bucket_name,
            manifest_prefix=manifest_prefix,
            import_id=import_id,
            shard_count=shard_count,
        )
    except ManifestError as err:
        return str(err)
    return totals.describe() if totals.shards_found else "no manifest was written"


def verify_until_settled(
    verify_once: Callable[[], tuple[VerificationResult, ManifestTotals]],
    *,
    attempts: int,
    pause_seconds: float,
) -> tuple[VerificationResult, ManifestTotals]:
    """Call ``verify_once`` until its result is verified, at most ``attempts`` times (at least once).

    One attempt is final for today's verification (it re-reads its misses strongly consistent); more attempts
    only help when something outside the import is still settling. Pauses ``pause_seconds`` between attempts; returns the last result, verified or not. An error from
    ``verify_once`` (e.g. ``VerificationError``) is not retried.
    """
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        result, totals = verify_once()
        log.info("Verification attempt %d: %s; manifests: %s", attempt, result.describe(), totals.describe())
        if result.verified:
            break
        if attempt < attempts:
            time.sleep(pause_seconds)
    return result, totals
