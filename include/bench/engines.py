"""The demo story on both engines, side by side: ``airflow standalone`` (SQLite, LocalExecutor) and the production
engine as processes (Postgres, Redis, CeleryExecutor with two workers; :mod:`include.celery_stack`).

Each engine runs ``python -m include.demo --ci --executor <engine> --summary-json <file>``; while it runs, every
process below it (the demo, the local endpoint and its Batch jobs, every Airflow component, Postgres, Redis) is
sampled twice a second, and the peak of their summed proportional set size (PSS: shared pages counted once
across processes, so forked workers are not counted many times) is reported. The whole run's time is the demo
process's wall time, start-up and stop included; per-file latency is landing (S3 LastModified) to verified
(``verify_file``'s marker), as in the latency section.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from include.bench.context import PROJECT_ROOT, BenchContext

TITLE = "The demo on both engines (standalone and the Celery stack)"
ENGINES = (
    ("local", "airflow standalone (SQLite, LocalExecutor)"),
    ("celery", "Celery stack (Postgres, Redis)"),
)
SAMPLE_SECONDS = 0.5
METHOD = """Each engine runs `python -m include.demo --ci --executor <engine>` (`make demo` and
`make demo EXECUTOR=celery`, exiting after the summary). Peak memory: every process below the demo (the local
endpoint and its Batch jobs, every Airflow component, Postgres, Redis) sampled twice a second, the peak of their
summed PSS (shared pages counted once). Whole run: the demo's wall time, start-up and stop included. Latency:
landing (S3 LastModified) to verified (`verify_file`'s marker)."""


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(root: int) -> list[int]:
    children = _children()
    found, pending = [root], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class _Sampler:
    """Samples the summed PSS of a process tree until stopped; keeps the peak and the most processes seen."""

    root: int
    peak_kib: int = 0
    peak_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.root)
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(pid) for pid in pids))
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class EngineRun:
    engine: str
    seconds: float
    peak_mib: float
    peak_processes: int
    records: list[dict]


def run_engine(context: BenchContext, engine: str) -> EngineRun:
    home = context.scratch / f"demo-{engine}"
    context.scratch.chmod(0o711)  # Postgres runs as the postgres user when this runs as root: it must enter
    summary = context.scratch / f"demo-{engine}.json"
    command = [sys.executable, "-m", "include.demo", "--ci", "--executor", engine, "--home", str(home)]
    command += ["--summary-json", str(summary)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSV_IMPORT__", "AIRFLOW", "AWS_"))}
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = _Sampler(root=process.pid)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        sampler.stop()
        thread.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0 or not summary.exists():
        raise RuntimeError(f"the demo on {engine} failed ({process.returncode}): {output[-3000:]}")
    return EngineRun(
        engine=engine,
        seconds=seconds,
        peak_mib=sampler.peak_kib / 1024,
        peak_processes=sampler.peak_processes,
        records=json.loads(summary.read_text()),
    )


def _latency(record: dict) -> str:
    value = record.get("latency_seconds")
    return f"{value:.1f}" if value is not None else "-"


def _median_latency(run_: EngineRun) -> str:
    latencies = [r["latency_seconds"] for r in run_.records if r.get("latency_seconds") is not None]
    return f"{statistics.median(latencies):.1f}" if latencies else "-"


def run(context: BenchContext) -> str:
    runs = [run_engine(context, engine) for engine, _ in ENGINES]
    names = dict(ENGINES)
    header = " | ".join(names[r.engine] for r in runs)
    lines = [
        " ".join(line.strip() for line in METHOD.splitlines()),
        "",
        f"| | {header} |",
        "|---|" + "---:|" * len(runs),
        "| whole run (s) | " + " | ".join(f"{r.seconds:.0f}" for r in runs) + " |",
        "| peak memory, all processes (PSS, MiB) | " + " | ".join(f"{r.peak_mib:.0f}" for r in runs) + " |",
        "| most processes at once | " + " | ".join(str(r.peak_processes) for r in runs) + " |",
    ]
    lines.append("| landing to verified, median (s) | " + " | ".join(_median_latency(r) for r in runs) + " |")
    lines += [
        "",
        "Landing to verified per file (s):",
        "",
        f"| date | key | {header} |",
        "|---|---|" + "---:|" * len(runs),
    ]
    by_key = [{record["key"]: record for record in r.records} for r in runs]
    for record in runs[0].records:
        cells = " | ".join(_latency(table.get(record["key"], {})) for table in by_key)
        lines.append(f"| {record['partition_date']} | `{record['key']}` | {cells} |")
    lines += [
        "",
        (
            "Both runs import the same generated week with the same pipeline settings, each against a fresh "
            "local endpoint started by the demo; a file's latency includes waiting for its backfill run's turn. The Celery "
            "stack's extra memory is Postgres, Redis, and one Python process per component (two workers with two "
            "task slots each) instead of standalone's single tree; on one 2-core machine these figures say "
            "nothing about throughput with workers on separate machines."
        ),
    ]
    return "\n".join(lines)
