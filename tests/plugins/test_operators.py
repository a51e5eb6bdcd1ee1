"""The import DAG's operators executed directly (``op.execute(context)``), fast and in-process.

S3 and DynamoDB are moto in-process (``mock_aws``); AWS Batch is botocore's ``Stubber`` on the operator's
hook client, so each Batch call and its parameters are asserted exactly, and waiting for the job
(``BatchClientHook.wait_for_job``, covered in test_hooks.py) is mocked out. The slow end-to-end runs of the
same operators are in tests/e2e.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, TaskDeferred
from botocore.stub import Stubber
from moto import mock_aws

from batch_import.config import load_config
from batch_import.files import (
    ImportSettings,
    LandedFile,
    job_claim_key,
    job_name_prefix,
    plan_imports,
    verified_marker_key,
)
from batch_import.hooks import ImportJobHook
from batch_import.links import ImportManifestsLink
from batch_import.operators import (
    BatchSubmitOperator,
    LandingFileSensor,
    ListLandedFilesOperator,
    VerifyImportOperator,
)
from batch_import.provisioning.dynamodb import ensure_table
from csv_importer.import_id import derive_import_id
from csv_importer.importer import run_import
from csv_importer.settings import ImportSettings as JobSettings
from tests.e2e.conftest import csv_text
from tests.plugins.test_events import event, message, record
from tests.plugins.test_hooks import IMPORT_ID, JOB_NAME, QUEUE, REGION, batch_job, write_manifests
from tests.plugins.test_import_files import BUCKET, LANDING, settings
from tests.plugins.test_import_verification import HEADER, KEY_SCHEMA, TABLE, rows

pytestmark = pytest.mark.usefixtures("shared_botocore_loader")
DAG_ID = "import_orders"  # a feed's import DAG (dags/import_feeds.py)
RUN_ID = "scheduled__2026-03-04T00:00:00+00:00"
DATE = "2026-03-04"
AWS = {"aws_conn_id": None, "region_name": REGION}


@pytest.fixture
def aws() -> Iterator[SimpleNamespace]:
    """moto in-process: the landing bucket, and clients to arrange and check S3 and DynamoDB."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield SimpleNamespace(s3=s3, dynamodb=boto3.client("dynamodb", region_name=REGION))


def context(**params: Any) -> dict[str, Any]:
    """The part of a task's context the operators read: params, dag, run id, the partition's date, ti."""
    logical_date = datetime(2026, 3, 4, tzinfo=UTC)
    return {
        "params": params,
        "dag": SimpleNamespace(dag_id=DAG_ID),
        "run_id": RUN_ID,
        "logical_date": logical_date,
        "dag_run": SimpleNamespace(logical_date=logical_date, run_after=logical_date),
        "ti": mock.MagicMock(),
        "task_instance": mock.MagicMock(),
    }


def event_context(*keys: str) -> dict[str, Any]:
    """A run started by landing events: no logical date (so no ``ds``), its files in its asset events."""
    from airflow.utils.types import DagRunType

    run_after = datetime(2026, 3, 9, 10, 30, tzinfo=UTC)
    run = context()
    del run["logical_date"]
    run["run_id"] = f"asset_triggered__{run_after.isoformat()}"
    run["dag_run"] = SimpleNamespace(
        logical_date=None, run_after=run_after, run_type=DagRunType.ASSET_TRIGGERED
    )
    half = len(keys) // 2  # two asset events, as a run that consumed several
    run["triggering_asset_events"] = {
        "landed": [event(message(*map(record, keys[:half]))), event(message(*map(record, keys[half:])))]
    }
    return run


def land(aws: SimpleNamespace, key: str, body: str = "id,amount\nk1,1\n") -> LandedFile:
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    head = aws.s3.head_object(Bucket=BUCKET, Key=key)
    return LandedFile(key=key, size=int(head["ContentLength"]), etag=head["ETag"])


# --- LandingFileSensor ---------------------------------------------------------------------------------


def sensor(landing_prefix: str = LANDING) -> LandingFileSensor:
    # poke mode with no grace period: one poke, then the timeout (reschedule mode needs the task runner)
    return LandingFileSensor(
        task_id="wait_for_files",
        bucket_name=BUCKET,
        landing_prefix=landing_prefix,
        mode="poke",
        timeout=0,
        **AWS,
    )


class TestLandingFileSensor:
    def test_a_csv_in_the_runs_partition_ends_the_wait(self, aws: SimpleNamespace) -> None:
        land(aws, f"{LANDING}{DATE}/orders.csv.gz")
        task = sensor()

        assert task.execute(context()) is None
        assert task.bucket_key == f"{LANDING}{DATE}/*"

    def test_no_csv_in_the_partition_skips_the_run_naming_the_date(self, aws: SimpleNamespace) -> None:
        land(aws, f"{LANDING}{DATE}/notes.txt")
        land(aws, f"{LANDING}2026-03-05/orders.csv")  # another day's file does not count

        with pytest.raises(AirflowSkipException) as skipped:
            sensor().execute(context())

        assert str(skipped.value) == (
            f"No .csv or .csv.gz file landed for {DATE} under s3://{BUCKET}/{LANDING}{DATE}/ within the 0 s "
            "grace period; skipping this run (trigger it again with s3_key once the file is there)"
        )

    def test_a_requested_s3_key_that_exists_is_not_waited_for(self, aws: SimpleNamespace) -> None:
        key = f"{LANDING}adhoc/orders.csv"
        land(aws, key)  # nothing in the run's partition: waiting for it would skip the run

        assert sensor().execute(context(s3_key=key)) is None

    @pytest.mark.parametrize(
        ("s3_key", "reason"),
        [
            pytest.param(f"{LANDING}{DATE}/missing.csv", "does not exist", id="missing"),
            pytest.param("manifests/secret.csv", "is not under the landing prefix", id="outside"),
        ],
    )
    def test_a_requested_s3_key_that_cannot_be_imported_fails_at_once(
        self, aws: SimpleNamespace, s3_key: str, reason: str
    ) -> None:
        land(aws, f"{LANDING}{DATE}/orders.csv")

        with pytest.raises(AirflowFailException, match=reason) as failed:
            sensor().execute(context(s3_key=s3_key))
        assert repr(s3_key) in str(failed.value)

    def test_the_constructor_derives_nothing_from_the_templated_landing_prefix(self) -> None:
        template = "{{ params.landing_prefix }}"
        task = sensor(landing_prefix=template)

        derived = [  # public attributes only: BaseOperator keeps its init kwargs privately
            name
            for name, value in vars(task).items()
            if not name.startswith("_") and name != "landing_prefix" and template in str(value)
        ]
        assert derived == []
        assert task.landing_prefix == template

    def test_a_run_started_by_events_does_not_wait(self, aws: SimpleNamespace) -> None:
        # Nothing in any partition: a wait would skip the run; its files come from its events.
        assert sensor().execute(event_context(f"{LANDING}{DATE}/a.csv")) is None

    def test_a_rendered_landing_prefix_is_the_one_waited_on(self, aws: SimpleNamespace) -> None:
        land(aws, f"landing/{DATE}/orders.csv")
        task = sensor(landing_prefix="{{ params.landing_prefix }}")
        run = context(landing_prefix="landing/")

        task.render_template_fields(run)
        task.execute(run)

        assert task.landing_prefix == "landing/"
        assert task.bucket_key == f"landing/{DATE}/*"


# --- ListLandedFilesOperator ---------------------------------------------------------------------------


def list_files(run_settings: ImportSettings | None = None) -> ListLandedFilesOperator:
    values = run_settings or settings()
    return ListLandedFilesOperator(
        task_id="list_files",
        bucket_name=values.bucket_name,
        landing_prefix=values.landing_prefix,
        manifest_prefix=values.manifest_prefix,
        shard_threshold_bytes=values.shard_threshold_bytes,
        shard_target_bytes=values.shard_target_bytes,
        max_shards=values.max_shards,
        default_max_reject_ratio=values.max_reject_ratio,
        **AWS,
    )


def mark_verified(aws: SimpleNamespace, landed: LandedFile) -> None:
    import_id = derive_import_id(BUCKET, landed["key"], landed["etag"])
    aws.s3.put_object(Bucket=BUCKET, Key=verified_marker_key("manifests/", import_id), Body=b"{}")


class TestListLandedFilesOperator:
    def test_the_partitions_csv_files_as_plans_with_the_runs_reject_ratio(self, aws: SimpleNamespace) -> None:
        small = land(aws, f"{LANDING}{DATE}/a.csv")
        large = land(aws, f"{LANDING}{DATE}/b.csv", "id,amount\n" + "k,1\n" * 600)
        land(aws, f"{LANDING}{DATE}/notes.txt")
        land(aws, f"{LANDING}2026-03-05/c.csv")

        plans = list_files().execute(context(max_reject_ratio=0.25))

        expected = plan_imports([small, large], settings(max_reject_ratio=0.25), dag_id=DAG_ID, run_id=RUN_ID)
        assert plans == expected
        assert [plan["shard_count"] for plan in plans] == [1, 3]
        assert {"name": "max_reject_ratio", "value": "0.25"} in plans[0]["container_overrides"]["environment"]

    def test_without_the_param_the_default_reject_ratio_applies(self, aws: SimpleNamespace) -> None:
        landed = land(aws, f"{LANDING}{DATE}/a.csv")

        defaults = settings(max_reject_ratio=0.05, configured_max_reject_ratio=0.05)

        plans = list_files(defaults).execute(context(max_reject_ratio=None))

        assert plans == plan_imports([landed], defaults, dag_id=DAG_ID, run_id=RUN_ID)

    def test_verified_files_are_left_out_unless_reprocess(self, aws: SimpleNamespace) -> None:
        done = land(aws, f"{LANDING}{DATE}/a.csv")
        new = land(aws, f"{LANDING}{DATE}/b.csv")
        mark_verified(aws, done)

        kept = list_files().execute(context())
        again = list_files().execute(context(reprocess=True))

        assert [plan["s3_key"] for plan in kept] == [new["key"]]
        assert [plan["s3_key"] for plan in again] == [done["key"], new["key"]]

    def test_nothing_left_to_import_skips(self, aws: SimpleNamespace) -> None:
        mark_verified(aws, land(aws, f"{LANDING}{DATE}/a.csv"))

        with pytest.raises(
            AirflowSkipException, match=r"^Nothing to import: 1 file\(s\) found, all already verified$"
        ):
            list_files().execute(context())

    def test_a_requested_s3_key_is_the_only_plan(self, aws: SimpleNamespace) -> None:
        land(aws, f"{LANDING}{DATE}/a.csv")
        wanted = land(aws, f"{LANDING}adhoc/orders.csv")

        plans = list_files().execute(context(s3_key=f"s3://{BUCKET}/{wanted['key']}"))

        assert [plan["s3_key"] for plan in plans] == [wanted["key"]]
        assert plans[0]["import_id"] == derive_import_id(BUCKET, wanted["key"], wanted["etag"])

    @pytest.mark.parametrize(
        ("s3_key", "reason"),
        [
            pytest.param(f"{LANDING}{DATE}/missing.csv", "does not exist", id="missing"),
            pytest.param("rejected/x.csv", "is not under the landing prefix", id="outside"),
        ],
    )
    def test_a_requested_s3_key_that_cannot_be_imported_fails_at_once(
        self, aws: SimpleNamespace, s3_key: str, reason: str
    ) -> None:
        with pytest.raises(AirflowFailException, match=reason):
            list_files().execute(context(s3_key=s3_key))

    def test_a_run_started_by_events_imports_exactly_the_files_they_name(self, aws: SimpleNamespace) -> None:
        first = land(aws, f"{LANDING}2026-03-09/a.csv")
        second = land(aws, f"{LANDING}2026-03-08/late b.csv.gz")
        land(aws, f"{LANDING}2026-03-09/not-named.csv")  # in the partition, but no event names it
        verified = land(aws, f"{LANDING}2026-03-09/done.csv")
        mark_verified(aws, verified)
        named = [
            first["key"],
            f"{LANDING}2026-03-09/deleted-since.csv",
            verified["key"],
            second["key"],
            "x/y.csv",
        ]

        plans = list_files().execute(event_context(*named))

        assert [plan["s3_key"] for plan in plans] == [first["key"], second["key"]]
        assert [plan["etag"] for plan in plans] == [first["etag"], second["etag"]]

    def test_a_run_whose_events_name_nothing_to_import_skips(self, aws: SimpleNamespace) -> None:
        with pytest.raises(AirflowSkipException, match="Nothing to import: 0 file"):
            list_files().execute(event_context("elsewhere/a.csv"))


# --- BatchSubmitOperator -------------------------------------------------------------------------------

S3_KEY = f"{LANDING}{DATE}/orders.csv"
OVERRIDES = {"environment": [{"name": "key", "value": S3_KEY}]}
TAGS = {"dag_id": DAG_ID, "run_id": RUN_ID, "import_id": IMPORT_ID}
IMPORT_PREFIX = job_name_prefix(S3_KEY, IMPORT_ID)


def submit_operator(**kwargs: Any) -> BatchSubmitOperator:
    return BatchSubmitOperator(
        task_id="import_file",
        job_name=JOB_NAME,
        job_queue=QUEUE,
        job_definition="csv-importer",
        container_overrides=OVERRIDES,
        import_id=IMPORT_ID,
        s3_key=S3_KEY,
        bucket_name=BUCKET,
        manifest_prefix="manifests/",
        rejected_prefix="rejected/",
        poll_interval=1,
        **AWS,
        **kwargs,
    )


class BatchStub:
    """The operator's Batch client stubbed: each expected call with its exact parameters, in order."""

    def __init__(self, operator: BatchSubmitOperator) -> None:
        self.stubber = Stubber(operator.hook.client)
        self.stubber.activate()

    def lists(self, *summaries: dict[str, Any]) -> None:
        self.stubber.add_response(
            "list_jobs",
            {"jobSummaryList": [{"jobName": JOB_NAME, **summary} for summary in summaries]},
            {"jobQueue": QUEUE, "filters": [{"name": "JOB_NAME", "values": [JOB_NAME]}]},
        )

    def lists_import(self, *summaries: dict[str, Any]) -> None:
        """The cross-run lookup: every run's jobs of the import, by the import's job-name prefix."""
        self.stubber.add_response(
            "list_jobs",
            {"jobSummaryList": list(summaries)},
            {"jobQueue": QUEUE, "filters": [{"name": "JOB_NAME", "values": [f"{IMPORT_PREFIX}*"]}]},
        )

    def submits(self, job_id: str, **extra: Any) -> None:
        self.stubber.add_response(
            "submit_job",
            {
                "jobId": job_id,
                "jobName": JOB_NAME,
                "jobArn": f"arn:aws:batch:{REGION}:000000000000:job/{job_id}",
            },
            {
                "jobName": JOB_NAME,
                "jobQueue": QUEUE,
                "jobDefinition": "csv-importer",
                "parameters": {},  # the provider's default
                "tags": TAGS,
                "containerOverrides": OVERRIDES,
                **extra,
            },
        )

    def describes(self, job: dict[str, Any], times: int = 1) -> None:
        for _ in range(times):
            self.stubber.add_response("describe_jobs", {"jobs": [job]}, {"jobs": [job["jobId"]]})

    def monitors(self, job: dict[str, Any]) -> None:
        """The provider's ``monitor_job`` describes the job three times: links, log link, final status."""
        self.describes(job, times=3)


def assert_follows(
    operator: BatchSubmitOperator, batch: BatchStub, wait_for_job: mock.MagicMock, job_id: str
) -> None:
    """The operator waits on the (succeeding) ``job_id`` and submits nothing (the stub would refuse it)."""
    batch.monitors(batch_job(job_id, "SUCCEEDED", container={"exitCode": 0}))

    assert operator.execute(context()) == job_id

    batch.stubber.assert_no_pending_responses()
    wait_for_job.assert_called_once_with(job_id)


@pytest.fixture
def wait_for_job() -> Iterator[mock.MagicMock]:
    with mock.patch.object(ImportJobHook, "wait_for_job") as wait:
        yield wait


class TestBatchSubmitOperatorSubmit:
    def test_a_first_try_submits_the_job_tagged_with_the_run(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock
    ) -> None:
        operator = submit_operator(array_properties={"size": 3})
        batch = BatchStub(operator)
        batch.lists()
        batch.lists_import()
        batch.submits("job-new", arrayProperties={"size": 3})
        batch.monitors(batch_job("job-new", "SUCCEEDED", container={"exitCode": 0}))

        assert operator.execute(context()) == "job-new"

        batch.stubber.assert_no_pending_responses()
        wait_for_job.assert_called_once_with("job-new")

    @pytest.mark.parametrize("status", ["SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED"])
    def test_a_retry_reattaches_to_the_job_of_the_name_instead_of_submitting(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock, status: str
    ) -> None:
        operator = submit_operator()
        batch = BatchStub(operator)
        batch.lists(
            {"jobId": "job-failed", "status": "FAILED", "createdAt": 9},
            {"jobId": "job-first", "status": status, "createdAt": 1},
        )
        assert_follows(operator, batch, wait_for_job, "job-first")

    def test_a_failed_job_of_the_name_is_not_reattached_to(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock
    ) -> None:
        operator = submit_operator()
        batch = BatchStub(operator)
        batch.lists({"jobId": "job-failed", "status": "FAILED", "createdAt": 1})
        batch.lists_import({"jobId": "job-failed", "jobName": JOB_NAME, "status": "FAILED", "createdAt": 1})
        batch.submits("job-second")
        batch.monitors(batch_job("job-second", "SUCCEEDED", container={"exitCode": 0}))

        assert operator.execute(context()) == "job-second"
        batch.stubber.assert_no_pending_responses()


class TestBatchSubmitOperatorFailures:
    def fails(self, operator: BatchSubmitOperator, job: dict[str, Any]) -> BatchStub:
        """Expect a submit whose job ends ``job`` (FAILED), then the operator's own describe of it."""
        batch = BatchStub(operator)
        batch.lists()
        batch.lists_import()
        batch.submits(
            job["jobId"],
            **({"arrayProperties": operator.array_properties} if operator.array_properties else {}),
        )
        batch.monitors(job)  # the third describe is check_job_success, which raises on FAILED
        batch.describes(job)
        return batch

    def test_a_non_retryable_exit_code_fails_without_retry_naming_the_counts(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock
    ) -> None:
        write_manifests(
            aws.s3,
            {"rows_read": 20, "rows_imported": 5, "rows_rejected": 15, "status": "reject_ratio_exceeded"},
        )
        operator = submit_operator()
        batch = self.fails(operator, batch_job("job-1", "FAILED", container={"exitCode": 4}))

        with pytest.raises(AirflowFailException) as failed:
            operator.execute(context())

        batch.stubber.assert_no_pending_responses()
        assert str(failed.value) == (
            f"Import {IMPORT_ID} of s3://{BUCKET}/{S3_KEY} failed and is not retried: AWS Batch job job-1 exited "
            "with 4 (REJECT_RATIO_EXCEEDED); rows_read=20 rows_imported=5 rows_rejected=15 duplicate_keys=0 "
            "distinct_keys=5 (manifests of 1/1 shards, status reject_ratio_exceeded); "
            f"rejected rows under s3://{BUCKET}/rejected/{IMPORT_ID}/"
        )

    @pytest.mark.parametrize(
        ("fields", "codes"),
        [
            pytest.param({"container": {"exitCode": 1}}, "[1]", id="unexpected"),
            pytest.param({"container": {"exitCode": 75}}, "[75]", id="transient"),
            pytest.param({"container": {}}, "none", id="never-exited"),
        ],
    )
    def test_any_other_failure_stays_retryable(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock, fields: dict[str, Any], codes: str
    ) -> None:
        operator = submit_operator()
        job = batch_job("job-1", "FAILED", statusReason="Essential container in task exited", **fields)
        batch = self.fails(operator, job)

        with pytest.raises(AirflowException) as failed:
            operator.execute(context())

        batch.stubber.assert_no_pending_responses()
        assert not isinstance(failed.value, AirflowFailException)
        assert str(failed.value) == (
            f"AWS Batch job job-1 importing s3://{BUCKET}/{S3_KEY} failed (exit codes {codes}, "
            "Essential container in task exited); a retry may fix this"
        )

    def test_a_non_retryable_exit_code_of_an_array_child_fails_with_the_summed_counts(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock
    ) -> None:
        write_manifests(
            aws.s3,
            {"rows_read": 100, "rows_imported": 10, "rows_rejected": 90, "status": "reject_ratio_exceeded"},
            {"rows_read": 100, "rows_imported": 10, "rows_rejected": 90, "status": "reject_ratio_exceeded"},
            {"rows_read": 30, "rows_imported": 10, "rows_rejected": 20, "status": "reject_ratio_exceeded"},
        )
        operator = submit_operator(array_properties={"size": 3}, shard_count=3)
        parent = batch_job("array-1", "FAILED", arrayProperties={"size": 3})
        batch = self.fails(operator, parent)
        batch.stubber.add_response(
            "list_jobs",
            {
                "jobSummaryList": [
                    {"jobId": "array-1:0", "jobName": JOB_NAME},
                    {"jobId": "array-1:2", "jobName": JOB_NAME},
                ]
            },
            {"arrayJobId": "array-1", "jobStatus": "FAILED"},
        )
        batch.stubber.add_response(
            "describe_jobs",
            {
                "jobs": [
                    batch_job("array-1:0", "FAILED", container={"exitCode": 1}),
                    batch_job("array-1:2", "FAILED", container={"exitCode": 4}),
                ]
            },
            {"jobs": ["array-1:0", "array-1:2"]},
        )

        with pytest.raises(AirflowFailException) as failed:
            operator.execute(context())

        batch.stubber.assert_no_pending_responses()
        message = str(failed.value)
        assert "AWS Batch job array-1 exited with 4 (REJECT_RATIO_EXCEEDED); " in message
        assert "rows_read=230 rows_imported=30 rows_rejected=200 " in message
        assert "(manifests of 3/3 shards, status reject_ratio_exceeded)" in message


class TestBatchSubmitOperatorOneJobPerImport:
    def test_an_active_job_of_the_import_from_another_run_is_followed_not_submitted(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock
    ) -> None:
        operator = submit_operator()
        batch = BatchStub(operator)
        batch.lists()  # nothing of this run
        other_run = f"{IMPORT_PREFIX}0123456789abcdef"
        batch.lists_import(
            {"jobId": "job-ended", "jobName": other_run, "status": "SUCCEEDED", "createdAt": 1},
            {"jobId": "job-other-file", "jobName": f"{IMPORT_PREFIX}x", "status": "RUNNING", "createdAt": 2},
            {"jobId": "job-event-run", "jobName": other_run, "status": "RUNNABLE", "createdAt": 3},
        )
        batch.stubber.add_response(
            "describe_jobs",
            {
                "jobs": [
                    batch_job("job-other-file", "RUNNING", createdAt=2, tags={"import_id": "another-import"}),
                    batch_job("job-event-run", "RUNNABLE", createdAt=3, tags={"import_id": IMPORT_ID}),
                ]
            },
            {"jobs": ["job-other-file", "job-event-run"]},
        )
        assert_follows(operator, batch, wait_for_job, "job-event-run")

    def test_the_submitted_job_is_recorded_in_the_imports_claim(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock
    ) -> None:
        operator = submit_operator()
        batch = BatchStub(operator)
        batch.lists()
        batch.lists_import()
        batch.submits("job-new")
        batch.monitors(batch_job("job-new", "SUCCEEDED", container={"exitCode": 0}))

        operator.execute(context())

        claim = aws.s3.get_object(Bucket=BUCKET, Key=job_claim_key("manifests/", IMPORT_ID))
        assert json.loads(claim["Body"].read())["job_id"] == "job-new"

    @pytest.mark.parametrize(
        ("status", "reprocess", "submits"),
        [("SUCCEEDED", False, False), ("SUCCEEDED", True, True), ("FAILED", False, True)],
        ids=["succeeded-is-followed-until-verified", "succeeded-with-reprocess", "failed"],
    )
    def test_a_claimed_job_that_ended_is_followed_only_if_it_succeeded_and_the_run_does_not_reprocess(
        self, aws: SimpleNamespace, wait_for_job: mock.MagicMock, status: str, reprocess: bool, submits: bool
    ) -> None:
        # Another run's job of this import ended before that run's verify_file wrote verified.json.
        claim_key = job_claim_key("manifests/", IMPORT_ID)
        aws.s3.put_object(
            Bucket=BUCKET,
            Key=claim_key,
            Body=json.dumps({"owner": "another-run", "job_id": "job-done"}).encode(),
        )
        operator = submit_operator()
        batch = BatchStub(operator)
        batch.lists()
        batch.lists_import()  # no active job of the import on the queue
        batch.describes(batch_job("job-done", status))
        if submits:
            batch.submits("job-new")
        expected = "job-new" if submits else "job-done"
        batch.monitors(batch_job(expected, "SUCCEEDED", container={"exitCode": 0}))

        assert operator.execute(context(reprocess=reprocess)) == expected

        batch.stubber.assert_no_pending_responses()
        wait_for_job.assert_called_once_with(expected)
        claim = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=claim_key)["Body"].read())
        assert claim["job_id"] == expected


class TestBatchSubmitOperatorDeferrable:
    """``deferrable=True``: the wait is the provider's ``BatchJobTrigger``; what the task does after it
    (``execute_complete``) classifies failures as the polling wait does."""

    def test_a_job_in_flight_defers_to_the_batch_trigger_at_the_poll_interval_after_the_settle_delay(
        self, aws: SimpleNamespace
    ) -> None:
        operator = submit_operator(deferrable=True, max_retries=50, first_poll_delay=7.0)
        batch = BatchStub(operator)
        batch.lists()
        batch.lists_import()
        batch.submits("job-1")
        batch.describes(batch_job("job-1", "RUNNABLE"))

        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(context())

        batch.stubber.assert_no_pending_responses()
        trigger = deferred.value.trigger
        assert isinstance(trigger, BatchJobTrigger)
        assert deferred.value.method_name == "execute_complete"
        _, kwargs = trigger.serialize()
        assert (kwargs["job_id"], kwargs["waiter_delay"], kwargs["waiter_max_attempts"]) == ("job-1", 1, 50)
        assert kwargs["first_poll_delay"] == 7.0

    def test_a_non_retryable_exit_code_after_the_wait_fails_without_retry_naming_the_counts(
        self, aws: SimpleNamespace
    ) -> None:
        write_manifests(
            aws.s3,
            {"rows_read": 20, "rows_imported": 5, "rows_rejected": 15, "status": "reject_ratio_exceeded"},
        )
        operator = submit_operator(deferrable=True)
        batch = BatchStub(operator)
        batch.describes(batch_job("job-1", "FAILED", container={"exitCode": 4}), times=2)  # log link, status

        with pytest.raises(AirflowFailException) as failed:
            operator.execute_complete(
                context(), {"status": "error", "message": "terminal failure", "job_id": "job-1"}
            )

        batch.stubber.assert_no_pending_responses()
        assert str(failed.value) == (
            f"Import {IMPORT_ID} of s3://{BUCKET}/{S3_KEY} failed and is not retried: AWS Batch job job-1 exited "
            "with 4 (REJECT_RATIO_EXCEEDED); rows_read=20 rows_imported=5 rows_rejected=15 duplicate_keys=0 "
            "distinct_keys=5 (manifests of 1/1 shards, status reject_ratio_exceeded); "
            f"rejected rows under s3://{BUCKET}/rejected/{IMPORT_ID}/"
        )

    def test_any_other_failure_after_the_wait_stays_retryable(self, aws: SimpleNamespace) -> None:
        operator = submit_operator(deferrable=True)
        batch = BatchStub(operator)
        job = batch_job(
            "job-1", "FAILED", statusReason="Essential container in task exited", container={"exitCode": 1}
        )
        batch.describes(job, times=2)

        with pytest.raises(AirflowException) as failed:
            operator.execute_complete(
                context(), {"status": "error", "message": "terminal failure", "job_id": "job-1"}
            )

        batch.stubber.assert_no_pending_responses()
        assert not isinstance(failed.value, AirflowFailException)
        assert str(failed.value) == (
            f"AWS Batch job job-1 importing s3://{BUCKET}/{S3_KEY} failed (exit codes [1], "
            "Essential container in task exited); a retry may fix this"
        )

    def test_a_job_that_succeeded_completes_the_task_with_its_id(self, aws: SimpleNamespace) -> None:
        operator = submit_operator(deferrable=True)
        batch = BatchStub(operator)
        batch.describes(batch_job("job-1", "SUCCEEDED", container={"exitCode": 0}), times=2)

        assert operator.execute_complete(context(), {"status": "success", "job_id": "job-1"}) == "job-1"
        batch.stubber.assert_no_pending_responses()

    def test_a_job_failed_by_its_first_describe_is_classified_without_deferring(
        self, aws: SimpleNamespace
    ) -> None:
        operator = submit_operator(deferrable=True)
        batch = BatchStub(operator)
        batch.lists()
        batch.lists_import()
        batch.submits("job-1")
        batch.describes(
            batch_job("job-1", "FAILED", container={"exitCode": 3}), times=3
        )  # links, log link, status

        with pytest.raises(
            AirflowFailException, match=r"exited with 3 \(BAD_INPUT\); no manifest was written"
        ):
            operator.execute(context())
        batch.stubber.assert_no_pending_responses()


# --- VerifyImportOperator ------------------------------------------------------------------------------


@pytest.fixture
def table(aws: SimpleNamespace) -> SimpleNamespace:
    """The import table with its verification index, as provisioning makes it."""
    ensure_table(
        aws.dynamodb,
        table_name=TABLE,
        key_schema=[("id", "HASH", "S")],
        poll_seconds=0,
    )
    return aws


def import_with_the_job(aws: SimpleNamespace, key: str, data_rows: list[list[str]]) -> str:
    """Land ``data_rows`` and import them with the real job code in-process; returns the import id."""
    landed = land(aws, key, csv_text(HEADER, data_rows))
    import_id = derive_import_id(BUCKET, key, landed["etag"])
    job_settings = JobSettings(bucket=BUCKET, key=key, table=TABLE, import_id=import_id, max_reject_ratio=1.0)
    run_import(job_settings, s3=aws.s3, dynamodb=aws.dynamodb)
    return import_id


def verify_operator(import_id: str, key: str, **kwargs: Any) -> VerifyImportOperator:
    return VerifyImportOperator(
        task_id="verify_file",
        import_id=import_id,
        s3_key=key,
        shard_count=1,
        bucket_name=BUCKET,
        manifest_prefix="manifests/",
        rejected_prefix="rejected/",
        table_name=TABLE,
        key_schema=KEY_SCHEMA,
        vcpus=1.0,
        memory_mib=2048,
        prices=dataclasses.asdict(load_config(environ={}).prices),
        settle_seconds=0.25,
        **AWS,
        **kwargs,
    )


def marker(aws: SimpleNamespace, import_id: str) -> dict[str, Any] | None:
    key = verified_marker_key("manifests/", import_id)
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("Contents", [])
    if not listed:
        return None
    return json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


class TestVerifyImportOperator:
    def test_a_verified_import_writes_its_marker_and_returns_its_numbers(
        self, table: SimpleNamespace
    ) -> None:
        key = f"{LANDING}{DATE}/orders.csv"
        import_id = import_with_the_job(table, key, rows(0, 20) + rows(0, 5) + [["", "no key"]])

        run_context = context()
        with mock.patch("batch_import.hooks.time.sleep") as sleep:
            returned = verify_operator(import_id, key).execute(run_context)

        sleep.assert_not_called()
        counts = {
            k: returned[k] for k in ("import_id", "s3_key", "rows_read", "rows_imported", "rows_rejected")
        }
        assert counts == {
            "import_id": import_id,
            "s3_key": key,
            "rows_read": 26,
            "rows_imported": 25,
            "rows_rejected": 1,
        }
        assert (returned["items_counted"], returned["keys_superseded"]) == (20, 0)
        # The cost report: 20 writes of items under 1 KB (the 5 duplicates replace rows still pending in the same
        # request, so they are never sent), 20 distinct keys read back eventually consistent.
        prices = load_config(environ={}).prices
        assert (returned["write_request_units"], returned["read_request_units"]) == (20, 10)
        parts = returned["estimated_cost_parts_usd"]
        assert parts["dynamodb_writes"] == pytest.approx(20 / 1e6 * prices.dynamodb_write_per_million_units)
        assert parts["dynamodb_reads"] == pytest.approx(10 / 1e6 * prices.dynamodb_read_per_million_units)
        assert returned["estimated_cost_usd"] == pytest.approx(sum(parts.values()), abs=1e-7)
        # job: GET + 2 PUT; verification: LIST + GET of the manifest, LIST of rejected + GET, GET of the file, PUT
        assert returned["s3_requests"] == 3 + 6
        assert returned["batch_vcpu_seconds"] * 2 == pytest.approx(
            returned["batch_memory_gib_seconds"], abs=1e-3
        )
        written = marker(table, import_id)
        assert written is not None
        assert {k: written[k] for k in ("import_id", "s3_key", "expected", "counted", "run_id")} == {
            "import_id": import_id,
            "s3_key": key,
            "expected": 20,
            "counted": 20,
            "run_id": RUN_ID,
        }
        assert written["estimated_cost_usd"] == returned["estimated_cost_usd"]
        # Extra links: the import's manifests and rejected rows in the S3 console.
        pushed = {
            call.kwargs["key"]: call.kwargs["value"] for call in run_context["ti"].xcom_push.call_args_list
        }
        assert pushed["csv_import_manifests"]["prefix"] == f"manifests/{import_id}/"
        assert pushed["csv_import_rejected_rows"]["prefix"] == f"rejected/{import_id}/"
        assert ImportManifestsLink().format_link(**pushed["csv_import_manifests"]) == (
            f"https://s3.console.aws.amazon.com/s3/buckets/{BUCKET}?region={REGION}&prefix=manifests%2F{import_id}%2F"
        )

    def test_with_the_opt_in_import_id_index_its_writes_show_in_the_cost(self, aws: SimpleNamespace) -> None:
        ensure_table(
            aws.dynamodb,
            table_name=TABLE,
            key_schema=[("id", "HASH", "S")],
            import_id_index="importId-index",
            poll_seconds=0,
        )
        key = f"{LANDING}{DATE}/indexed.csv"
        import_id = import_with_the_job(aws, key, rows(0, 12))

        returned = verify_operator(import_id, key).execute(context())

        # 12 items under 1 KB: 12 table writes and 12 index entries under 1 KB (keys + 100 bytes overhead).
        assert returned["index_write_request_units"] == {"importId-index": 12}
        assert returned["write_request_units"] == 24
        prices = load_config(environ={}).prices
        assert returned["estimated_cost_parts_usd"]["dynamodb_writes"] == pytest.approx(
            24 / 1e6 * prices.dynamodb_write_per_million_units
        )

    def test_keys_taken_over_by_a_later_file_verify_and_are_reported(self, table: SimpleNamespace) -> None:
        first_key, second_key = f"{LANDING}{DATE}/a.csv", f"{LANDING}{DATE}/b.csv"
        first = import_with_the_job(table, first_key, rows(0, 20))
        import_with_the_job(table, second_key, rows(15, 30))  # k0015..k0019 now carry the second import id

        returned = verify_operator(first, first_key).execute(context())

        assert (returned["items_counted"], returned["keys_superseded"]) == (15, 5)
        written = marker(table, first)
        assert written is not None
        assert (written["expected"], written["counted"], written["superseded"]) == (20, 15, 5)

    def test_an_import_still_short_after_the_settle_attempts_fails_without_a_marker(
        self, table: SimpleNamespace, caplog: pytest.LogCaptureFixture
    ) -> None:
        key = f"{LANDING}{DATE}/orders.csv"
        import_id = import_with_the_job(table, key, rows(0, 20))
        table.dynamodb.delete_item(TableName=TABLE, Key={"id": {"S": "k0003"}})

        with (
            mock.patch("batch_import.hooks.time.sleep") as sleep,
            caplog.at_level("INFO", "batch_import"),
            pytest.raises(AirflowFailException) as failed,
        ):
            verify_operator(import_id, key, settle_attempts=3).execute(context())

        assert str(failed.value).startswith(
            f"Verification failed: import {import_id} of {key}: manifests say 20 distinct keys imported, 20 "
            "distinct keys of the file's 20 valid rows read back: 19 items carry the import id, 1 keys of the "
            "file are not in the table (e.g. k0003) ("
        )
        assert sleep.call_args_list == [mock.call(0.25), mock.call(0.25)]
        assert sum(r.getMessage().startswith("Verification attempt") for r in caplog.records) == 3
        assert marker(table, import_id) is None

    def test_an_import_without_manifests_fails_naming_where_they_were_looked_for(
        self, table: SimpleNamespace
    ) -> None:
        with pytest.raises(AirflowFailException, match=r"found manifests of 0 of 1 shards under s3://"):
            verify_operator(IMPORT_ID, f"{LANDING}{DATE}/never.csv").execute(context())
