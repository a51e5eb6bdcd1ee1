"""AWS Batch parity of the local runtime: timeout, terminate/cancel, retries, array jobs, dependsOn, vCPU limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from include.local_aws import LocalAws
from tests.local_aws.batch_jobs import (
    SLEEP_WITH_CHILD,
    client,
    create_queue,
    describe,
    log_messages,
    register_python_job,
    wait_for_log_line,
    wait_for_status,
    wait_until_gone,
)


def wait_until_released(release: Path) -> str:
    """Job code that runs until the test creates ``release`` (no timing guesses)."""
    return f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.02)\n"


def running_pids(aws: LocalAws, job_id: str) -> list[int]:
    return [int(pid) for pid in wait_for_log_line(aws, job_id, "PIDS ").split()[1:]]


def test_attempt_timeout_kills_the_process_and_fails_without_retry(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(
        local_aws, SLEEP_WITH_CHILD, timeout={"attemptDurationSeconds": 3}, retryStrategy={"attempts": 3}
    )
    job_id = client(local_aws, "batch").submit_job(jobName="slow", jobQueue=queue, jobDefinition=definition)[
        "jobId"
    ]
    pids = running_pids(local_aws, job_id)

    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(job["attempts"]) == 1  # AWS does not retry an attempt that timed out
    assert job["container"]["exitCode"] == 128 + 15  # SIGTERM
    assert wait_until_gone(pids) == []


def test_terminate_job_kills_the_process_group(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, SLEEP_WITH_CHILD, retryStrategy={"attempts": 3})
    batch = client(local_aws, "batch")
    job_id = batch.submit_job(jobName="to-terminate", jobQueue=queue, jobDefinition=definition)["jobId"]
    pids = running_pids(local_aws, job_id)
    assert describe(local_aws, job_id)["status"] == "RUNNING"

    batch.terminate_job(jobId=job_id, reason="Terminated by the test")
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Terminated by the test"
    assert len(job["attempts"]) == 1
    assert wait_until_gone(pids) == []


def test_cancel_job_fails_a_waiting_job_and_leaves_a_running_one(local_aws: LocalAws, tmp_path: Path) -> None:
    _, queue = create_queue(local_aws)
    release = tmp_path / "release"
    blocker = register_python_job(local_aws, wait_until_released(release))
    batch = client(local_aws, "batch")
    running_id = batch.submit_job(jobName="running", jobQueue=queue, jobDefinition=blocker)["jobId"]
    waiting_id = batch.submit_job(
        jobName="waiting", jobQueue=queue, jobDefinition=blocker, dependsOn=[{"jobId": running_id}]
    )["jobId"]
    wait_for_status(local_aws, running_id, ("RUNNING",))
    assert wait_for_status(local_aws, waiting_id, ("PENDING",))["status"] == "PENDING"

    batch.cancel_job(jobId=waiting_id, reason="Cancelled by the test")
    batch.cancel_job(jobId=running_id, reason="Too late: AWS cancels only jobs that have not started")
    cancelled = wait_for_status(local_aws, waiting_id)
    release.touch()
    finished = wait_for_status(local_aws, running_id)

    assert (cancelled["status"], cancelled["statusReason"]) == ("FAILED", "Cancelled by the test")
    assert cancelled["attempts"] == []
    assert finished["status"] == "SUCCEEDED"


RETRY_UNTIL_THIRD_ATTEMPT = """
import os
attempt = int(os.environ["AWS_BATCH_JOB_ATTEMPT"])
print(f"attempt {attempt}")
raise SystemExit(0 if attempt == 3 else 75)
"""


def test_retry_strategy_runs_failed_attempts_again_and_lists_each(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, RETRY_UNTIL_THIRD_ATTEMPT, retryStrategy={"attempts": 1})

    job_id = client(local_aws, "batch").submit_job(
        jobName="retried", jobQueue=queue, jobDefinition=definition, retryStrategy={"attempts": 3}
    )["jobId"]
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    assert [attempt["container"]["exitCode"] for attempt in job["attempts"]] == [75, 75, 0]
    streams = [attempt["container"]["logStreamName"] for attempt in job["attempts"]]
    assert len(set(streams)) == 3
    assert [log_messages(local_aws, stream) for stream in streams] == [
        ["attempt 1"],
        ["attempt 2"],
        ["attempt 3"],
    ]
    assert job["container"]["logStreamName"] == streams[-1]


EVALUATE_ON_EXIT = [
    {"onExitCode": "2", "action": "EXIT"},
    {"onExitCode": "3", "action": "exit"},
    {"onExitCode": "7*", "onStatusReason": "Essential container*", "action": "RETRY"},
    {"onReason": "CannotStartContainerError*", "action": "EXIT"},
    {"onExitCode": "*", "action": "EXIT"},
]


@pytest.mark.parametrize(
    ("exit_code", "attempts"),
    [
        pytest.param(3, 1, id="exit-rule-case-insensitive"),
        pytest.param(75, 3, id="retry-rule-with-prefix-patterns"),
        pytest.param(1, 1, id="catch-all-exit"),
    ],
)
def test_evaluate_on_exit_first_matching_rule_decides(
    local_aws: LocalAws, exit_code: int, attempts: int
) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(
        local_aws,
        f"raise SystemExit({exit_code})",
        retryStrategy={"attempts": 3, "evaluateOnExit": EVALUATE_ON_EXIT},
    )

    job_id = client(local_aws, "batch").submit_job(
        jobName="evaluated", jobQueue=queue, jobDefinition=definition
    )["jobId"]
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "FAILED"
    assert [attempt["container"]["exitCode"] for attempt in job["attempts"]] == [exit_code] * attempts


WRITE_INDEX = """
import os
index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])
with open(os.path.join({directory!r}, f"child-{{index}}"), "w") as marker:
    marker.write(os.environ["AWS_BATCH_JOB_ID"])
raise SystemExit(4 if index == {failing_index} else 0)
"""


@pytest.mark.parametrize(
    ("failing_index", "parent_status"),
    [
        pytest.param(-1, "SUCCEEDED", id="all-children-succeed"),
        pytest.param(1, "FAILED", id="one-child-fails"),
    ],
)
def test_array_job_children_see_their_index_and_settle_the_parent(
    local_aws: LocalAws, tmp_path: Path, failing_index: int, parent_status: str
) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(
        local_aws, WRITE_INDEX.format(directory=str(tmp_path), failing_index=failing_index)
    )
    batch = client(local_aws, "batch")

    parent_id = batch.submit_job(
        jobName="array", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 3}
    )["jobId"]
    parent = wait_for_status(local_aws, parent_id)

    assert parent["status"] == parent_status
    assert parent["arrayProperties"]["size"] == 3
    children = [
        child["jobId"]
        for status in ("SUCCEEDED", "FAILED")
        for child in batch.list_jobs(arrayJobId=parent_id, jobStatus=status)["jobSummaryList"]
    ]
    assert sorted(children) == [f"{parent_id}:{index}" for index in range(3)]
    for index in range(3):
        child = describe(local_aws, f"{parent_id}:{index}")
        assert child["arrayProperties"]["index"] == index
        assert child["status"] == ("FAILED" if index == failing_index else "SUCCEEDED")
        assert (tmp_path / f"child-{index}").read_text() == f"{parent_id}:{index}"


def test_depends_on_waits_for_success_and_fails_after_a_failed_dependency(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    _, queue = create_queue(local_aws)
    release, marker = tmp_path / "release", tmp_path / "first-done"
    first = register_python_job(
        local_aws, wait_until_released(release) + f"open({str(marker)!r}, 'w').close()\n"
    )
    second = register_python_job(
        local_aws, f"import os\nraise SystemExit(0 if os.path.exists({str(marker)!r}) else 9)"
    )
    failing = register_python_job(local_aws, "raise SystemExit(5)")
    batch = client(local_aws, "batch")

    first_id = batch.submit_job(jobName="first", jobQueue=queue, jobDefinition=first)["jobId"]
    second_id = batch.submit_job(
        jobName="second", jobQueue=queue, jobDefinition=second, dependsOn=[{"jobId": first_id}]
    )["jobId"]
    failing_id = batch.submit_job(jobName="failing", jobQueue=queue, jobDefinition=failing)["jobId"]
    orphan_id = batch.submit_job(
        jobName="orphan", jobQueue=queue, jobDefinition=second, dependsOn=[{"jobId": failing_id}]
    )["jobId"]
    wait_for_status(local_aws, first_id, ("RUNNING",))
    assert describe(local_aws, second_id)["status"] == "PENDING"
    release.touch()

    assert wait_for_status(local_aws, second_id)["status"] == "SUCCEEDED"
    orphan = wait_for_status(local_aws, orphan_id)
    assert (orphan["status"], orphan["statusReason"]) == ("FAILED", "Dependent Job failed")
    assert orphan["attempts"] == []


def test_max_vcpus_limits_concurrency_and_an_update_lets_waiting_jobs_start(
    local_aws: LocalAws, tmp_path: Path
) -> None:
    environment, queue = create_queue(local_aws, max_vcpus=2)
    release = tmp_path / "release"
    definition = register_python_job(local_aws, wait_until_released(release), vcpus="1")
    batch = client(local_aws, "batch")
    job_ids = [
        batch.submit_job(jobName=f"queued-{index}", jobQueue=queue, jobDefinition=definition)["jobId"]
        for index in range(4)
    ]

    def statuses() -> list[str]:
        return sorted(job["status"] for job in batch.describe_jobs(jobs=job_ids)["jobs"])

    deadline = time.monotonic() + 30
    while statuses().count("RUNNING") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses() == ["RUNNABLE", "RUNNABLE", "RUNNING", "RUNNING"]
    time.sleep(0.5)  # room for a wrongly admitted job to start; the limit must still hold afterwards
    assert statuses() == ["RUNNABLE", "RUNNABLE", "RUNNING", "RUNNING"]

    batch.update_compute_environment(computeEnvironment=environment, computeResources={"maxvCpus": 4})
    for job_id in job_ids:
        wait_for_status(local_aws, job_id, ("RUNNING",))
    release.touch()

    assert [wait_for_status(local_aws, job_id)["status"] for job_id in job_ids] == ["SUCCEEDED"] * 4


CHECK_PREDECESSOR = """
import os, sys, time
index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])
directory, own, predecessor = sys.argv[1], sys.argv[2], sys.argv[3]
if not os.path.exists(os.path.join(directory, predecessor.format(index=index, previous=index - 1))):
    raise SystemExit(9)
time.sleep(0.3)
open(os.path.join(directory, own.format(index=index)), "w").close()
"""


def test_array_dependencies_sequential_and_n_to_n(local_aws: LocalAws, tmp_path: Path) -> None:
    _, queue = create_queue(local_aws)
    batch = client(local_aws, "batch")

    def array_job(name: str, own: str, predecessor: str, depends_on: list[dict[str, str]]) -> str:
        command = ["python", "-c", CHECK_PREDECESSOR, str(tmp_path), own, predecessor]
        definition = register_python_job(local_aws, "", containerProperties={"command": command})
        return batch.submit_job(  # type: ignore[no-any-return]
            jobName=name,
            jobQueue=queue,
            jobDefinition=definition,
            arrayProperties={"size": 3},
            dependsOn=depends_on,
        )["jobId"]

    # SEQUENTIAL: child i starts after child i-1 succeeded (child 0 has none: its "predecessor" exists already).
    (tmp_path / "first--1").touch()
    sequential = array_job("sequential", "first-{index}", "first-{previous}", [{"type": "SEQUENTIAL"}])
    # N_TO_N: child i of the second array starts after child i of the first succeeded.
    paired = array_job("paired", "second-{index}", "first-{index}", [{"jobId": sequential, "type": "N_TO_N"}])

    assert wait_for_status(local_aws, sequential)["status"] == "SUCCEEDED"
    assert wait_for_status(local_aws, paired)["status"] == "SUCCEEDED"
    assert sorted(path.name for path in tmp_path.glob("second-*")) == ["second-0", "second-1", "second-2"]
