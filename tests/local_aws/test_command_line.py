"""``python -m include.local_aws`` as users run it: serves, and SIGINT/SIGTERM end it and every job process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.local_aws.batch_jobs import (
    SLEEP_WITH_CHILD,
    client,
    create_queue,
    register_python_job,
    wait_for_log_line,
    wait_until_gone,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RemoteEndpoint:
    url: str


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_endpoint_and_every_job_process(signum: signal.Signals, tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    server_log = tmp_path / "server.log"
    with server_log.open("w") as server_stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "include.local_aws", "--host", "127.0.0.1", "--port", "0"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=server_stderr,
            text=True,
        )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), server_log.read_text()
        endpoint = RemoteEndpoint(url)
        _, queue = create_queue(endpoint)
        definition = register_python_job(endpoint, SLEEP_WITH_CHILD)
        batch = client(endpoint, "batch")
        job_ids = [
            batch.submit_job(jobName=f"left-running-{index}", jobQueue=queue, jobDefinition=definition)[
                "jobId"
            ]
            for index in range(2)
        ]
        pids = [
            int(pid) for job_id in job_ids for pid in wait_for_log_line(endpoint, job_id, "PIDS ").split()[1:]
        ]

        server.send_signal(signum)
        return_code = server.wait(timeout=20)

        assert return_code == 0, server_log.read_text()
        assert wait_until_gone(pids) == []
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
