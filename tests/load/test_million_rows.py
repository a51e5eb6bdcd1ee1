"""Load: a 1,000,000-row file through the whole local pipeline, every row verified, every process's peak memory.

The local endpoint (``python -m include.local_aws``), provisioning and the import DAG (``airflow dags test``)
each run in their own process; the import runs as a Batch array job whose shards are ``csv-importer`` host
processes of the endpoint. :class:`PeakMemorySampler` records each process's peak resident set (``VmHWM``),
printed at the end of the test. Rows are short (``id,n``) because the endpoint (moto) writes ~3-6k items/s on
two cores; this test takes several minutes.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.config import load_config
from include.demo.local_endpoint import LocalEndpointProcess
from tests.fixtures.airflow_cli import airflow_cli_env, run_airflow
from tests.fixtures.feeds import first_feed
from tests.load.process_memory import PeakMemorySampler, ProcessPeak

pytestmark = [pytest.mark.slow, pytest.mark.load, pytest.mark.timeout(2400)]

REGION = "us-east-1"
ROWS = 1_000_000
SHARDS = 2
LANDING_DATE = "2026-05-04"
JOB_PEAK_GOAL_MIB = 150  # issue 2: a job importing a million short rows stays under 150 MB
SPOT_CHECKED_ROWS = 2_000
FEED = first_feed(load_config(environ={}))  # the feed whose DAG imports the file


def million_rows_csv() -> bytes:
    return ("id,n\n" + "".join(f"r{number:07d},{number % 1000}\n" for number in range(ROWS))).encode()


def pipeline_settings(file_bytes: int) -> dict[str, str]:
    """Config overrides: the file runs as a SHARDS-shard array job, numbers typed, quick polls."""
    return {
        "CSV_IMPORT__IMPORT__SHARD_THRESHOLD_BYTES": str(file_bytes // SHARDS),
        "CSV_IMPORT__IMPORT__SHARD_TARGET_BYTES": str(file_bytes // SHARDS + 1),
        "CSV_IMPORT__IMPORT__MAX_SHARDS": str(SHARDS),
        f"CSV_IMPORT__FEEDS__{FEED.name.upper()}__COLUMN_TYPES": "n:N",
        "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "2",
        "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "1",
        "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "10",
    }


def airflow(env: dict[str, str], *args: str) -> str:
    finished = run_airflow(env, *args, timeout=2000)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, (
        f"airflow {' '.join(args)} exited {finished.returncode}:\n{output[-6000:]}"
    )
    return output


def role_of(peak: ProcessPeak, endpoint_pid: int) -> str:
    if peak.pid == os.getpid():
        return "pytest (test driver: generates, lands and spot-checks the file)"
    if peak.pid == endpoint_pid:
        return "local endpoint (moto server + Batch runtime)"
    if "csv-importer" in peak.command or "csv_importer" in peak.command:
        return f"csv-importer shard {peak.shard_index or '?'}"
    if "airflow" in peak.command:
        words = peak.command.split()
        return "airflow " + " ".join(words[words.index("dags") :] if "dags" in words else words[-2:])
    return peak.command[:80]


def memory_report(peaks: list[tuple[str, ProcessPeak]]) -> str:
    lines = ["peak resident memory (VmHWM) of every process of the 1,000,000-row load test:"]
    lines += [f"  {peak.peak_mib:8.0f} MiB  pid {peak.pid:>7}  {role}" for role, peak in peaks]
    return "\n".join(lines)


def read_json(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_million_rows_sharded_end_to_end_with_every_process_peak_memory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from csv_importer.import_id import derive_import_id

    body = million_rows_csv()
    settings = pipeline_settings(len(body))
    config = load_config(environ=settings)
    feed = config.feed(FEED.name)
    key = f"{feed.landing_prefix}{LANDING_DATE}/million.csv"
    endpoint = LocalEndpointProcess(log_path=tmp_path / "local_aws.log")
    phases: list[tuple[str, float]] = []  # (what, seconds): reported, never asserted
    phase_started = [time.monotonic()]

    def phase_done(name: str) -> None:
        now = time.monotonic()
        phases.append((name, now - phase_started[0]))
        phase_started[0] = now

    with PeakMemorySampler() as sampler:
        url = endpoint.start()
        try:
            env = airflow_cli_env(tmp_path / "airflow_home", url, region=REGION, settings=settings)
            airflow(env, "db", "migrate")
            phase_done("endpoint start + airflow db migrate")
            airflow(env, "dags", "test", "provision_batch_environment")
            phase_done("provisioning DAG")
            clients = {"endpoint_url": url, "region_name": REGION}
            s3 = boto3.client("s3", **clients)
            dynamodb = boto3.client("dynamodb", **clients)
            s3.put_object(Bucket=config.bucket.name, Key=key, Body=body)
            etag = s3.head_object(Bucket=config.bucket.name, Key=key)["ETag"]
            del body
            phase_done("landing the file")

            imported = airflow(env, "dags", "test", feed.dag_id, LANDING_DATE)
            phase_done("import DAG (sharded job + verification)")

            import_id = derive_import_id(config.bucket.name, key, etag)
            manifest_prefix = f"{feed.manifest_prefix}{import_id}/"
            manifests = [
                read_json(s3, config.bucket.name, f"{manifest_prefix}shard-{index}-of-{SHARDS}.json")
                for index in range(SHARDS)
            ]
            verified = read_json(s3, config.bucket.name, f"{manifest_prefix}verified.json")
            item_count = dynamodb.describe_table(TableName=feed.table.name)["Table"]["ItemCount"]
            sample_numbers = sorted({0, ROWS - 1, *random.Random(6).sample(range(ROWS), SPOT_CHECKED_ROWS)})
            spot_checked = {}
            for start in range(0, len(sample_numbers), 100):
                keys = [{"id": {"S": f"r{n:07d}"}} for n in sample_numbers[start : start + 100]]
                request_items: dict[str, Any] = {feed.table.name: {"Keys": keys}}
                while request_items:
                    answer = dynamodb.batch_get_item(RequestItems=request_items)
                    for item in answer["Responses"].get(feed.table.name, []):
                        spot_checked[item["id"]["S"]] = item
                    request_items = answer.get("UnprocessedKeys") or {}
            phase_done("reading manifests, marker and spot-checked rows")
        finally:
            endpoint_pid = endpoint.pid or 0
            endpoint.stop()
    peaks = [(role_of(peak, endpoint_pid), peak) for peak in sampler.peaks.values()]
    peaks.sort(key=lambda pair: pair[0])
    report = memory_report(peaks) + "\n" + "\n".join(f"  {sec:8.1f} s    {name}" for name, sec in phases)
    (tmp_path / "peak_memory.txt").write_text(report + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + report)

    assert "Verified import" in imported, imported[-4000:]
    assert [m["status"] for m in manifests] == ["succeeded"] * SHARDS
    assert sum(m["rows_read"] for m in manifests) == ROWS
    assert sum(m["rows_imported"] for m in manifests) == ROWS
    assert sum(m["rows_rejected"] for m in manifests) == 0
    assert all(m["rows_read"] > 0 for m in manifests), "a shard got no rows"
    assert (verified["expected"], verified["counted"], verified["superseded"]) == (ROWS, ROWS, 0)
    assert item_count == ROWS
    assert len(spot_checked) == len(sample_numbers), "rows missing from the table"
    for number in sample_numbers:
        item = spot_checked[f"r{number:07d}"]
        assert item["n"] == {"N": str(number % 1000)}
        assert item["importId"] == {"S": import_id}
        assert item["sourceKey"] == {"S": f"s3://{config.bucket.name}/{key}"}

    roles = [role for role, _ in peaks]
    shard_peaks = [peak for role, peak in peaks if role.startswith("csv-importer shard")]
    assert sorted(peak.shard_index for peak in shard_peaks) == [str(i) for i in range(SHARDS)], report
    assert "local endpoint (moto server + Batch runtime)" in roles, report
    assert any(role.startswith(f"airflow dags test {feed.dag_id}") for role in roles), report
    assert all(peak.peak_kib > 0 for _, peak in peaks), report
    assert max(peak.peak_mib for peak in shard_peaks) < JOB_PEAK_GOAL_MIB, report
