"""The import DAG's hooks and the plain functions its operators wire together (``batch_import.hooks``).

Batch calls go through botocore's ``Stubber`` on the hook's own client, so every call and its parameters
are asserted exactly; S3 and DynamoDB are moto in-process (``mock_aws``). Sleeps are mocked out.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from batch_import.hooks import (
    NON_RETRYABLE_EXIT_CODES,
    DynamoDBClientHook,
    ImportJobHook,
    describe_manifests,
    verify_until_settled,
)
from batch_import.verification import ManifestTotals, VerificationError, VerificationResult
from csv_importer.manifest import ImportManifest, write_manifest
from tests.plugins.test_import_files import BUCKET

pytestmark = pytest.mark.usefixtures("shared_botocore_loader")
REGION = "us-east-1"
QUEUE = "csv-import-queue"
JOB_NAME = "csv-import-orders-csv-0123456789abcdef0123"
IMPORT_ID = "0123456789abcdef01234567"


def write_manifests(s3: Any, *shards: dict[str, Any], import_id: str = IMPORT_ID) -> None:
    """Write one shard manifest per ``shards`` entry (counts and status) with the job's own writer."""
    for index, counts in enumerate(shards):
        write_manifest(
            s3,
            ImportManifest(
                import_id=import_id,
                bucket=BUCKET,
                key="incoming/2026-03-04/orders.csv",
                etag='"etag"',
                table="items",
                shard_index=index,
                shard_count=len(shards),
                rows_read=counts["rows_read"],
                rows_imported=counts["rows_imported"],
                rows_rejected=counts["rows_rejected"],
                duplicate_keys=0,
                distinct_keys=counts["rows_imported"],
                rejected_key=f"rejected/{import_id}/shard-{index}-of-{len(shards)}.csv",
                started_at="2026-03-04T00:00:00Z",
                finished_at="2026-03-04T00:00:01Z",
                status=counts.get("status", "succeeded"),
            ),
            manifest_prefix="manifests/",
        )


def batch_job(job_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """A ``DescribeJobs`` entry (the fields botocore requires, plus ``fields``)."""
    return {
        "jobId": job_id,
        "jobName": JOB_NAME,
        "jobQueue": f"arn:aws:batch:{REGION}:000000000000:job-queue/{QUEUE}",
        "jobDefinition": f"arn:aws:batch:{REGION}:000000000000:job-definition/csv-importer:1",
        "status": status,
        "startedAt": 1,
        **fields,
    }


def stubbed(hook: ImportJobHook) -> Stubber:
    stubber = Stubber(hook.client)
    stubber.activate()
    return stubber


def make_hook(**kwargs: Any) -> ImportJobHook:
    return ImportJobHook(aws_conn_id=None, region_name=REGION, **kwargs)


class TestImportJobHookPolling:
    @pytest.mark.parametrize(
        ("poll_interval", "delay", "slept"),
        [
            pytest.param(15.0, None, 1.0, id="initial-wait-is-short"),
            pytest.param(0.5, None, 0.5, id="initial-wait-within-poll-interval"),
            pytest.param(15.0, 3.0, 3.0, id="short-delay-kept"),
            pytest.param(15.0, 600.0, 15.0, id="long-delay-capped"),
            pytest.param(15.0, -2.0, 0.0, id="negative-delay-is-zero"),
        ],
    )
    def test_delay_is_capped_at_the_poll_interval(
        self, poll_interval: float, delay: float | None, slept: float
    ) -> None:
        hook = make_hook(poll_interval_seconds=poll_interval)
        with mock.patch("batch_import.hooks.time.sleep") as sleep:
            hook.delay(delay)
        sleep.assert_called_once_with(slept)

    def test_exponential_delay_is_capped_at_the_poll_interval(self) -> None:
        # The provider's back-off after 50 tries is 200-600 s.
        assert make_hook(poll_interval_seconds=7.0).exponential_delay(50) == 7.0

    def test_exponential_delay_below_the_cap_is_the_providers(self) -> None:
        with mock.patch(
            "airflow.providers.amazon.aws.hooks.batch_client.random.uniform", return_value=0.9
        ) as uniform:
            assert make_hook(poll_interval_seconds=7.0).exponential_delay(1) == 0.9
        uniform.assert_called_once_with(pytest.approx(1.36 / 3), pytest.approx(1.36))

    def test_waiting_for_a_slow_job_never_pauses_longer_than_the_poll_interval(self) -> None:
        hook = make_hook(poll_interval_seconds=2.0, max_retries=20)
        stubber = stubbed(hook)
        statuses = ["RUNNABLE"] * 10 + ["RUNNING", "SUCCEEDED"]
        for status in statuses:
            stubber.add_response("describe_jobs", {"jobs": [batch_job("job-1", status)]}, {"jobs": ["job-1"]})

        with mock.patch("batch_import.hooks.time.sleep") as sleep:
            hook.wait_for_job("job-1")

        stubber.assert_no_pending_responses()
        pauses = [call.args[0] for call in sleep.call_args_list]
        assert pauses[:2] == [1.0, 1.0]  # before polling, and before the first status check
        assert len(pauses) == 2 + 10 + 1  # one pause before each further check, one before "complete"
        assert max(pauses) == 2.0  # the provider would pause ~30 s before the 10th check


class TestImportJobHookParameters:
    def test_the_submit_operator_passes_its_poll_interval_connection_and_region(self) -> None:
        from batch_import.operators import BatchSubmitOperator

        operator = BatchSubmitOperator(
            task_id="import_file",
            job_name=JOB_NAME,
            job_queue=QUEUE,
            job_definition="csv-importer",
            import_id=IMPORT_ID,
            s3_key="incoming/2026-03-04/orders.csv",
            bucket_name=BUCKET,
            manifest_prefix="manifests/",
            rejected_prefix="rejected/",
            poll_interval=4,
            max_retries=11,
            status_retries=3,
            aws_conn_id=None,
            region_name="eu-west-1",
        )

        hook = operator.hook
        assert type(hook) is ImportJobHook
        assert (hook.poll_interval_seconds, hook.max_retries, hook.status_retries) == (4, 11, 3)
        assert (hook.aws_conn_id, hook.region_name) == (None, "eu-west-1")
        assert hook.client.meta.service_model.service_name == "batch"
        assert hook.client.meta.region_name == "eu-west-1"


class TestFindSubmittedJob:
    def expect_list(self, stubber: Stubber, pages: list[list[dict[str, Any]]]) -> None:
        for number, summaries in enumerate(pages):
            response: dict[str, Any] = {"jobSummaryList": summaries}
            params: dict[str, Any] = {
                "jobQueue": QUEUE,
                "filters": [{"name": "JOB_NAME", "values": [JOB_NAME]}],
            }
            if number < len(pages) - 1:
                response["nextToken"] = f"page-{number + 1}"
            if number:
                params["nextToken"] = f"page-{number}"
            stubber.add_response("list_jobs", response, params)

    @pytest.mark.parametrize("status", ["SUBMITTED", "RUNNABLE", "RUNNING", "SUCCEEDED"])
    def test_the_newest_in_flight_or_succeeded_job_of_the_name_across_pages(self, status: str) -> None:
        hook = make_hook()
        stubber = stubbed(hook)
        self.expect_list(
            stubber,
            [
                [
                    {"jobId": "old", "jobName": JOB_NAME, "status": "RUNNING", "createdAt": 1},
                    {"jobId": "failed", "jobName": JOB_NAME, "status": "FAILED", "createdAt": 9},
                ],
                [
                    {"jobId": "new", "jobName": JOB_NAME, "status": status, "createdAt": 5},
                    {"jobId": "other", "jobName": f"{JOB_NAME}-2", "status": "RUNNING", "createdAt": 8},
                ],
            ],
        )

        found = hook.find_submitted_job(QUEUE, JOB_NAME)

        stubber.assert_no_pending_responses()
        assert found is not None
        assert (found["jobId"], found["status"]) == ("new", status)

    def test_only_failed_jobs_of_the_name_mean_none_to_reattach_to(self) -> None:
        hook = make_hook()
        stubber = stubbed(hook)
        self.expect_list(
            stubber, [[{"jobId": "failed", "jobName": JOB_NAME, "status": "FAILED", "createdAt": 1}]]
        )

        assert hook.find_submitted_job(QUEUE, JOB_NAME) is None
        stubber.assert_no_pending_responses()


class TestFailedExitCodes:
    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            pytest.param({"container": {"exitCode": 4}}, {4}, id="container"),
            pytest.param(
                {
                    "container": {},
                    "attempts": [{"container": {"exitCode": 1}}, {"container": {"exitCode": 3}}],
                },
                {3},
                id="last-attempt",
            ),
            pytest.param({"container": {}}, set(), id="never-exited"),
        ],
    )
    def test_a_single_job(self, fields: dict[str, Any], expected: set[int]) -> None:
        hook = make_hook()
        stubber = stubbed(hook)  # no Batch call for a job that is not an array job

        assert hook.failed_exit_codes(batch_job("job-1", "FAILED", **fields)) == expected
        stubber.assert_no_pending_responses()

    def test_the_failed_children_of_an_array_job_in_chunks_of_100(self) -> None:
        hook = make_hook()
        stubber = stubbed(hook)
        child_ids = [f"array-1:{index}" for index in range(101)]
        stubber.add_response(
            "list_jobs",
            {"jobSummaryList": [{"jobId": child, "jobName": JOB_NAME} for child in child_ids]},
            {"arrayJobId": "array-1", "jobStatus": "FAILED"},
        )
        stubber.add_response(
            "describe_jobs",
            {"jobs": [batch_job(child, "FAILED", container={"exitCode": 1}) for child in child_ids[:100]]},
            {"jobs": child_ids[:100]},
        )
        stubber.add_response(
            "describe_jobs",
            {"jobs": [batch_job(child_ids[100], "FAILED", container={"exitCode": 4})]},
            {"jobs": child_ids[100:]},
        )
        parent = batch_job("array-1", "FAILED", arrayProperties={"size": 101})

        assert hook.failed_exit_codes(parent) == {1, 4}
        stubber.assert_no_pending_responses()

    def test_non_retryable_codes_are_the_jobs_documented_ones(self) -> None:
        assert NON_RETRYABLE_EXIT_CODES == {2, 3, 4, 5}


class TestDynamoDBClientHook:
    def test_a_low_level_dynamodb_client_for_the_connection_and_region(self) -> None:
        hook = DynamoDBClientHook(aws_conn_id=None, region_name="eu-west-1")

        assert hook.client_type == "dynamodb"
        assert hook.conn.meta.service_model.service_name == "dynamodb"
        assert hook.conn.meta.region_name == "eu-west-1"

    def test_items_come_back_in_dynamodb_json(self) -> None:
        with mock_aws():
            client = DynamoDBClientHook(aws_conn_id=None, region_name=REGION).conn
            client.create_table(
                TableName="items",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            client.put_item(TableName="items", Item={"id": {"S": "k1"}, "amount": {"N": "5"}})

            item = client.get_item(TableName="items", Key={"id": {"S": "k1"}})["Item"]

        assert item == {"id": {"S": "k1"}, "amount": {"N": "5"}}


class TestDescribeManifests:
    def describe(self, s3: Any, shard_count: int) -> str:
        return describe_manifests(
            s3, bucket_name=BUCKET, manifest_prefix="manifests/", import_id=IMPORT_ID, shard_count=shard_count
        )

    def test_counts_are_summed_over_the_shards(self, s3: Any) -> None:
        write_manifests(
            s3,
            {"rows_read": 100, "rows_imported": 10, "rows_rejected": 90, "status": "reject_ratio_exceeded"},
            {"rows_read": 30, "rows_imported": 20, "rows_rejected": 10},
        )

        assert self.describe(s3, 2) == (
            "rows_read=130 rows_imported=30 rows_rejected=100 duplicate_keys=0 distinct_keys=30 "
            "(manifests of 2/2 shards, status reject_ratio_exceeded,succeeded)"
        )

    def test_no_manifest(self, s3: Any) -> None:
        assert self.describe(s3, 1) == "no manifest was written"

    def test_an_unreadable_manifest_is_named(self, s3: Any) -> None:
        s3.put_object(Bucket=BUCKET, Key=f"manifests/{IMPORT_ID}/shard-0-of-1.json", Body=b"{not json")

        assert self.describe(s3, 1).startswith(
            f"manifest s3://{BUCKET}/manifests/{IMPORT_ID}/shard-0-of-1.json is not valid JSON"
        )


def totals() -> ManifestTotals:
    return ManifestTotals(
        import_id=IMPORT_ID,
        shard_count=1,
        shards_found=1,
        rows_read=20,
        rows_imported=20,
        rows_rejected=0,
        duplicate_keys=0,
        distinct_keys=20,
        statuses=("succeeded",),
    )


def result(counted: int) -> VerificationResult:
    """20 keys expected, all read back, ``counted`` of them found in the table."""
    return VerificationResult(
        import_id=IMPORT_ID,
        s3_key="incoming/x.csv",
        expected=20,
        counted=counted,
        keys_checked=20,
        rows_checked=20,
        missing_keys=20 - counted,
    )


class TestVerifyUntilSettled:
    def test_counts_again_until_the_index_settles(self, caplog: pytest.LogCaptureFixture) -> None:
        verify_once = mock.Mock(side_effect=[(result(17), totals()), (result(20), totals())])

        with mock.patch("batch_import.hooks.time.sleep") as sleep, caplog.at_level("INFO", "batch_import"):
            settled, _ = verify_until_settled(verify_once, attempts=3, pause_seconds=0.5)

        assert settled.verified
        assert verify_once.call_count == 2
        sleep.assert_called_once_with(0.5)
        attempts = [
            r.getMessage() for r in caplog.records if r.getMessage().startswith("Verification attempt")
        ]
        assert [message.split(":")[0] for message in attempts] == [
            "Verification attempt 1",
            "Verification attempt 2",
        ]
        assert "17 items carry the import id" in attempts[0]

    def test_gives_up_after_the_attempts_returning_the_last_count(self) -> None:
        verify_once = mock.Mock(
            side_effect=[(result(15), totals()), (result(16), totals()), (result(17), totals())]
        )

        with mock.patch("batch_import.hooks.time.sleep") as sleep:
            last, _ = verify_until_settled(verify_once, attempts=3, pause_seconds=0.5)

        assert (last.counted, last.verified) == (17, False)
        assert sleep.call_args_list == [mock.call(0.5), mock.call(0.5)]  # none after the last attempt

    def test_counts_at_least_once(self) -> None:
        verify_once = mock.Mock(return_value=(result(20), totals()))

        verify_until_settled(verify_once, attempts=0, pause_seconds=0)

        verify_once.assert_called_once_with()

    def test_a_verification_error_is_not_retried(self) -> None:
        verify_once = mock.Mock(side_effect=VerificationError("import x: the manifests carry no index_slots"))

        with pytest.raises(VerificationError, match="no index_slots"):
            verify_until_settled(verify_once, attempts=3, pause_seconds=0)
        verify_once.assert_called_once_with()
