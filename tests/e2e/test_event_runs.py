"""Files imported because they landed: S3 notifications -> the feed's SQS queue -> its AssetWatcher -> a run.

One local AWS endpoint and ONE ``airflow standalone`` (scheduler, DAG processor, triggerer) for the module,
provisioned once by the real provisioning DAG. No test triggers an import run: it lands files and waits for
their ``verified.json``. The trigger polls every second here (``events.empty_poll_delay_seconds``); every
wait has a generous deadline and nothing asserts on wall-clock time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from batch_import import files
from batch_import.config import FeedConfig, PipelineConfig, load_config
from csv_importer.import_id import derive_import_id
from include.airflow_standalone import AirflowRestClient
from include.demo.stack import ProvisionedStack, provisioned_stack
from tests.e2e.conftest import csv_text
from tests.fixtures.feeds import first_feed
from tests.fixtures.held_jobs import BATCH_STATUSES, wait_for

pytestmark = pytest.mark.slow

_FEED_NAME = first_feed(load_config(environ={})).name.upper()
EVENT_SETTINGS = {
    f"CSV_IMPORT__FEEDS__{_FEED_NAME}__COLUMN_TYPES": "",  # the tests' files have their own columns
    "CSV_IMPORT__EVENTS__EMPTY_POLL_DELAY_SECONDS": "1",
    "CSV_IMPORT__EVENTS__LONG_POLL_SECONDS": "5",
    "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "1",
    "CSV_IMPORT__IMPORT__RETRY_DELAY_SECONDS": "1",
    # The scheduled run of yesterday (created when the DAG appears) gives up quickly instead of holding a slot.
    "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "5",
    "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "1",
}
VERIFIED_WITHIN = 300.0  # generous: a 2-core machine shared with other work
HEADER = ["id", "name", "price"]


@dataclass(frozen=True)
class EventStack:
    provisioned: ProvisionedStack
    s3: Any
    sqs: Any
    batch: Any

    @property
    def client(self) -> AirflowRestClient:
        return self.provisioned.client

    @property
    def config(self) -> PipelineConfig:
        return self.provisioned.config

    @property
    def feed(self) -> FeedConfig:
        return first_feed(self.config)

    def land(self, day: date, name: str, row_count: int = 5, *, with_event: bool = True) -> files.LandedFile:
        key = f"{self.feed.landing_prefix}{day.isoformat()}/{name}"
        rows = [[f"{name}-{n}", f"name {n}", str(n)] for n in range(row_count)]
        body = csv_text(HEADER, rows).encode()
        if with_event:
            self.s3.put_object(Bucket=self.config.bucket.name, Key=key, Body=body)
        else:
            self.provisioned.land_without_event(key, body)
        head = self.s3.head_object(Bucket=self.config.bucket.name, Key=key)
        return files.LandedFile(key=key, size=int(head["ContentLength"]), etag=head["ETag"])

    def import_id(self, landed: files.LandedFile) -> str:
        return derive_import_id(self.config.bucket.name, landed["key"], landed["etag"])

    def is_verified(self, landed: files.LandedFile) -> bool:
        return files.is_verified(
            self.s3,
            bucket_name=self.config.bucket.name,
            manifest_prefix=self.feed.manifest_prefix,
            import_id=self.import_id(landed),
        )

    def wait_until_verified(self, *landed: files.LandedFile, timeout: float = VERIFIED_WITHIN) -> None:
        wait_for(
            lambda: all(self.is_verified(each) for each in landed),
            timeout,
            f"{[f['key'] for f in landed]} verified",
        )

    def jobs_for(self, key: str) -> list[dict[str, Any]]:
        """The Batch jobs (array parents and single jobs, not array children) whose override imports ``key``."""
        paginator = self.batch.get_paginator("list_jobs")
        job_ids = [
            job["jobId"]
            for status in BATCH_STATUSES  # without a status (or filter) Batch lists only RUNNING jobs
            for page in paginator.paginate(jobQueue=self.config.batch.job_queue, jobStatus=status)
            for job in page["jobSummaryList"]
        ]
        described = []
        for start in range(0, len(job_ids), 100):
            described += self.batch.describe_jobs(jobs=job_ids[start : start + 100])["jobs"]
        return [job for job in described if job_environment(job).get("key") == key]

    def event_runs(self) -> list[dict[str, Any]]:
        return self.client.dag_runs(self.feed.dag_id, run_type="asset_triggered")

    def queue_url(self) -> str:
        return self.sqs.get_queue_url(QueueName=self.feed.event_queue)["QueueUrl"]


def job_environment(job: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in job.get("container", {}).get("environment", [])}


def s3_event_body(bucket: str, key: str) -> str:
    """An S3 ObjectCreated notification as S3 sends it (key form-encoded)."""
    import urllib.parse

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": urllib.parse.quote_plus(key)}},
    }
    return json.dumps({"Records": [record]})


@pytest.fixture(scope="module")
def event_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStack]:
    with provisioned_stack(tmp_path_factory.mktemp("event-stack"), EVENT_SETTINGS) as stack:
        yield EventStack(
            s3=stack.aws("s3"),
            sqs=stack.aws("sqs"),
            batch=stack.aws("batch"),
            provisioned=stack,
        )


# A landing day no scheduled run covers (catchup is off): only events (or a backfill) import its files.
DAY = datetime.now(UTC).date() - timedelta(days=30)


def test_a_landed_file_is_imported_and_verified_without_a_trigger(event_stack: EventStack) -> None:
    landed = event_stack.land(DAY, "single.csv")

    event_stack.wait_until_verified(landed)

    assert len(event_stack.jobs_for(landed["key"])) == 1
    runs = event_stack.event_runs()
    assert runs, "the import ran because of the file's event"
    assert all(run["logical_date"] is None for run in runs)


def test_five_files_landed_at_once_are_each_imported_by_exactly_one_job(event_stack: EventStack) -> None:
    landed = [event_stack.land(DAY, f"burst-{n}.csv", row_count=3 + n) for n in range(5)]

    event_stack.wait_until_verified(*landed)

    assert {each["key"]: len(event_stack.jobs_for(each["key"])) for each in landed} == {
        each["key"]: 1 for each in landed
    }


def test_an_event_for_an_already_verified_file_starts_no_job(event_stack: EventStack) -> None:
    landed = event_stack.land(DAY, "again.csv")
    event_stack.wait_until_verified(landed)
    wait_for(
        lambda: all(run["state"] in ("success", "failed") for run in event_stack.event_runs()), 120, "idle"
    )
    before = {run["dag_run_id"] for run in event_stack.event_runs()}

    event_stack.sqs.send_message(
        QueueUrl=event_stack.queue_url(),
        MessageBody=s3_event_body(event_stack.config.bucket.name, landed["key"]),
    )

    def new_runs() -> list[dict[str, Any]]:
        return [run for run in event_stack.event_runs() if run["dag_run_id"] not in before]

    wait_for(
        lambda: any(run["state"] in ("success", "failed") for run in new_runs()), 180, "the event's run done"
    )
    (run,) = new_runs()
    assert run["state"] == "success"
    states = {
        ti["task_id"]: ti["state"]
        for ti in event_stack.client.task_instances(run["dag_id"], run["dag_run_id"])
    }
    assert states["list_files"] == "skipped", states
    assert len(event_stack.jobs_for(landed["key"])) == 1


def test_a_file_whose_event_was_lost_is_imported_by_its_days_timetable_run(event_stack: EventStack) -> None:
    lost_day = DAY - timedelta(days=1)
    # The event is lost: no message reaches the queue (as when the triggerer was down and the trigger deleted
    # the message on receipt, or its run failed).
    lost = event_stack.land(lost_day, "lost.csv", with_event=False)
    assert not event_stack.is_verified(lost)

    backfill = event_stack.client.backfill_while_paused(
        event_stack.feed.dag_id,
        from_date=f"{lost_day.isoformat()}T00:00:00Z",
        to_date=f"{lost_day.isoformat()}T00:00:00Z",
        max_active_runs=1,
    )
    (run,) = event_stack.client.wait_for_backfill(backfill, timeout=VERIFIED_WITHIN)

    assert run["state"] == "success"
    assert event_stack.is_verified(lost)
    assert len(event_stack.jobs_for(lost["key"])) == 1
