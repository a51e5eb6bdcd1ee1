"""The demo's end-to-end latency per file, from landing in S3 to verified, from a real ``make demo`` run.

Runs ``python -m include.demo --ci --summary-json <file>`` (local endpoint, ``airflow standalone``, provisioning,
a generated week landed, Airflow's backfill over it) and reads its per-file record: the object's S3
LastModified (landing) and the ``verified_at`` of ``verify_file``'s marker, both written by the pipeline.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from include.bench.context import PROJECT_ROOT, BenchContext

TITLE = "The demo's end-to-end latency per file (landing to verified)"


def _run_demo(context: BenchContext) -> tuple[list[dict], float]:
    summary = context.scratch / "demo-summary.json"
    command = [
        sys.executable,
        "-m",
        "include.demo",
        "--ci",
        "--home",
        str(context.scratch / "demo"),
        "--summary-json",
        str(summary),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSV_IMPORT__", "AIRFLOW", "AWS_"))}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or not summary.exists():
        raise RuntimeError(
            f"make demo failed ({result.returncode}): {(result.stdout + result.stderr)[-3000:]}"
        )
    return json.loads(summary.read_text()), elapsed


def run(context: BenchContext) -> str:
    records, demo_seconds = _run_demo(context)
    lines = [
        (
            "`python -m include.demo --ci` (what `make demo` runs, exiting after its summary): the local endpoint, "
            "`airflow standalone` (scheduler, DAG processor, API server; LocalExecutor), provisioning, then a "
            "generated week of files landed at once and imported by Airflow's backfill of the import DAG "
            "(`max_active_runs=2`). Latency = `verified_at` of the file's `verified.json` marker minus the "
            "object's S3 LastModified (whole seconds, so up to 1 s high): it includes waiting for the file's "
            "run to get its turn in the backfill, the sensor, listing, the Batch job (host processes) and the "
            "verification. Job = first shard start to last shard finish, from the manifests."
        ),
        "",
        "| date | key | bytes | rows | shards | job (s) | landing to verified (s) | as expected |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    latencies = []
    for record in records:
        latency = record["latency_seconds"]
        if latency is not None:
            latencies.append(latency)
        job = f"{record['job_seconds']:.1f}" if record["job_seconds"] is not None else "-"
        lines.append(
            f"| {record['partition_date']} | `{record['key']}` | {record['bytes']:,} | {record['rows_read']:,} | "
            f"{record['shards']} | {job} | {f'{latency:.1f}' if latency is not None else '-'} | "
            f"{'yes' if record['as_expected'] else 'no'} |"
        )
    if latencies:
        lines += [
            "",
            (
                f"{len(latencies)} of {len(records)} files verified; landing to verified: min "
                f"{min(latencies):.1f} s, median {statistics.median(latencies):.1f} s, max "
                f"{max(latencies):.1f} s. The whole demo run took {demo_seconds:.0f} s (Airflow start-up "
                "included)."
            ),
        ]
    return "\n".join(lines)
