"""``make demo EXECUTOR=celery``: the demo story on the production engine, then Ctrl-C.

``python -m include.demo --executor celery`` (what the Makefile line runs) must provision, import and verify
every file of the week as expected, report task instances on both Celery workers (hostnames read through the
REST API), print the UI's URL and a login that works, keep every component healthy, and on Ctrl-C (SIGINT to
its process group, as a terminal sends it) exit 0 having stopped every process it started (Postgres, Redis,
every Airflow component, the endpoint), freed every port they listened on, and left no process holding a file
of its working folder (every component's log, Postgres' data and Redis' append-only file are there). With
``CI=true`` the same run exits after the summary instead (``make bench`` runs it that way).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from include.airflow_standalone import HEALTH_COMPONENTS, HEALTHY, AdminLogin, AirflowRestClient
from include.celery_stack.stack import WORKERS
from tests.celery.conftest import require_os_packages
from tests.demo import process_tree
from tests.demo.test_make_demo import AWS_LINE, UI_LINE, _assert_summary, _bindable, _Lines, _port_of

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_LINE = re.compile(r".*task instances per worker \(their hostname in the REST API\): (?P<counts>.*)$")
DEMO_TIMEOUT = 840.0
STOP_TIMEOUT = 180.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_demo_on_the_celery_stack_imports_everything_on_both_workers_and_ctrl_c_stops_everything(
    traversable_folder: Path, tmp_path: Path
) -> None:
    require_os_packages()
    home = traversable_folder / "demo"
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    stderr_path = tmp_path / "demo.stderr"
    recorded: list[process_tree.Process] = []
    with stderr_path.open("w") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "include.demo", "--executor", "celery", "--home", str(home)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        assert demo.stdout is not None
        lines = _Lines(demo.stdout)
        lines.wait_for(re.compile(r".*starting the production engine: Postgres, Redis"), timeout=60)
        workers = lines.wait_for(WORKER_LINE, timeout=DEMO_TIMEOUT)
        ui = lines.wait_for(UI_LINE, timeout=120)
        aws_url = lines.wait_for(AWS_LINE, timeout=30)["url"]
        lines.wait_for(re.compile(r"^Press Ctrl-C to stop\.$"), timeout=30)

        _assert_summary(lines.text)  # every feed's files, each as expected (the same check as make demo's)
        counts = dict(item.rsplit(" ", 1) for item in workers["counts"].split(", "))
        assert set(counts) == set(WORKERS), f"task instances ran on {counts}, expected both workers {WORKERS}"
        assert all(int(count) > 0 for count in counts.values()), counts

        client = AirflowRestClient(
            base_url=ui["url"], login=AdminLogin(username=ui["username"], password=ui["password"])
        )
        health = client.request("GET", "/api/v2/monitor/health")
        states = {name: (health.get(name) or {}).get("status") for name in HEALTH_COMPONENTS}
        assert states == dict.fromkeys(HEALTH_COMPONENTS, HEALTHY), health

        recorded = process_tree.descendants(demo.pid)
        commands = " ".join(p.cmdline for p in recorded)
        for part in ("postgres", "redis-server", "api_server", "scheduler", "dag-processor", "triggerer"):
            assert part in commands, f"no {part} process below the demo: {commands}"
        assert commands.count("celery worker") >= len(WORKERS), commands
        ports = process_tree.listening_ports(recorded)
        assert {_port_of(ui["url"]), _port_of(aws_url)} <= set(ports), ports

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        returncode = demo.wait(timeout=STOP_TIMEOUT)
        output = lines.rest(timeout=30)
        left = process_tree.still_running(recorded)
        holders = process_tree.processes_with_files_under(home)
        listened = process_tree.listened_ports()
        still_listening = {port: cmdline for port, cmdline in ports.items() if port in listened}
        not_bindable = [port for port in ports if not _bindable(port)]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=STOP_TIMEOUT)
        for process in process_tree.still_running(recorded):  # only if the demo left them: do not leak them
            os.kill(process.pid, signal.SIGKILL)

    assert returncode == 0, output + "\n" + stderr_path.read_text()[-6000:]
    assert "stopped everything the demo started" in output
    assert left == [], "processes the demo started still run after Ctrl-C"
    assert holders == [], "processes still hold files of the demo's working folder"
    assert still_listening == {}, "ports the demo's processes listened on are still listened on"
    assert not_bindable == [], "ports the demo's processes listened on cannot be bound again"
    logs = sorted(path.name for path in (home / "logs").iterdir())
    assert logs == sorted(
        ["api-server.log", "db-migrate.log", "dag-processor.log", "scheduler.log", "triggerer.log"]
        + [f"{worker}.log" for worker in WORKERS]
    )
