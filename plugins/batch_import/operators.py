"""Thin operators of the import DAG, in the style of the Amazon provider.

Each one only assigns in its constructor, takes ``aws_conn_id``/``region_name`` (flowing to boto3 through
the hooks) and hands the work to its hook and to plain functions: the hooks and the job- and
verification-loop logic live in :mod:`batch_import.hooks`, the planning in :mod:`batch_import.files`, the
counting in :mod:`batch_import.verification`.

* :class:`LandingFileSensor` (``S3KeySensor``): waits for a ``.csv``/``.csv.gz`` in the run's partition, or
  checks the one ``s3_key`` of a UI run without waiting; a timeout skips the run, naming the date. A run
  started by landing events does not wait either.
* :class:`ListLandedFilesOperator`: the partition's files (or the one ``s3_key``, or the files a run's
  landing events name) as import plans.
* :class:`BatchSubmitOperator` (``BatchOperator`` over :class:`~batch_import.hooks.ImportJobHook`):
  reattaches to the job already submitted for this run and file on a retry, follows an active job of the
  same import from any run (:mod:`batch_import.job_claims`), waits in the triggerer when deferrable, and
  classifies failures by the job's exit code.
* :class:`VerifyImportOperator` (over :class:`~batch_import.hooks.DynamoDBClientHook`): counts the import's
  items and compares them with the manifests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow.utils.types import DagRunType

from batch_import import events, files
from batch_import.cost import S3CallCounter, import_cost
from batch_import.hooks import (
    NON_RETRYABLE_EXIT_CODES,
    DynamoDBClientHook,
    ImportJobHook,
    describe_manifests,
    event_files,
    landed_files,
    requested_file,
    split_verified,
    verify_until_settled,
)
from batch_import.job_claims import ClaimWaitTimeout, ImportClaim, submit_once
from batch_import.links import ImportManifestsLink, RejectedRowsLink
from batch_import.triggers import FIRST_POLL_DELAY_SECONDS, ImportJobTrigger
from csv_importer.exit_codes import ExitCode
from csv_importer.manifest import import_prefix

if TYPE_CHECKING:
    from airflow.sdk import Context

    from batch_import.verification import VerificationResult
    from csv_importer.manifest import ManifestTotals

__all__ = [
    "NON_RETRYABLE_EXIT_CODES",
    "BatchSubmitOperator",
    "DynamoDBClientHook",
    "ImportJobHook",
    "LandingFileSensor",
    "ListLandedFilesOperator",
    "VerifyImportOperator",
]


def _params(context: Context) -> dict[str, Any]:
    return dict(context.get("params") or {})


def requested_s3_key(context: Context) -> str | None:
    """The ``s3_key`` param of a run (None or empty for a scheduled partition run)."""
    value = _params(context).get("s3_key")
    return value or None


def started_by_events(context: Context) -> bool:
    """Whether the run was created by its landing events (the feed's AssetWatcher), not the timetable or a user.

    Such a run has no logical date (so no ``ds``): its files are the ones its events name.
    """
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return getattr(run_type, "value", run_type) == DagRunType.ASSET_TRIGGERED.value


def has_landed_csv(landed: list[dict[str, Any]]) -> bool:
    """``check_fn`` of the sensor: at least one ``.csv``/``.csv.gz`` among the matching objects."""
    return any(files.is_landed_csv(str(obj.get("Key", ""))) for obj in landed)


class LandingFileSensor(S3KeySensor):
    """Wait for a ``.csv``/``.csv.gz`` under ``<landing_prefix><YYYY-MM-DD>/`` of the run's partition.

    Subclassed because the partition comes from the run (``ds``, or ``run_after`` when a REST run has no
    logical date) and because a timeout must end the run as skipped, naming the date. A run with an
    explicit ``s3_key`` param does not wait: the key is confined to the landing prefix and checked once.

    ``bucket_key`` is not an argument: :meth:`execute` sets it from the rendered ``landing_prefix`` and the
    run's partition (``<landing_prefix><YYYY-MM-DD>/*``).

    :param bucket_name: the landing bucket (templated)
    :param landing_prefix: the landing prefix, e.g. ``incoming/`` (templated)
    """

    template_fields: Sequence[str] = aws_template_fields("bucket_name", "landing_prefix")

    def __init__(self, *, bucket_name: str, landing_prefix: str, **kwargs: Any) -> None:
        super().__init__(
            # Set by execute from the rendered landing_prefix and the run's partition; "" matches nothing.
            bucket_key="",
            bucket_name=bucket_name,
            wildcard_match=True,
            check_fn=has_landed_csv,
            **kwargs,
        )
        self.landing_prefix = landing_prefix

    def execute(self, context: Context) -> None:
        s3_key = requested_s3_key(context)
        if s3_key is not None:
            self._check_requested_key(s3_key)
            return
        if started_by_events(context):
            self.log.info("Run started by landing events: importing the files they name; not waiting")
            return
        date = files.partition_date(context)
        self.bucket_key = f"{files.partition_prefix(self.landing_prefix, date)}*"
        try:
            super().execute(context)
        except AirflowSensorTimeout as err:
            raise AirflowSkipException(
                f"No .csv or .csv.gz file landed for {date} under s3://{self.bucket_name}/"
                f"{files.partition_prefix(self.landing_prefix, date)} within the {self.timeout:.0f} s grace "
                "period; skipping this run (trigger it again with s3_key once the file is there)"
            ) from err

    def _check_requested_key(self, s3_key: str) -> None:
        try:
            landed = requested_file(
                self.hook.conn, s3_key, bucket_name=str(self.bucket_name), landing_prefix=self.landing_prefix
            )
        except files.LandingKeyError as err:
            raise AirflowFailException(str(err)) from err
        self.log.info(
            "Importing the requested object s3://%s/%s; not waiting", self.bucket_name, landed["key"]
        )


class ListLandedFilesOperator(AwsBaseOperator[S3Hook]):
    """List the files of the run (its partition, or the one ``s3_key``) as import plans for task mapping.

    A run started by landing events imports exactly the files its events name
    (:func:`batch_import.events.landed_keys_from_events`); an ``s3_key`` still comes first. Files whose import
    is already verified are left out unless the ``reprocess`` param is set. Returns a list of
    :class:`batch_import.files.ImportPlan` (the ``expand_kwargs`` of ``import_file``/``verify_file``).

    :param bucket_name: the landing bucket (templated)
    :param landing_prefix: e.g. ``incoming/`` (templated)
    :param manifest_prefix: where the job writes manifests and ``verify_file`` its marker (templated)
    :param shard_threshold_bytes: files above this size run as array jobs
    :param shard_target_bytes: roughly this many bytes per shard
    :param max_shards: upper bound of an array job's size
    :param default_max_reject_ratio: the job definition's (config ``import.max_reject_ratio``), used when the
        run's ``max_reject_ratio`` param is empty; a run's other value goes to the job as an override
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields("bucket_name", "landing_prefix", "manifest_prefix")

    def __init__(
        self,
        *,
        bucket_name: str,
        landing_prefix: str,
        manifest_prefix: str,
        shard_threshold_bytes: int,
        shard_target_bytes: int,
        max_shards: int,
        default_max_reject_ratio: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.landing_prefix = landing_prefix
        self.manifest_prefix = manifest_prefix
        self.shard_threshold_bytes = shard_threshold_bytes
        self.shard_target_bytes = shard_target_bytes
        self.max_shards = max_shards
        self.default_max_reject_ratio = default_max_reject_ratio

    def execute(self, context: Context) -> list[files.ImportPlan]:
        params = _params(context)
        s3_client = self.hook.conn
        s3_key = requested_s3_key(context)
        try:
            if s3_key is None and started_by_events(context):
                landed = self._event_files(s3_client, context)
            else:
                landed = landed_files(
                    s3_client,
                    bucket_name=self.bucket_name,
                    landing_prefix=self.landing_prefix,
                    s3_key=s3_key,
                    date=lambda: files.partition_date(context),
                )
        except files.LandingKeyError as err:
            raise AirflowFailException(str(err)) from err
        ratio = params.get("max_reject_ratio")
        settings = files.ImportSettings(
            bucket_name=self.bucket_name,
            landing_prefix=self.landing_prefix,
            manifest_prefix=self.manifest_prefix,
            max_reject_ratio=self.default_max_reject_ratio if ratio is None else float(ratio),
            configured_max_reject_ratio=self.default_max_reject_ratio,
            shard_threshold_bytes=self.shard_threshold_bytes,
            shard_target_bytes=self.shard_target_bytes,
            max_shards=self.max_shards,
        )
        plans = files.plan_imports(landed, settings, dag_id=context["dag"].dag_id, run_id=context["run_id"])
        if not params.get("reprocess"):
            plans, verified = split_verified(
                s3_client, plans, bucket_name=self.bucket_name, manifest_prefix=self.manifest_prefix
            )
            for plan in verified:
                self.log.info(
                    "Skipping s3://%s/%s: import %s is already verified (set reprocess to import it again)",
                    self.bucket_name,
                    plan["s3_key"],
                    plan["import_id"],
                )
        for plan in plans:
            self.log.info(
                "Will import s3://%s/%s (%d bytes) as import %s in %d shard(s), Batch job name %s",
                self.bucket_name,
                plan["s3_key"],
                plan["size_bytes"],
                plan["import_id"],
                plan["shard_count"],
                plan["job_name"],
            )
        if not plans:
            raise AirflowSkipException(
                f"Nothing to import: {len(landed)} file(s) found, all already verified"
            )
        return plans

    def _event_files(self, s3_client: Any, context: Context) -> list[files.LandedFile]:
        extras = events.event_extras(context.get("triggering_asset_events"))
        keys = events.landed_keys_from_events(
            extras, bucket_name=self.bucket_name, landing_prefix=self.landing_prefix
        )
        self.log.info(
            "Run started by %d landing event(s) naming %d file(s) to import: %s", len(extras), len(keys), keys
        )
        return event_files(s3_client, keys, bucket_name=self.bucket_name)


class BatchSubmitOperator(BatchOperator):
    """``BatchOperator`` that never runs two jobs for one import, waits in the triggerer, and tells retryable
    from final failures.

    * Reattach: the job name is deterministic per (dag_id, run_id, file); before submitting, the queue's jobs
      with that name are listed (``ListJobs`` with a ``JOB_NAME`` filter). A job of this run that is still
      SUBMITTED..RUNNING, or SUCCEEDED, is followed instead of submitting a second import of the file.
    * One job per import: otherwise an active job of the same import from any run (an event run, the
      timetable's, a UI trigger, a backfill: the name prefix per import id, the ``import_id`` tag) is followed;
      the import's claim object serializes the submit itself (:mod:`batch_import.job_claims`).
    * Waiting: with ``deferrable`` (the DAG sets it from config ``import.deferrable``) the provider's
      ``BatchJobTrigger`` waits in the triggerer, no worker slot held (its subclass
      :class:`~batch_import.triggers.ImportJobTrigger` only delays the first poll, for an Airflow race); :meth:`execute_complete` then logs the
      job's CloudWatch lines and classifies a failure exactly as the polling :meth:`monitor_job` does.
    * Failures: a job that exited with a code a retry cannot fix (:data:`NON_RETRYABLE_EXIT_CODES`, also
      in any child of an array job) raises ``AirflowFailException`` with the manifests' counts; any other
      failure stays a retryable ``AirflowException``.

    :param import_id: the import id the job stamps on every item (templated)
    :param s3_key: the object being imported (templated)
    :param bucket_name: the landing bucket, where manifests and rejected rows go (templated)
    :param manifest_prefix: e.g. ``manifests/`` (templated)
    :param rejected_prefix: e.g. ``rejected/`` (templated)
    :param shard_count: number of shards (1: a single job) (templated)
    :param first_poll_delay: deferred: seconds before the trigger's first poll (config
        ``import.deferral_settle_seconds``, see :mod:`batch_import.triggers`)
    """

    aws_hook_class = ImportJobHook
    template_fields: Sequence[str] = (
        *BatchOperator.template_fields,
        "import_id",
        "s3_key",
        "bucket_name",
        "manifest_prefix",
        "rejected_prefix",
        "shard_count",
    )

    def __init__(
        self,
        *,
        import_id: str,
        s3_key: str,
        bucket_name: str,
        manifest_prefix: str,
        rejected_prefix: str,
        shard_count: int = 1,
        first_poll_delay: float = FIRST_POLL_DELAY_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.first_poll_delay = first_poll_delay
        self.import_id = import_id
        self.s3_key = s3_key
        self.bucket_name = bucket_name
        self.manifest_prefix = manifest_prefix
        self.rejected_prefix = rejected_prefix
        self.shard_count = shard_count

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "poll_interval_seconds": self.poll_interval}

    operator_extra_links = (*BatchOperator.operator_extra_links, ImportManifestsLink(), RejectedRowsLink())

    def submit_job(self, context: Context) -> None:
        persist_import_links(
            context,
            self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            bucket_name=self.bucket_name,
            manifest_prefix=self.manifest_prefix,
            rejected_prefix=self.rejected_prefix,
            import_id=str(self.import_id),
        )
        self.tags = {
            **self.tags,
            "dag_id": context["dag"].dag_id,
            "run_id": context["run_id"],
            "import_id": str(self.import_id),
        }
        own = self.hook.find_submitted_job(self.job_queue, self.job_name)
        if own is not None:
            self._attach(context, own["jobId"], f"already submitted in this run ({own.get('status')})")
            return
        reprocess = bool((context.get("params") or {}).get("reprocess"))
        claim = ImportClaim(
            bucket_name=self.bucket_name,
            key=files.job_claim_key(self.manifest_prefix, self.import_id),
            owner=self.job_name,
        )
        try:
            job_id, submitted = submit_once(
                S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).conn,
                claim,
                find_active=self._active_import_job_id,
                follows=lambda job_id: self._follows_claimed_job(job_id, reprocess=reprocess),
                submit=lambda: self._submit_new_job(context),
            )
        except ClaimWaitTimeout as err:
            raise AirflowException(str(err)) from err
        if not submitted:
            self._attach(context, job_id, "the import's job, submitted by another run")

    def _active_import_job_id(self) -> str | None:
        name_prefix = files.job_name_prefix(self.s3_key, str(self.import_id))
        job = self.hook.find_active_import_job(self.job_queue, name_prefix, str(self.import_id))
        return None if job is None else str(job["jobId"])

    def _follows_claimed_job(self, job_id: str, *, reprocess: bool) -> bool:
        """Wait on the claim's job while it is active, and on one that SUCCEEDED unless ``reprocess``: that job
        imported this file version already, and this run's verify_file checks its rows (the import is over when
        verified, not when its job ends; job_claims)."""
        status = self.hook.job_status(job_id)
        return status in self.hook.INTERMEDIATE_STATES or (
            status == self.hook.SUCCESS_STATE and not reprocess
        )

    def _submit_new_job(self, context: Context) -> str:
        super().submit_job(context)
        return str(self.job_id)

    def _attach(self, context: Context, job_id: str, why: str) -> None:
        """Wait on ``job_id`` instead of submitting a second import of the file."""
        self.job_id = job_id
        BatchJobDetailsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            job_id=self.job_id,
        )
        self.log.info(
            "Following AWS Batch job %s for s3://%s/%s (import %s): %s; not submitting a second import",
            self.job_id,
            self.bucket_name,
            self.s3_key,
            self.import_id,
            why,
        )

    def execute(self, context: Context) -> str | None:
        """Submit (or follow) the job, then wait: in the triggerer when ``deferrable``, else polling here.

        The provider's deferrable ``execute`` returns or raises at once, without the job's log lines, when the job
        has already ended by its first describe; here that job goes through :meth:`execute_complete` as well.
        """
        if not self.deferrable:
            return super().execute(context)
        self.submit_job(context)
        status = self._persist_links(context).get("status")
        if status in self.hook.INTERMEDIATE_STATES:
            self.defer(
                timeout=self.execution_timeout,
                trigger=ImportJobTrigger(
                    first_poll_delay=self.first_poll_delay,
                    job_id=self.job_id,
                    waiter_max_attempts=self.max_retries,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    waiter_delay=self.poll_interval,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
            )
        outcome = "success" if status == self.hook.SUCCESS_STATE else "error"
        return self.execute_complete(
            context, {"status": outcome, "job_id": self.job_id, "message": f"job {status} at submit"}
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """The provider's completion (the job's CloudWatch lines into the task log, its links, the status check),
        with a failure classified by the job's exit codes (:meth:`raise_classified`)."""
        try:
            return super().execute_complete(context, event)
        except AirflowFailException:
            raise
        except AirflowException as err:
            self.raise_classified(err)

    def monitor_job(self, context: Context) -> None:
        try:
            super().monitor_job(context)
        except AirflowFailException:
            raise
        except AirflowException as err:
            self.raise_classified(err)

    def raise_classified(self, err: AirflowException) -> NoReturn:
        """Raise ``err`` again, unless the job FAILED: then a retryable ``AirflowException`` naming its exit
        codes, or, for a code no retry can fix (any child of an array job too), ``AirflowFailException`` with
        the manifests' counts."""
        if not self.job_id:
            raise err
        job = self.hook.get_job_description(self.job_id)
        if job.get("status") != self.hook.FAILURE_STATE:
            raise err
        exit_codes = self.hook.failed_exit_codes(job)
        final = sorted(exit_codes & NON_RETRYABLE_EXIT_CODES)
        if not final:
            raise AirflowException(
                f"AWS Batch job {self.job_id} importing s3://{self.bucket_name}/{self.s3_key} failed "
                f"(exit codes {sorted(exit_codes) or 'none'}, {job.get('statusReason', 'no reason given')}); "
                "a retry may fix this"
            ) from err
        raise AirflowFailException(self.final_failure_message(job, final)) from err

    def final_failure_message(self, job: dict[str, Any], exit_codes: list[int]) -> str:
        """What failed and the manifests' counts, for a failure no retry can fix."""
        s3_client = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).conn
        counts = describe_manifests(
            s3_client,
            bucket_name=self.bucket_name,
            manifest_prefix=self.manifest_prefix,
            import_id=self.import_id,
            shard_count=int(self.shard_count),
        )
        return (
            f"Import {self.import_id} of s3://{self.bucket_name}/{self.s3_key} failed and is not retried: "
            f"AWS Batch job {self.job_id} exited with "
            f"{', '.join(f'{code} ({ExitCode(code).name})' for code in exit_codes)}; {counts}; "
            f"rejected rows under s3://{self.bucket_name}/{self.rejected_prefix}{self.import_id}/"
        )


class VerifyImportOperator(AwsBaseOperator[DynamoDBClientHook]):
    """Read the import's keys back from DynamoDB, compare them with the job's manifests, report its cost.

    Fails without retry, naming the numbers (``settle_attempts`` > 1 verifies again after a pause; one attempt
    is final, since misses are re-read strongly consistent). On success writes
    ``<manifest_prefix><import_id>/verified.json`` with the cost report (:mod:`batch_import.cost`) and returns
    the counts and the cost as its XCom; its extra links open the Batch job, its log, the manifests and the
    rejected rows.

    :param import_id: the import to verify (templated)
    :param s3_key: its object (templated)
    :param expected_etag: the ETag the import was planned for; every manifest must name it (templated)
    :param shard_count: the number of shards it ran in (templated)
    :param bucket_name: the landing bucket (templated)
    :param manifest_prefix: e.g. ``manifests/`` (templated)
    :param rejected_prefix: e.g. ``rejected/`` (templated)
    :param table_name: the DynamoDB table (templated)
    :param key_schema: ``[(attribute, S|N), ...]`` of the table key
    :param vcpus: the job definition's vCPUs (config ``batch.vcpus``), for the cost report
    :param memory_mib: the job definition's memory (config ``batch.memory_mib``), for the cost report
    :param prices: the config's ``[prices]`` as a mapping
    :param settle_attempts: how many times to verify before concluding
    :param settle_seconds: pause between attempts
    """

    operator_extra_links = (
        BatchJobDetailsLink(),
        CloudWatchEventsLink(),
        ImportManifestsLink(),
        RejectedRowsLink(),
    )

    aws_hook_class = DynamoDBClientHook
    template_fields: Sequence[str] = aws_template_fields(
        "import_id",
        "s3_key",
        "expected_etag",
        "shard_count",
        "bucket_name",
        "manifest_prefix",
        "rejected_prefix",
        "table_name",
    )

    def __init__(
        self,
        *,
        import_id: str,
        s3_key: str,
        shard_count: int,
        bucket_name: str,
        manifest_prefix: str,
        rejected_prefix: str,
        table_name: str,
        key_schema: Sequence[tuple[str, str]],
        vcpus: float,
        memory_mib: int,
        prices: Mapping[str, Any],
        expected_etag: str | None = None,
        settle_attempts: int = 1,
        settle_seconds: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.prices = prices
        self.expected_etag = expected_etag
        self.import_id = import_id
        self.s3_key = s3_key
        self.shard_count = shard_count
        self.bucket_name = bucket_name
        self.manifest_prefix = manifest_prefix
        self.rejected_prefix = rejected_prefix
        self.table_name = table_name
        self.key_schema = key_schema
        self.settle_attempts = settle_attempts
        self.settle_seconds = settle_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        from batch_import.verification import VerificationError, verify_import, write_verified_marker

        s3_client = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).conn
        dynamodb_client = self.hook.conn

        def verify_once() -> tuple[VerificationResult, ManifestTotals]:
            return verify_import(
                s3_client=s3_client,
                dynamodb_client=dynamodb_client,
                bucket_name=self.bucket_name,
                manifest_prefix=self.manifest_prefix,
                rejected_prefix=self.rejected_prefix,
                s3_key=self.s3_key,
                import_id=self.import_id,
                shard_count=int(self.shard_count),
                table_name=self.table_name,
                key_schema=[(name, key_type) for name, key_type in self.key_schema],
                expected_etag=self.expected_etag or None,
            )

        with S3CallCounter(s3_client) as s3_calls:
            try:
                result, totals = verify_until_settled(
                    verify_once, attempts=self.settle_attempts, pause_seconds=self.settle_seconds
                )
            except VerificationError as err:
                raise AirflowFailException(str(err)) from err
        self.persist_links(context, totals.batch_job_ids)
        if not result.verified:
            raise AirflowFailException(f"Verification failed: {result.describe()}")
        cost = import_cost(
            write_request_units=float(totals.write_request_units),
            index_write_request_units=totals.index_write_request_units,
            read_request_units=result.read_request_units,
            run_seconds=totals.run_seconds,
            shard_count=int(self.shard_count),
            vcpus=float(self.vcpus),
            memory_mib=int(self.memory_mib),
            # ... and the marker's PutObject below.
            verification_s3_calls={**s3_calls.calls, "PutObject": s3_calls.calls.get("PutObject", 0) + 1},
            prices=self.prices,
        )
        report = cost.as_report()
        write_verified_marker(
            s3_client,
            bucket_name=self.bucket_name,
            marker_key=files.verified_marker_key(self.manifest_prefix, self.import_id),
            result=result,
            run_id=context["run_id"],
            report=report,
        )
        self.log.info("Verified %s", result.describe())
        self.log.info(
            "Import %s: rows_read=%d rows_imported=%d rows_rejected=%d; cost: %s",
            result.import_id,
            totals.rows_read,
            totals.rows_imported,
            totals.rows_rejected,
            cost.describe(),
        )
        return {
            "import_id": result.import_id,
            "s3_key": result.s3_key,
            "rows_read": totals.rows_read,
            "rows_imported": totals.rows_imported,
            "rows_rejected": totals.rows_rejected,
            "items_counted": result.counted,
            "keys_superseded": result.superseded,
            **report,
        }

    def persist_links(self, context: Context, batch_job_ids: Sequence[str]) -> None:
        """The manifests, the rejected rows and, when a manifest names it, the Batch job and its log."""
        partition = self.hook.conn_partition
        region = self.hook.conn_region_name
        persist_import_links(
            context,
            self,
            region_name=region,
            aws_partition=partition,
            bucket_name=self.bucket_name,
            manifest_prefix=self.manifest_prefix,
            rejected_prefix=self.rejected_prefix,
            import_id=str(self.import_id),
        )
        if not batch_job_ids:
            return
        job_id = batch_job_ids[0].split(":")[0]  # an array child "<parent>:<index>" -> the array job
        BatchJobDetailsLink.persist(
            context=context, operator=self, region_name=region, aws_partition=partition, job_id=job_id
        )
        logs = ImportJobHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).job_log_streams(
            job_id
        )
        if logs:
            CloudWatchEventsLink.persist(
                context=context, operator=self, region_name=region, aws_partition=partition, **logs[0]
            )


def persist_import_links(
    context: Context,
    operator: Any,
    *,
    region_name: str | None,
    aws_partition: str,
    bucket_name: str,
    manifest_prefix: str,
    rejected_prefix: str,
    import_id: str,
) -> None:
    """Store the S3 console links of one import's manifests and rejected rows for the task's extra links."""
    for link, prefix in ((ImportManifestsLink, manifest_prefix), (RejectedRowsLink, rejected_prefix)):
        link.persist(
            context=context,
            operator=operator,
            region_name=region_name or "",
            aws_partition=aws_partition,
            bucket=bucket_name,
            prefix=import_prefix(prefix, import_id),
        )
