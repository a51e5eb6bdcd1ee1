"""The make targets the README names besides `make demo` / `make test` / `make push-image`, run for real.

`make lint` and `make test` run in every CI run (`.ci/run`); `make demo` is run by tests/demo and `make push-image`
by tests/deploy. Here: `make format` on a copy of the project with a badly formatted file, `make test-fast`
(which must leave out the `slow` tests), `make local-aws` (serves until Ctrl-C) and `make bench` (one quick
section written to a scratch file). tests/readme/test_readme.py checks that every `make <target>` the README
names exists and is run somewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import boto3
import pytest

from batch_import.config import load_config
from include.airflow_standalone import free_port
from tests.fixtures.make import make_command, run_make, user_environment

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_make_format_formats_the_project(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (PROJECT_ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, copy / name)  # keeps mtimes: the venv stamp stays newer
    messy = copy / "include" / "messy_module.py"
    messy.write_text("from __future__ import annotations\nimport os\nx = {  'a':1,'b' :2 }\n")

    run = run_make("format", cwd=copy)

    assert run.returncode == 0, run.stdout + run.stderr
    assert messy.read_text() == 'from __future__ import annotations\n\nx = {"a": 1, "b": 2}\n'
    assert (copy / "dags" / "import_feeds.py").read_bytes() == (
        PROJECT_ROOT / "dags" / "import_feeds.py"
    ).read_bytes()


def test_make_test_fast_leaves_out_the_slow_tests() -> None:
    run = run_make(
        "test-fast", "PYTEST_ARGS=tests/compose tests/deploy --collect-only -q -p no:cacheprovider"
    )

    assert run.returncode == 0, run.stdout + run.stderr
    collected = [line for line in run.stdout.splitlines() if "::" in line]
    assert any(line.startswith("tests/compose/") for line in collected), run.stdout
    assert not any(line.startswith("tests/deploy/") for line in collected), "slow tests were collected"
    assert re.search(r"\d+ deselected", run.stdout), run.stdout


def test_make_local_aws_serves_until_ctrl_c() -> None:
    port = free_port()
    server = subprocess.Popen(
        make_command("local-aws", f"PORT={port}"),
        cwd=PROJECT_ROOT, env=user_environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline().strip() for _ in range(2)]
        url = f"http://127.0.0.1:{port}"
        assert url in lines, lines
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        s3.create_bucket(Bucket="make-local-aws")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["make-local-aws"]

        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches make and the endpoint
        assert server.wait(timeout=60) in (0, 2, -signal.SIGINT)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again: the endpoint is gone


def test_make_bench_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"

    run = run_make("bench", f"BENCH_ARGS=--quick --only dag_parse --output {report}")

    assert run.returncode == 0, run.stdout + run.stderr
    text = report.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "## DAG parse times" in text
    shipped_feeds = len(load_config(environ={}).feeds)
    assert re.search(rf"\| `import_feeds.py` \| {shipped_feeds} \| \d+ \|", text), text
    # The feeds' scaling: 1 and 50 generated feeds, and one DAG under a task's parsing context.
    assert re.search(r"\| 1 feed \| 1 \| \d+ \|", text), text
    assert re.search(r"\| 50 feeds \| 50 \| \d+ \|", text), text
    assert re.search(r"\| 50 feeds, a task's parsing context \(`import_feed001`\) \| 1 \| \d+ \|", text), text
    assert re.search(r"50 feeds against 1 \(goal: well under 3x\): whole .* \d+\.\d\dx; first parse", text), (
        text
    )


def _make_config(**overrides: str) -> subprocess.CompletedProcess[str]:
    """``make config`` with ``overrides`` in the environment, as ``CSV_IMPORT__...=x make config`` runs it."""
    env = {k: v for k, v in user_environment().items() if not k.startswith("CSV_IMPORT")} | overrides
    return subprocess.run(
        make_command("config"), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_make_config_prints_the_resolved_config_and_fails_on_an_invalid_one() -> None:
    import json

    shown = _make_config(CSV_IMPORT__FEEDS__ORDERS__TABLE="orders-prod")

    assert shown.returncode == 0, shown.stdout + shown.stderr
    resolved = json.loads(shown.stdout)
    assert {feed["name"]: feed["table"] for feed in resolved["feeds"]}["orders"] == "orders-prod"
    assert [feed["dag_id"] for feed in resolved["feeds"]] == [f.dag_id for f in load_config(environ={}).feeds]

    refused = _make_config(CSV_IMPORT__FEEDS__ORDERS__PARTITION_KEY_TYPE="B")
    assert refused.returncode == 2  # python's exit 2; make also exits 2 when a recipe fails
    assert refused.stdout == ""
    assert "feeds.orders.partition_key_type" in refused.stderr
