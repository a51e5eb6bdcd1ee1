"""The make targets the README names besides `make demo` / `make test` / `make push-image`, run for real.

`make lint` and `make test` run in every CI run (`.ci/run`); `make demo` is run by tests/demo and `make push-image`
by tests/deploy. Here: `make format` on a copy of the project with a badly formatted file, `make test-fast`
(which must leave out the `slow` tests), `make local-aws` (serves until Ctrl-C) and `make bench` (one quick
section written to a scratch file). Every `make <target>` the README names must be in ``RUN_BY``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.slow

# target -> where it is run (a test of this file, or another file that runs it)
RUN_BY = {
    "demo": "tests/demo/test_make_demo.py",
    "test": ".ci/run",
    "lint": "Makefile",  # `test: $(STAMP) lint`: every `make test` runs it
    "push-image": "tests/deploy/test_push_image.py",
    "format": "tests/readme/test_make_targets.py",
    "test-fast": "tests/readme/test_make_targets.py",
    "local-aws": "tests/readme/test_make_targets.py",
    "bench": "tests/readme/test_make_targets.py",
}


def make(*arguments: str, cwd: Path = PROJECT_ROOT, **options: object) -> subprocess.CompletedProcess[str]:
    """``make`` as a user's shell runs it (without the variables of a ``make test`` this suite may run under)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    return subprocess.run(
        ["make", "--no-print-directory", *arguments, f"VENV={VENV}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def test_every_make_target_the_readme_names_is_run_somewhere() -> None:
    named = set(re.findall(r"`make ([a-z-]+)", README)) | set(re.findall(r"(?m)^\s*make ([a-z-]+)", README))
    assert named - set(RUN_BY) == set(), "README names make targets no test runs: add them to RUN_BY"
    for target, runner in RUN_BY.items():
        text = (PROJECT_ROOT / runner).read_text(encoding="utf-8")
        assert target in text, f"{runner} does not mention {target}"


def test_make_lint_is_part_of_make_test() -> None:
    assert re.search(r"(?m)^test: .*\blint\b", (PROJECT_ROOT / "Makefile").read_text())


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

    run = make("format", cwd=copy)

    assert run.returncode == 0, run.stdout + run.stderr
    assert messy.read_text() == 'from __future__ import annotations\n\nx = {"a": 1, "b": 2}\n'
    assert (copy / "dags" / "import_csv_to_dynamodb.py").read_bytes() == (
        PROJECT_ROOT / "dags" / "import_csv_to_dynamodb.py"
    ).read_bytes()


def test_make_test_fast_leaves_out_the_slow_tests() -> None:
    run = make("test-fast", "PYTEST_ARGS=tests/compose tests/deploy --collect-only -q -p no:cacheprovider")

    assert run.returncode == 0, run.stdout + run.stderr
    collected = [line for line in run.stdout.splitlines() if "::" in line]
    assert any(line.startswith("tests/compose/") for line in collected), run.stdout
    assert not any(line.startswith("tests/deploy/") for line in collected), "slow tests were collected"
    assert re.search(r"\d+ deselected", run.stdout), run.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_make_local_aws_serves_until_ctrl_c() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    server = subprocess.Popen(
        ["make", "--no-print-directory", "local-aws", f"PORT={port}", f"VENV={VENV}"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
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

    run = make("bench", f"BENCH_ARGS=--quick --only dag_parse --output {report}")

    assert run.returncode == 0, run.stdout + run.stderr
    text = report.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "## DAG parse times" in text
    assert re.search(r"\| `import_csv_to_dynamodb.py` \| 1 \| \d+ \|", text), text
