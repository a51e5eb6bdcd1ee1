"""The import's claim on its Batch job (``batch_import.job_claims``) against moto S3 in-process: which run
submits, which follows, and when a claim left behind is taken over."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest

from batch_import import job_claims
from batch_import.files import job_claim_key
from batch_import.job_claims import ClaimWaitTimeout, ImportClaim, submit_once
from tests.plugins.test_hooks import BUCKET, IMPORT_ID

KEY = job_claim_key("manifests/", IMPORT_ID)
EVENT_RUN = ImportClaim(bucket_name=BUCKET, key=KEY, owner="csv-import-orders-csv-event-run")
TIMETABLE_RUN = ImportClaim(bucket_name=BUCKET, key=KEY, owner="csv-import-orders-csv-scheduled-run")


class Batch:
    """The Batch side as the operator passes it: which claimed jobs a run follows, and the jobs submitted."""

    def __init__(self, followed: tuple[str, ...] = ()) -> None:
        self.followed = set(followed)
        self.submitted: list[str] = []

    def submit(self) -> str:
        job_id = f"job-{len(self.submitted) + 1}"
        self.submitted.append(job_id)
        self.followed.add(job_id)
        return job_id

    def follows(self, job_id: str) -> bool:
        return job_id in self.followed


def claim_body(s3: Any) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())


def submit(s3: Any, claim: ImportClaim, batch: Batch, **kwargs: Any) -> tuple[str, bool]:
    return submit_once(
        s3, claim, find_active=lambda: None, follows=batch.follows, submit=batch.submit, **kwargs
    )


def test_the_first_run_submits_and_records_its_job_in_the_claim(s3: Any) -> None:
    batch = Batch()

    assert submit(s3, EVENT_RUN, batch) == ("job-1", True)
    assert claim_body(s3)["job_id"] == "job-1"


def test_a_second_run_follows_the_claimed_job_while_it_is_active_even_if_listing_missed_it(s3: Any) -> None:
    batch = Batch()
    submit(s3, EVENT_RUN, batch)

    # find_active answers None (ListJobs lagging behind SubmitJob): the claim still names the job.
    assert submit(s3, TIMETABLE_RUN, batch) == ("job-1", False)
    assert batch.submitted == ["job-1"]


def test_an_active_job_on_the_queue_is_followed_without_touching_the_claim(s3: Any) -> None:
    batch = Batch()

    answer = submit_once(
        s3, EVENT_RUN, find_active=lambda: "job-0", follows=batch.follows, submit=batch.submit
    )

    assert answer == ("job-0", False)
    assert batch.submitted == []
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_a_claim_whose_job_is_not_followed_is_taken_over(s3: Any) -> None:
    batch = Batch()
    submit(s3, EVENT_RUN, batch)
    batch.followed.clear()  # job-1 FAILED (or SUCCEEDED and this run reprocesses)

    assert submit(s3, TIMETABLE_RUN, batch) == ("job-2", True)
    assert claim_body(s3)["owner"] == TIMETABLE_RUN.owner


def test_a_young_claim_without_a_job_makes_the_other_run_wait_and_give_up(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"owner": EVENT_RUN.owner, "job_id": None}))
    batch = Batch()

    with pytest.raises(ClaimWaitTimeout, match="held by another run that has named no AWS Batch job"):
        submit(s3, TIMETABLE_RUN, batch, wait_seconds=0.2, pause_seconds=0.05)
    assert batch.submitted == []


def test_a_claim_without_a_job_is_taken_over_once_stale_or_by_its_own_run(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"owner": EVENT_RUN.owner, "job_id": None}))
    batch = Batch()
    assert submit(s3, EVENT_RUN, batch, wait_seconds=0) == ("job-1", True)  # its own retry

    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"owner": EVENT_RUN.owner, "job_id": None}))
    with mock.patch.object(job_claims, "STALE_AFTER_SECONDS", -1.0):
        assert submit(s3, TIMETABLE_RUN, batch, wait_seconds=0) == ("job-2", True)


def test_a_failed_submit_releases_the_claim(s3: Any) -> None:
    def refused() -> str:
        raise RuntimeError("SubmitJob refused")

    with pytest.raises(RuntimeError, match="SubmitJob refused"):
        submit_once(s3, EVENT_RUN, find_active=lambda: None, follows=lambda _: True, submit=refused)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_of_two_runs_taking_an_ended_claim_over_only_one_wins(s3: Any) -> None:
    batch = Batch()
    submit(s3, EVENT_RUN, batch)
    batch.followed.clear()
    stale = s3.get_object(Bucket=BUCKET, Key=KEY)["ETag"]
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"owner": "a-third-run", "job_id": None}))

    # The timetable run read the ended claim (ETag ``stale``) just before the third run replaced it.
    assert job_claims._write(s3, TIMETABLE_RUN, {"owner": TIMETABLE_RUN.owner}, IfMatch=stale) is None
    assert claim_body(s3)["owner"] == "a-third-run"
