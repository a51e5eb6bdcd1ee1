"""The import DAG end to end: real Airflow task runs (``dag.test()``), real ``csv-importer`` processes
on the local AWS endpoint, the real provisioned table and queue."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Pipeline, csv_text, task_states

pytestmark = pytest.mark.slow

HEADER = ["id", "name", "price"]


def rows(prefix: str, count: int) -> list[list[str]]:
    return [[f"{prefix}-{n:05d}", f"name {n}", str(n)] for n in range(count)]


def manifest_totals(pipeline: Pipeline, import_id: str) -> dict[str, int]:
    bucket = pipeline.config.bucket
    listed = pipeline.s3.list_objects_v2(
        Bucket=bucket.name, Prefix=f"{bucket.manifest_prefix}{import_id}/shard-"
    )
    totals = {"shards": 0, "rows_read": 0, "distinct_keys": 0, "rows_rejected": 0}
    for obj in listed.get("Contents", []):
        manifest = json.loads(pipeline.s3.get_object(Bucket=bucket.name, Key=obj["Key"])["Body"].read())
        totals["shards"] += 1
        for name in ("rows_read", "distinct_keys", "rows_rejected"):
            totals[name] += manifest[name]
    return totals


def test_partition_with_several_files_is_imported_sharded_and_verified(pipeline: Pipeline) -> None:
    date = "2026-02-01"
    small = rows("small", 30)
    big = rows("big", 300) + rows("big", 40)  # 40 duplicate keys, spread over the shards by key hash
    pipeline.land(f"incoming/{date}/small.csv", csv_text(HEADER, small))
    pipeline.land(f"incoming/{date}/packed.csv.gz", csv_text(HEADER, rows("gz", 25)))
    pipeline.land(f"incoming/{date}/big.csv", csv_text(HEADER, big))
    pipeline.land(f"incoming/{date}/notes.txt", "not a csv: never imported")

    run = pipeline.run_import(date)

    states = task_states(run)
    assert str(run.state) == "success", states
    assert [state for state, _ in states["import_file"]] == ["success"] * 3
    assert [state for state, _ in states["verify_file"]] == ["success"] * 3
    items = pipeline.items_of()
    assert len(items) == 30 + 25 + 300
    by_source = {}
    for item in items:
        by_source.setdefault(item["sourceKey"]["S"].rsplit("/", 1)[-1], set()).add(item["importId"]["S"])
    assert set(by_source) == {"small.csv", "packed.csv.gz", "big.csv"}
    (big_import_id,) = by_source["big.csv"]
    big_totals = manifest_totals(pipeline, big_import_id)
    assert big_totals == {"shards": 3, "rows_read": 340, "distinct_keys": 300, "rows_rejected": 0}
    big_jobs = [job["jobId"] for job in pipeline.jobs_named("csv-import-big-csv")]
    described = pipeline.batch.describe_jobs(jobs=big_jobs)["jobs"]
    assert [
        job["arrayProperties"]["size"] for job in described if "size" in job.get("arrayProperties", {})
    ] == [3]
    bucket = pipeline.config.bucket
    for import_ids in by_source.values():
        (import_id,) = import_ids
        marker = pipeline.s3.get_object(
            Bucket=bucket.name, Key=f"{bucket.manifest_prefix}{import_id}/verified.json"
        )
        assert json.loads(marker["Body"].read())["counted"] == len(pipeline.items_of(import_id))

    # A rerun of the partition skips the verified files; reprocess imports them again.
    rerun = pipeline.run_import(date)
    assert task_states(rerun)["list_files"] == [("skipped", 1)]
