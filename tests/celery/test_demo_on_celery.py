"""``make demo EXECUTOR=celery`` as CI runs it: the demo story on the production engine.

``python -m include.demo --executor celery`` with ``CI=true`` (what the Makefile line runs) must provision,
import and verify every file of the week as expected, report task instances on both Celery workers (hostnames
read through the REST API), exit 0 after the summary, and leave no process holding a file of its working folder
(every component's log, Postgres' data and Redis' append-only file are there).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from include.celery_stack.stack import WORKERS
from tests.celery.conftest import require_os_packages
from tests.demo import process_tree
from tests.demo.test_make_demo import SUMMARY_LINE

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_LINE = re.compile(r"task instances per worker \(their hostname in the REST API\): (?P<counts>.*)$")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_demo_on_the_celery_stack_imports_everything_on_both_workers_then_stops_everything(
    traversable_folder: Path,
) -> None:
    require_os_packages()
    home = traversable_folder / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "include.demo", "--executor", "celery", "--home", str(home)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # the demo stops what it started, as on Ctrl-C
        stdout, stderr = process.communicate(timeout=180)
        pytest.fail(f"the demo did not finish within 840 s:\n{stdout[-6000:]}")
    output = stdout + "\n" + stderr
    assert process.returncode == 0, output[-6000:]
    assert "starting the production engine: Postgres, Redis" in stdout

    summary = [line for line in stdout.splitlines() if SUMMARY_LINE.match(line)]
    assert len(summary) == 9, stdout
    assert all(line.endswith("as expected") for line in summary), stdout

    (workers,) = [m for m in map(WORKER_LINE.search, stdout.splitlines()) if m]
    counts = dict(item.rsplit(" ", 1) for item in workers["counts"].split(", "))
    assert set(counts) == set(WORKERS), f"task instances ran on {counts}, expected both workers {WORKERS}"
    assert all(int(count) > 0 for count in counts.values()), counts

    assert "stopped everything the demo started" in stdout
    assert process_tree.processes_with_files_under(home) == [], "a process of the stack still holds its files"
    logs = sorted(path.name for path in (home / "logs").iterdir())
    assert logs == sorted(
        ["api-server.log", "db-migrate.log", "dag-processor.log", "scheduler.log", "triggerer.log"]
        + [f"{worker}.log" for worker in WORKERS]
    )
