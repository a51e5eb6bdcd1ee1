"""``make demo`` run twice in one working folder, as a user would.

First as CI runs it (``CI=true``): the whole pipeline, every file as expected, exit after the summary. Then again
at once without CI (the module fixture orders the two runs: the second test always follows a first run): the
second run must come out the same, print the UI's URL and login and keep everything running; the printed login
works, a Batch job is running when Ctrl-C (SIGINT) arrives, and on it the demo exits 0 having stopped every
process it started (local endpoint, airflow standalone and their children, the Batch job's process) and freed
every port they listened on.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import IO

import boto3
import pytest
import requests

from batch_import.config import load_config
from include.airflow_standalone import HEALTH_COMPONENTS, HEALTHY, AdminLogin, AirflowRestClient
from include.demo import PROVISION_DAG_ID
from include.demo.run import LOCAL_CREDENTIALS, demo_environment, demo_feeds
from include.demo.sample_files import GENERATORS
from tests.demo import process_tree

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = load_config(environ=demo_environment({}))
FEED_NAMES = "|".join(re.escape(name) for name in DEMO_CONFIG.feed_names)
SUMMARY_LINE = re.compile(rf"^(?:{FEED_NAMES}) +\d{{4}}-\d{{2}}-\d{{2}}  ")
UI_LINE = re.compile(r"^Airflow UI:\s+(?P<url>http://\S+)\s+\(login (?P<username>\S+) / (?P<password>\S+)\)$")
AWS_LINE = re.compile(r"^Local AWS:\s+(?P<url>http://\S+)$")
DEMO_TIMEOUT = 840.0  # a hung demo fails the test instead of blocking the session
STOP_TIMEOUT = 180.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _demo_command(home: Path) -> list[str]:
    return [sys.executable, "-m", "include.demo", "--home", str(home)]


def _stop_demo(process: subprocess.Popen[str]) -> None:
    """SIGTERM (the demo stops what it started, like Ctrl-C), then SIGKILL its group if it does not end."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One working folder for both runs: the second run starts where the first one left it."""
    return tmp_path_factory.mktemp("make-demo") / "home"


@pytest.fixture(scope="module")
def ci_run(demo_home: Path) -> subprocess.CompletedProcess[str]:
    """The module's first demo run, with ``CI=true``; requested by both tests so that it always runs first."""
    process = subprocess.Popen(
        _demo_command(demo_home),
        cwd=PROJECT_ROOT,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT)
    finally:
        _stop_demo(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _assert_summary(stdout: str) -> None:
    feeds = demo_feeds(DEMO_CONFIG)
    assert len(feeds) >= 2, "the demo shows more than one feed"
    generated = {
        feed.name: GENERATORS[feed.name](
            first_date=date(2026, 1, 1), landing_prefix=feed.landing_prefix, large_file_rows=1
        )
        for feed in feeds
    }
    summary = [line for line in stdout.splitlines() if SUMMARY_LINE.match(line)]
    assert len(summary) == sum(len(week) for week in generated.values()), stdout
    assert all(line.endswith("as expected") for line in summary), stdout
    # columns: feed date key shards rows imported rejected verified duration "s" result
    for feed in feeds:
        rows = [line for line in summary if line.split()[0] == feed.name]
        assert len(rows) == len(generated[feed.name]), (feed.name, stdout)
        assert all(line.split()[2].startswith(feed.landing_prefix) for line in rows), rows
    (sharded,) = [line for line in summary if "orders-bulk" in line]
    assert int(sharded.split()[3]) > 1, f"the large file was not sharded: {sharded}"
    with_rejects = [line for line in summary if int(line.split()[6]) > 0]
    assert len(with_rejects) == 1, f"expected exactly one file with rejected rows: {with_rejects}"
    # After the backfill, one more file lands for today and its event imports it, before the summary.
    (event_line,) = [
        line for line in stdout.splitlines() if "imported by its event (run asset_triggered__" in line
    ]
    assert "verified as expected; landing to verified" in event_line, event_line
    assert stdout.index(event_line) < stdout.index(summary[0]), (
        "the event's import is shown before the summary"
    )


def test_ci_run_imports_and_verifies_every_file_then_stops_everything(
    ci_run: subprocess.CompletedProcess[str], demo_home: Path
) -> None:
    assert ci_run.returncode == 0, (ci_run.stdout + ci_run.stderr)[-6000:]
    _assert_summary(ci_run.stdout)
    assert "Press Ctrl-C" not in ci_run.stdout
    assert "stopped everything the demo started" in ci_run.stdout
    assert process_tree.processes_with_files_under(demo_home) == []


class _Lines:
    """The demo's stdout, read by a thread so that the test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], *, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line like {pattern.pattern!r} within {timeout:.0f} s:\n" + self.text
                ) from None
            if line is None:
                raise AssertionError(f"the demo ended without a line like {pattern.pattern!r}:\n" + self.text)
            self.seen.append(line)
            match = pattern.match(line)
            if match:
                return match

    def rest(self, *, timeout: float) -> str:
        """Everything until the stream closes."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return self.text

    @property
    def text(self) -> str:
        return "\n".join(self.seen)


def _hold_a_batch_job_running(aws_url: str, env: dict[str, str]) -> str:
    """Submit a long job to the demo's queue and wait until its process runs; returns the job id."""
    config = load_config(environ={**env, **demo_environment(env)})
    batch = boto3.client(
        "batch",
        endpoint_url=aws_url,
        region_name=config.aws.region,
        aws_access_key_id=LOCAL_CREDENTIALS,
        aws_secret_access_key=LOCAL_CREDENTIALS,
    )
    job_id = batch.submit_job(
        jobName="running-at-ctrl-c",
        jobQueue=config.batch.job_queue,
        jobDefinition=config.feeds[0].job_definition,
        containerOverrides={"command": ["sleep", "3600"]},
    )["jobId"]
    deadline = time.monotonic() + 120
    status = "SUBMITTED"
    while time.monotonic() < deadline:
        (job,) = batch.describe_jobs(jobs=[job_id])["jobs"]
        status = job["status"]
        if status == "RUNNING":
            return job_id
        assert status not in ("SUCCEEDED", "FAILED"), job
        time.sleep(0.5)
    raise AssertionError(f"Batch job {job_id} still {status} after 120 s")


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_running_it_again_without_ci_serves_until_ctrl_c_then_stops_everything(
    ci_run: subprocess.CompletedProcess[str], demo_home: Path, tmp_path: Path
) -> None:
    left_over = demo_home / "left-by-the-first-run"
    left_over.parent.mkdir(parents=True, exist_ok=True)
    left_over.write_text("the demo wipes its working folder at each start\n")
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    stderr_path = tmp_path / "demo.stderr"
    recorded: list[process_tree.Process] = []
    with stderr_path.open("w") as stderr:
        demo = subprocess.Popen(
            _demo_command(demo_home),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, as a shell's foreground job
        )
    try:
        assert demo.stdout is not None
        lines = _Lines(demo.stdout)
        ui = lines.wait_for(UI_LINE, timeout=DEMO_TIMEOUT)
        aws_url = lines.wait_for(AWS_LINE, timeout=30)["url"]
        lines.wait_for(re.compile(r"^Press Ctrl-C to stop\.$"), timeout=30)
        _assert_summary(lines.text)
        assert not left_over.exists(), "the second run did not start from a wiped working folder"

        # The printed login works on the UI's login endpoint (the one the REST API's tokens come from) ...
        login = AdminLogin(username=ui["username"], password=ui["password"])
        client = AirflowRestClient(base_url=ui["url"], login=login)
        assert client.token()
        refused = requests.post(
            f"{ui['url']}/auth/token",
            json={"username": login.username, "password": login.password + "x"},
            timeout=30,
        )
        assert refused.status_code == 401, refused.text
        # ... and everything still runs: every component healthy, every DAG there, the endpoint runs Batch jobs.
        health = client.request("GET", "/api/v2/monitor/health")
        states = {name: (health.get(name) or {}).get("status") for name in HEALTH_COMPONENTS}
        assert states == dict.fromkeys(HEALTH_COMPONENTS, HEALTHY), health
        dag_ids = {dag["dag_id"] for dag in client.request("GET", "/api/v2/dags")["dags"]}
        assert {PROVISION_DAG_ID, *(feed.dag_id for feed in DEMO_CONFIG.feeds)} <= dag_ids
        job_id = _hold_a_batch_job_running(aws_url, env)

        recorded = process_tree.descendants(demo.pid)
        job_processes = [
            p for p in recorded if process_tree.environment_of(p.pid).get("AWS_BATCH_JOB_ID") == job_id
        ]
        assert job_processes, f"no process of Batch job {job_id} below the demo: {recorded}"
        ports = process_tree.listening_ports(recorded)
        assert {_port_of(ui["url"]), _port_of(aws_url)} <= set(ports), ports

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
        returncode = demo.wait(timeout=STOP_TIMEOUT)
        output = lines.rest(timeout=30)
        # What is left, seen before the clean-up below could hide it.
        left = process_tree.still_running(recorded)
        in_groups = process_tree.running_in_groups({demo.pid} | {p.pgid for p in recorded})
        holders = process_tree.processes_with_files_under(demo_home)
        listened = process_tree.listened_ports()
        still_listening = {port: cmdline for port, cmdline in ports.items() if port in listened}
        not_bindable = [port for port in ports if not _bindable(port)]
    finally:
        _stop_demo(demo)
        for process in process_tree.still_running(recorded):  # only if the demo left them: do not leak them
            os.kill(process.pid, signal.SIGKILL)

    assert returncode == 0, output + "\n" + stderr_path.read_text()[-6000:]
    assert "\nstopping\n" in output
    assert "stopped everything the demo started" in output
    assert left == [], "processes the demo started still run after Ctrl-C"
    assert in_groups == [], "processes of the demo's process groups still run after Ctrl-C"
    assert holders == [], "processes still hold files of the demo's working folder"
    assert still_listening == {}, "ports the demo's processes listened on are still listened on"
    assert not_bindable == [], "ports the demo's processes listened on cannot be bound again"
