"""``import_file`` deferred, against the local endpoint and one running ``airflow standalone`` (scheduler,
DAG processor, triggerer, API server) shared by this module's tests, all through the REST API.

The endpoint holds a job at its start when a file in ``LOCAL_AWS_BATCH_HOLD_DIR`` names its prefix (Batch reports
it RUNNING, nothing runs until SIGCONT), so "while the job runs" never depends on timing.

- While its Batch job runs, ``import_file`` is ``deferred`` (the wait is in the triggerer); released, the run
  succeeds, the file is verified, the job's own log lines are in the task log.
- A bad file fails ``import_file`` at once in deferrable mode: failed in try 1 (retries are configured),
  the counts in the failure message.
- Runs racing for the same file make one Batch job, which both follow and succeed on: two UI runs naming it via
  ``s3_key``; a backfill of its day and a UI run naming it; the run its S3 event started (the feed's watcher)
  and the timetable run of its day (a backfill).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_import.files import job_name_prefix
from csv_importer.import_id import derive_import_id
from include.demo.stack import provisioned_stack, put_without_event
from include.local_aws.job_runtime import HOLD_DIR_VARIABLE
from tests.fixtures.held_jobs import FEED, IMPORT_DAG_ID, HeldJobsWorld, days_ago

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Quick waits: the trigger polls Batch every second; a retry would come 2 s after a failed try (so a bad
# file retried by mistake shows as try 2 long before the test looks); a scheduled run without files gives up
# after 20 s; three runs may be active at once (the race needs two).
SETTINGS = {
    "CSV_IMPORT__IMPORT__DEFERRABLE": "true",
    "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "1",
    "CSV_IMPORT__IMPORT__TASK_RETRIES": "2",
    "CSV_IMPORT__IMPORT__RETRY_DELAY_SECONDS": "2",
    "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "20",
    "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "5",
    "CSV_IMPORT__SCHEDULE__MAX_ACTIVE_RUNS": "3",
    "CSV_IMPORT__EVENTS__EMPTY_POLL_DELAY_SECONDS": "1",
    "CSV_IMPORT__EVENTS__LONG_POLL_SECONDS": "5",
}
RUN_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeldJobsWorld]:
    home = tmp_path_factory.mktemp("deferred")
    hold_dir = home / "held_jobs"
    hold_dir.mkdir()
    with provisioned_stack(home, {**SETTINGS, HOLD_DIR_VARIABLE: str(hold_dir)}) as stack:
        yield HeldJobsWorld(
            endpoint=stack.endpoint,
            client=stack.client,
            config=stack.config,
            s3=stack.aws("s3"),
            batch=stack.aws("batch"),
            hold_dir=hold_dir,
        )


def _land_held(world: HeldJobsWorld, key: str, rows: int) -> tuple[str, Path]:
    """Land ``rows`` rows at ``key`` and hold the file's next Batch job at its start; the import id, the hold."""
    import_id = world.land(key, rows=rows)
    return import_id, world.hold_jobs_named(job_name_prefix(key))


def test_import_file_is_deferred_while_its_batch_job_runs(world: HeldJobsWorld) -> None:
    day = days_ago(60)
    key = f"{FEED.landing_prefix}{day.isoformat()}/deferred.csv"
    import_id, marker = _land_held(world, key, rows=200)
    run_id = world.trigger_day(day, conf={"s3_key": key})
    job, held = world.wait_for_held_job(marker)
    try:
        deferred = world.wait_for_task(run_id, "import_file", state="deferred", timeout=120)
        time.sleep(3)  # a few trigger polls later: still deferred, still the same try
        still = world.task_instance(run_id, "import_file", 0)
        assert (still["state"], still["try_number"]) == ("deferred", deferred["try_number"]), still
    finally:
        world.release(held)

    (run,) = world.client.wait_for_runs(IMPORT_DAG_ID, [run_id], timeout=RUN_TIMEOUT)
    final = world.task_instance(run_id, "import_file", 0)
    assert run["state"] == "success", final
    assert final["try_number"] == deferred["try_number"]
    assert world.verified(import_id)
    assert [j["jobId"] for j in world.jobs_for_file(key)] == [job["jobId"]]
    task_log = world.client.task_log(
        IMPORT_DAG_ID, run_id, "import_file", try_number=final["try_number"], map_index=0
    )
    assert re.search(r"Retrieved \d+ log messages from CloudWatch", task_log), task_log[-3000:]
    assert import_id in task_log


def test_a_bad_file_fails_import_file_at_once_with_its_counts_and_no_retry(world: HeldJobsWorld) -> None:
    day = days_ago(61)
    key = f"{FEED.landing_prefix}{day.isoformat()}/bad-rows.csv"
    # Two rows without a key: rejected; the feed's max_reject_ratio 0.0 makes the job exit 4.
    body = "id,price,quantity\nok-1,1.5,1\n,2.5,2\n,3.5,3\nok-2,4.5,4\n"
    put_without_event(world.s3, bucket_name=world.config.bucket.name, key=key, body=body.encode())
    run_id = world.trigger_day(day, conf={"s3_key": key})

    (run,) = world.client.wait_for_runs(IMPORT_DAG_ID, [run_id], timeout=RUN_TIMEOUT)
    time.sleep(5)  # longer than the retry delay: a retry, had there been one, would be scheduled by now
    final = world.task_instance(run_id, "import_file", 0)
    assert run["state"] == "failed"
    assert (final["state"], final["try_number"]) == ("failed", 1), final
    task_log = world.client.task_log(IMPORT_DAG_ID, run_id, "import_file", try_number=1, map_index=0)
    assert "exited with 4 (REJECT_RATIO_EXCEEDED)" in task_log, task_log[-3000:]
    assert re.search(r"rows_read=4 rows_imported=\d+ rows_rejected=2 ", task_log), task_log[-3000:]
    assert len(world.jobs_for_file(key)) == 1


def _one_job_followed_by(
    world: HeldJobsWorld, key: str, import_id: str, run_ids: list[str], marker: Path
) -> None:
    """The file's one (held) Batch job: every run's ``import_file`` defers on it; released, every run succeeds
    and the file is verified, still by that one job."""
    job, held = world.wait_for_held_job(marker)
    try:
        for run_id in run_ids:
            world.wait_for_task(run_id, "import_file", state="deferred", timeout=180)
        assert [j["jobId"] for j in world.jobs_for_file(key)] == [job["jobId"]]
    finally:
        world.release(held)

    runs = world.client.wait_for_runs(IMPORT_DAG_ID, run_ids, timeout=RUN_TIMEOUT)
    assert [run["state"] for run in runs] == ["success"] * len(run_ids), runs
    assert world.verified(import_id)
    assert [j["jobId"] for j in world.jobs_for_file(key)] == [job["jobId"]]


def test_two_ui_runs_racing_for_one_file_make_one_batch_job(world: HeldJobsWorld) -> None:
    day = days_ago(62)
    key = f"{FEED.landing_prefix}{day.isoformat()}/raced.csv"
    import_id, marker = _land_held(world, key, rows=200)
    run_ids = [
        world.client.trigger(IMPORT_DAG_ID, conf={"s3_key": key}, logical_date=None)["dag_run_id"]
        for _ in range(2)
    ]
    _one_job_followed_by(world, key, import_id, run_ids, marker)


def test_a_backfill_and_a_ui_run_racing_for_one_file_make_one_batch_job(world: HeldJobsWorld) -> None:
    day = days_ago(63)
    key = f"{FEED.landing_prefix}{day.isoformat()}/backfilled.csv"
    import_id, marker = _land_held(world, key, rows=200)
    midnight = f"{day.isoformat()}T00:00:00Z"
    backfill = world.client.backfill_while_paused(
        IMPORT_DAG_ID, from_date=midnight, to_date=midnight, max_active_runs=1
    )
    (backfill_run,) = world.client.dag_runs(
        IMPORT_DAG_ID, run_type="backfill", logical_date_gte=midnight, logical_date_lte=midnight
    )
    ui_run = world.client.trigger(IMPORT_DAG_ID, conf={"s3_key": key}, logical_date=None)["dag_run_id"]
    _one_job_followed_by(world, key, import_id, [backfill_run["dag_run_id"], ui_run], marker)
    world.client.wait_for_backfill(backfill, timeout=RUN_TIMEOUT)  # a DAG has one running backfill at a time


def test_an_event_run_and_its_days_timetable_run_racing_for_one_file_make_one_batch_job(
    world: HeldJobsWorld,
) -> None:
    day = days_ago(64)
    key = f"{FEED.landing_prefix}{day.isoformat()}/event-raced.csv"
    marker = world.hold_jobs_named(job_name_prefix(key))
    body = "id,price,quantity\n" + "".join(f"event-raced-{n:04d},{n}.5,{n % 7}\n" for n in range(200))
    # Landed with its S3 event: the feed's watcher starts the run that submits (and here holds) the file's job.
    etag = world.s3.put_object(Bucket=world.config.bucket.name, Key=key, Body=body.encode())["ETag"]
    import_id = derive_import_id(world.config.bucket.name, key, etag)
    held_job = world.wait_for_running_job(marker.name)
    (described,) = world.batch.describe_jobs(jobs=[held_job["jobId"]])["jobs"]
    event_run_id = described["tags"]["run_id"]
    (event_run,) = [
        run
        for run in world.client.dag_runs(IMPORT_DAG_ID, run_type="asset_triggered")
        if run["dag_run_id"] == event_run_id
    ]
    midnight = f"{day.isoformat()}T00:00:00Z"
    backfill = world.client.backfill_while_paused(
        IMPORT_DAG_ID, from_date=midnight, to_date=midnight, max_active_runs=1
    )
    (backfill_run,) = world.client.dag_runs(
        IMPORT_DAG_ID, run_type="backfill", logical_date_gte=midnight, logical_date_lte=midnight
    )
    _one_job_followed_by(world, key, import_id, [event_run["dag_run_id"], backfill_run["dag_run_id"]], marker)
    world.client.wait_for_backfill(backfill, timeout=RUN_TIMEOUT)
