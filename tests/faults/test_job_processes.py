"""Real ``csv-importer`` processes against the local endpoint: killed with SIGKILL mid-import and rerun; the
same file imported twice at once; two files sharing keys imported concurrently. The table is compared with
the expected items by a full scan, and the DAG's verification judges each import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import FaultWorld, world_on_endpoint

BUCKET = "faults-processes"
TABLE = "faults-process-items"

pytestmark = pytest.mark.slow


@pytest.fixture
def world(local_aws: Any) -> FaultWorld:
    return world_on_endpoint(local_aws.url, BUCKET, TABLE)


def start_job(key: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["csv-importer", "--bucket", BUCKET, "--key", key, "--table", TABLE],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(job: subprocess.Popen[str]) -> None:
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr


def test_a_job_killed_mid_import_converges_on_rerun(world: FaultWorld) -> None:
    rows = [[f"k{n:06d}", str(n)] for n in range(30_000)] + [
        [f"k{n:06d}", f"last {n}"] for n in range(0, 30_000, 9)
    ]
    key = "incoming/2026-02-01/killed.csv"
    import_id = world.land_rows(key, rows)
    expected = {row[0]: row[1] for row in rows}

    job = start_job(key)
    deadline = time.monotonic() + 120
    while world.count_items() == 0 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=30)
    assert job.returncode == -signal.SIGKILL
    written_before_kill = world.count_items()
    assert 0 < written_before_kill < len(expected), "the kill did not land mid-import"
    assert not world.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"manifests/{import_id}/")["KeyCount"]

    finish(start_job(key))

    items = world.table_items()
    assert {k: item["amount"]["S"] for k, item in items.items()} == expected
    assert {item["importId"]["S"] for item in items.values()} == {import_id}
    rerun = world.manifest(import_id)
    assert (rerun["status"], rerun["rows_read"], rerun["rows_imported"], rerun["rows_rejected"]) == (
        "succeeded", len(rows), len(rows), 0,
    )  # fmt: skip
    assert (rerun["duplicate_keys"], rerun["distinct_keys"]) == (len(rows) - len(expected), len(expected))
    result = world.verify(key, import_id)
    assert result.verified
    assert (result.expected, result.counted) == (len(expected), len(expected))


def test_the_same_file_imported_twice_at_once_lands_once(world: FaultWorld) -> None:
    rows = [[f"s{n:05d}", str(n)] for n in range(8_000)] + [
        [f"s{n:05d}", f"last {n}"] for n in range(0, 8_000, 5)
    ]
    key = "incoming/2026-02-02/twice.csv"
    import_id = world.land_rows(key, rows)
    expected = {row[0]: row[1] for row in rows}

    jobs = [start_job(key), start_job(key)]
    for job in jobs:
        finish(job)

    items = world.table_items()
    assert {k: item["amount"]["S"] for k, item in items.items()} == expected
    assert world.manifest(import_id)["distinct_keys"] == len(expected)
    result = world.verify(key, import_id)
    assert result.verified
    assert (result.expected, result.counted) == (len(expected), len(expected))


def test_two_files_sharing_keys_imported_concurrently(world: FaultWorld) -> None:
    first_rows = [[f"c{n:05d}", f"first {n}"] for n in range(0, 6_000)]
    second_rows = [[f"c{n:05d}", f"second {n}"] for n in range(3_000, 9_000)]
    first_key, second_key = "incoming/2026-02-03/first.csv", "incoming/2026-02-03/second.csv"
    first_id, second_id = world.land_rows(first_key, first_rows), world.land_rows(second_key, second_rows)

    jobs = [start_job(first_key), start_job(second_key)]
    for job in jobs:
        finish(job)

    items = world.table_items()
    assert sorted(items) == [f"c{n:05d}" for n in range(9_000)]
    owners = {first_id: "first", second_id: "second"}
    for item_key, item in items.items():
        # Whatever file won a shared key, the whole item is that file's row, never a mix.
        assert item["amount"]["S"] == f"{owners[item['importId']['S']]} {int(item_key[1:])}"
    first_result, second_result = world.verify(first_key, first_id), world.verify(second_key, second_id)
    assert first_result.verified, first_result.describe()
    assert second_result.verified, second_result.describe()
    shared = 3_000
    assert first_result.superseded + second_result.superseded == shared
    assert first_result.counted + second_result.counted == len(items)
