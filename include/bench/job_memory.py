"""Peak RSS of one csv-importer process by file size: memory must not grow with the object's bytes.

Each size runs in a fresh child process (``python -m include.bench.job_memory --rows N --row-bytes B``)
that imports a generated object streamed in 1 MiB chunks into the zero-latency stand-in; the child reports
its own peak RSS (``VmHWM``). Every row has a distinct key, so the duplicate-key fingerprints are
included at their largest.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from include.bench.context import PROJECT_ROOT, BenchContext

TITLE = "Peak memory (RSS) by file size"
TABLE = "stand-in-table"
GOAL_MB = 150


def _child(rows: int, row_bytes: int) -> dict[str, float]:
    from csv_importer.cli import make_clients
    from csv_importer.importer import run_import
    from csv_importer.reader import ObjectSource
    from csv_importer.settings import ImportSettings
    from include.bench.job_throughput import shipped_writer_concurrency
    from include.bench.sample_files import padded_rows, padded_size
    from include.bench.stand_in import answer_dynamodb, answer_s3, stand_in_environment

    settings = ImportSettings(
        bucket="stand-in-bucket",
        key="memory.csv",
        table=TABLE,
        writer_concurrency=shipped_writer_concurrency(),
    )
    with stand_in_environment():
        s3, dynamodb = make_clients(settings)
    answer_dynamodb(dynamodb, TABLE)
    answer_s3(s3)
    size = padded_size(rows, row_bytes)

    def source() -> ObjectSource:
        return ObjectSource(
            uri="s3://stand-in-bucket/memory.csv",
            etag='"0"',
            content_length=size,
            chunks=padded_rows(rows, row_bytes),
        )

    started = time.perf_counter()
    manifest = run_import(settings, s3=s3, dynamodb=dynamodb, open_source=source, progress_interval=3600)
    elapsed = time.perf_counter() - started
    if manifest.rows_imported != rows:
        raise RuntimeError(f"imported {manifest.rows_imported} of {rows} rows")
    return {"bytes": size, "rows": rows, "peak_mb": peak_rss_kib() / 1024, "seconds": elapsed}


def peak_rss_kib() -> int:
    """This process's own peak RSS: VmHWM (ru_maxrss would carry the parent's peak across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure(rows: int, row_bytes: int) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "include.bench.job_memory",
        "--rows",
        str(rows),
        "--row-bytes",
        str(row_bytes),
    ]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"memory child failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(context: BenchContext) -> str:
    from include.bench.job_throughput import shipped_writer_concurrency

    if context.quick:
        cases = [(1_000, 1024), (10_000, 1024), (50_000, 1024), (200_000, 24)]
    else:
        cases = [(10_000, 1024), (100_000, 1024), (1_000_000, 1024), (1_000_000, 24)]
    lines = [
        (
            "Generated objects streamed through the whole job (reader, parser, typing, writer pool with "
            f"{shipped_writer_concurrency()} writers as the shipped config runs it, fingerprints of every distinct "
            "key) into the zero-latency stand-in, one fresh process per size. Peak RSS includes the Python "
            "interpreter, boto3 and botocore."
        ),
        "",
        "| object | rows | row bytes | peak RSS (MB) | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for rows, row_bytes in cases:
        figures = _measure(rows, row_bytes)
        worst = max(worst, figures["peak_mb"])
        lines.append(
            f"| {figures['bytes'] / 1e6:,.0f} MB | {rows:,} | {row_bytes} | {figures['peak_mb']:.0f} | "
            f"{figures['seconds']:.1f} |"
        )
    verdict = "meets" if worst < GOAL_MB else "misses"
    scope = "" if not context.quick else " (quick mode: smaller files than the goal's 1 GB / 1M rows)"
    lines += [
        "",
        (
            f"Goal: under {GOAL_MB} MB for a 1 GB file of 1 KB rows and for a million short rows{scope}. "
            f"Largest peak {worst:.0f} MB: {verdict} the goal."
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--row-bytes", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(_child(args.rows, args.row_bytes)))


if __name__ == "__main__":
    main()
