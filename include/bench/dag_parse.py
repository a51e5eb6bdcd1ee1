"""DAG parse times: each file in dags/ as the DAG processor parses it, and as ``python dags/<file>.py``.

A child process (``python -m include.bench.dag_parse --child``) with a throw-away AIRFLOW_HOME builds a
``DagBag`` of one file at a time and reports Airflow's own per-file parse duration (``dagbag_stats``): the first
parse of the process (imports of the project's plugins included) and the median of repeated parses (what the
DAG processor pays on every re-parse). ``python dags/<file>.py`` is timed as a whole process: interpreter,
Airflow import and the file, as a user checking a DAG file from the shell sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from include.bench.context import PROJECT_ROOT, BenchContext

TITLE = "DAG parse times"
DAGS_FOLDER = PROJECT_ROOT / "dags"
REPEATS = 5


def dag_files() -> list[Path]:
    return sorted(path for path in DAGS_FOLDER.glob("*.py") if not path.name.startswith("_"))


def _airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CSV_IMPORT__", "AWS_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    return env


def _child() -> dict[str, dict[str, float | int]]:
    from airflow.dag_processing.dagbag import DagBag

    figures: dict[str, dict[str, float | int]] = {}
    for path in dag_files():
        durations = []
        dags = tasks = 0
        for _ in range(REPEATS + 1):
            bag = DagBag(dag_folder=str(path))
            if bag.import_errors:
                raise RuntimeError(f"{path.name} does not parse: {bag.import_errors}")
            (stat,) = bag.dagbag_stats
            durations.append(stat.duration.total_seconds())
            dags, tasks = stat.dag_num, stat.task_num
        figures[path.name] = {
            "first": durations[0],
            "median": statistics.median(durations[1:]),
            "dags": dags,
            "tasks": tasks,
        }
    return figures


def _script_seconds(path: Path, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(path)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"python {path.name} failed: {result.stderr[-2000:]}")
        best = min(best, elapsed)
    return best


def run(context: BenchContext) -> str:
    home = Path(tempfile.mkdtemp(prefix="dag-parse-", dir=context.scratch))
    env = _airflow_env(home)
    result = subprocess.run(
        [sys.executable, "-m", "include.bench.dag_parse", "--child"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"DAG parse child failed: {result.stderr[-2000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    lines = [
        (
            "Each file of `dags/` parsed alone by `DagBag(dag_folder=<file>)` in a fresh process; the durations "
            "are Airflow's own per-file parse times (`dagbag_stats`): the file's first parse (files in the order "
            "listed; modules both files import are imported by the first) and the median of "
            f"{REPEATS} re-parses, as the DAG processor re-parses a file. `python dags/<file>.py` is a whole process (interpreter, Airflow import, the file), best of 3."
        ),
        "",
        "| DAG file | DAGs | tasks | first parse (ms) | re-parse, median (ms) | `python dags/<file>.py` (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path in dag_files():
        figure = figures[path.name]
        lines.append(
            f"| `{path.name}` | {figure['dags']} | {figure['tasks']} | {figure['first'] * 1000:.0f} | "
            f"{figure['median'] * 1000:.0f} | {_script_seconds(path, env):.2f} |"
        )
    lines += [
        "",
        (
            "Airflow's default `dagbag_import_timeout` is 30 s a file; the DAG files make no AWS call and read "
            "no Variable at parse time, so these figures do not depend on the endpoint."
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", required=True)
    parser.parse_args()
    print(json.dumps(_child()))


if __name__ == "__main__":
    main()
