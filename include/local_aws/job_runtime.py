"""AWS Batch jobs as host processes: one job's life, attempt by attempt, as AWS Batch runs a container.

SUBMITTED -> PENDING (waiting for dependsOn) -> RUNNABLE (waiting for vCPUs in a compute environment) ->
STARTING -> RUNNING (the process) -> SUCCEEDED | FAILED, with retries (retryStrategy + evaluateOnExit), the
attempt timeout, TerminateJob/CancelJob, and stdout/stderr shipped to CloudWatch Logs while the process runs.
Everything moto-specific is behind :class:`include.local_aws.moto_adapter.MotoBatchJob`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from include.local_aws.moto_adapter import ComputeCapacity, MotoBatchJob

log = logging.getLogger(__name__)

# Credentials the local endpoint accepts; never real ones.
LOCAL_ACCESS_KEY_ID = "testing"
LOCAL_SECRET_ACCESS_KEY = "testing"

# AWS Batch's own wording, so evaluateOnExit onStatusReason/onReason patterns written for AWS match here too.
CONTAINER_EXITED = "Essential container in task exited"
TASK_FAILED_TO_START = "Task failed to start"
ATTEMPT_TIMED_OUT = "Job attempt duration exceeded timeout"
DEPENDENCY_FAILED = "Dependent Job failed"

# Variables a job process takes from the endpoint's own environment (a container starts almost empty).
_INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
_POLL_SECONDS = 0.05
# Hold jobs for inspection or fault injection: a job whose name starts with the name of a file in this directory
# (of the endpoint's environment) starts its process stopped (SIGSTOP). It reports RUNNING until someone sends its
# process group SIGCONT. Unset, nothing is held.
HOLD_DIR_VARIABLE = "LOCAL_AWS_BATCH_HOLD_DIR"
_MAX_LOG_EVENT_BYTES = 256 * 1024 - 26


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended; ``final`` outcomes (terminated, timed out) are never retried, as on AWS."""

    exit_code: int | None
    status_reason: str
    container_reason: str | None = None
    final: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.final


def glob_matches(pattern: str, value: str) -> bool:
    """AWS evaluateOnExit matching: exact, or a prefix when the pattern ends with ``*``."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def retry_action(evaluate_on_exit: list[dict[str, Any]], outcome: AttemptOutcome) -> str:
    """``RETRY`` or ``EXIT`` for a failed attempt: the first rule whose every condition matches wins.

    As on AWS, no matching rule means RETRY (while attempts remain), and actions are case-insensitive. A value
    the attempt does not have (no exit code when the process never started) matches no pattern.
    """
    values = {
        "onExitCode": None if outcome.exit_code is None else str(outcome.exit_code),
        "onStatusReason": outcome.status_reason,
        "onReason": outcome.container_reason,
    }
    for rule in evaluate_on_exit:
        conditions = [(str(rule[key]), value) for key, value in values.items() if key in rule]
        if all(value is not None and glob_matches(pattern, value) for pattern, value in conditions):
            return str(rule.get("action", "RETRY")).upper()
    return "RETRY"


class CapacityScheduler:
    """vCPU accounting per compute environment: a job starts only where maxvCpus leaves room for it."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._vcpus_in_use: dict[str, float] = {}
        self._warned: set[str] = set()

    def acquire(
        self,
        job_id: str,
        vcpus: float,
        environments: Callable[[], list[ComputeCapacity]],
        stopped: Callable[[], bool],
    ) -> ComputeCapacity | None:
        """Reserve ``vcpus`` in the first enabled environment with room; ``None`` when the job was stopped."""
        with self._condition:
            while not stopped():
                for environment in environments():
                    if not environment.enabled:
                        continue
                    in_use = self._vcpus_in_use.get(environment.arn, 0.0)
                    maximum = environment.max_vcpus
                    if maximum is not None and vcpus > maximum and job_id not in self._warned:
                        self._warned.add(job_id)
                        log.warning(
                            "Job %s needs %s vCPUs, more than maxvCpus %s of compute environment %s: RUNNABLE "
                            "until the environment grows (AWS behaves the same)",
                            job_id,
                            vcpus,
                            maximum,
                            environment.name,
                        )
                    if maximum is None or in_use + vcpus <= maximum + 1e-9:
                        self._vcpus_in_use[environment.arn] = in_use + vcpus
                        return environment
                self._condition.wait(_POLL_SECONDS * 2)
            return None

    def release(self, environment: ComputeCapacity, vcpus: float) -> None:
        with self._condition:
            self._vcpus_in_use[environment.arn] = max(
                0.0, self._vcpus_in_use.get(environment.arn, 0.0) - vcpus
            )
            self._condition.notify_all()


class ProcessRuntime:
    """Runs moto's Batch jobs as host processes; one instance per process hosting the endpoint."""

    def __init__(self, *, stop_grace_seconds: float = 2.0) -> None:
        self.stop_grace_seconds = stop_grace_seconds
        self.scheduler = CapacityScheduler()
        self._lock = threading.Lock()
        self._endpoint_urls: list[str] = []
        self._jobs: dict[str, tuple[MotoBatchJob, threading.Thread]] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # -- endpoint bookkeeping ----------------------------------------------------------------------------------

    def attach_endpoint(self, url: str) -> None:
        with self._lock:
            self._endpoint_urls.append(url)

    def detach_endpoint(self, url: str) -> bool:
        """Forget a stopped server; True when it was the last one (moto's state is shared per process)."""
        with self._lock:
            if url in self._endpoint_urls:
                self._endpoint_urls.remove(url)
            return not self._endpoint_urls

    @property
    def endpoint_url(self) -> str:
        with self._lock:
            if not self._endpoint_urls:
                raise RuntimeError("No local AWS endpoint is running in this process")
            return self._endpoint_urls[0]

    # -- stopping ----------------------------------------------------------------------------------------------

    def stop_all_jobs(self, reason: str, timeout: float = 10.0) -> int:
        """Fail every job not yet ended, kill its process group and wait for its thread; returns how many."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job, _thread in jobs:
            job.request_stop(reason)
        deadline = time.monotonic() + timeout
        for _job, thread in jobs:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            leftovers = list(self._processes.values())
        for process in leftovers:
            _kill_process_group(process, signal.SIGKILL)
        return len(jobs)

    # -- one job -----------------------------------------------------------------------------------------------

    def run(self, job: MotoBatchJob) -> None:
        """The body of moto's job thread: never raises; any local failure fails the job with its reason."""
        with self._lock:
            self._jobs[job.job_id] = (job, threading.current_thread())
        try:
            self._run_job(job)
        except Exception as error:
            log.exception("Local Batch runtime failed on job %s", job.job_id)
            job.finish(
                succeeded=False, status_reason=f"Local runtime error: {error}", stopped_at=datetime.now()
            )
        finally:
            with self._lock:
                self._jobs.pop(job.job_id, None)

    def _run_job(self, job: MotoBatchJob) -> None:
        job.wait_until_submitted(timeout=5.0)
        if job.stop_requested:
            job.finish(succeeded=False, status_reason=job.stop_reason, stopped_at=datetime.now())
            return
        job.status = "PENDING"
        failed_dependency = self._wait_for_dependencies(job)
        if failed_dependency is not None:
            job.finish(succeeded=False, status_reason=failed_dependency, stopped_at=datetime.now())
            return
        strategy = job.retry_strategy()
        attempts_allowed = max(1, int(strategy.get("attempts") or 1))
        vcpus = job.vcpus()
        attempt_number = 0
        while True:
            attempt_number += 1
            job.status = "RUNNABLE"
            environment = self.scheduler.acquire(
                job.job_id, vcpus, job.compute_environments, lambda: job.stop_requested
            )
            if environment is None:
                job.finish(succeeded=False, status_reason=job.stop_reason, stopped_at=datetime.now())
                return
            try:
                outcome = self._run_attempt(job, attempt_number, environment)
            finally:
                self.scheduler.release(environment, vcpus)
            if outcome.succeeded:
                job.finish(succeeded=True, status_reason=outcome.status_reason, stopped_at=datetime.now())
                return
            retry = (
                not outcome.final
                and not job.stop_requested
                and attempt_number < attempts_allowed
                and retry_action(strategy.get("evaluateOnExit") or [], outcome) == "RETRY"
            )
            if not retry:
                # As AWS shows a start failure: the container's reason (CannotStartContainerError: ...) on the job.
                reason = (
                    job.stop_reason
                    if job.stop_requested
                    else outcome.container_reason or outcome.status_reason
                )
                job.finish(succeeded=False, status_reason=reason, stopped_at=datetime.now())
                return
            log.info(
                "Job %s attempt %s failed (%s): retrying", job.job_id, attempt_number, outcome.status_reason
            )

    def _wait_for_dependencies(self, job: MotoBatchJob) -> str | None:
        """None once every dependency SUCCEEDED; otherwise the statusReason that fails this job."""
        pending = job.dependencies()
        while pending:
            if job.stop_requested:
                return job.stop_reason
            still_pending = []
            for job_id in pending:
                status = job.status_of(job_id)
                if status is None:
                    return f"{DEPENDENCY_FAILED}: job {job_id} in dependsOn does not exist"
                if status == "FAILED":
                    return DEPENDENCY_FAILED
                if status != "SUCCEEDED":
                    still_pending.append(job_id)
            pending = still_pending
            if pending:
                time.sleep(_POLL_SECONDS)
        return None

    def _process_environment(
        self, job: MotoBatchJob, attempt_number: int, environment_name: str
    ) -> dict[str, str]:
        variables = {name: os.environ[name] for name in _INHERITED_VARIABLES if name in os.environ}
        interpreter_bin = os.path.dirname(sys.executable)
        path_entries = variables.get("PATH", "").split(os.pathsep) if variables.get("PATH") else []
        if interpreter_bin not in path_entries:
            variables["PATH"] = os.pathsep.join([interpreter_bin, *path_entries])
        variables.update(
            {
                "PYTHONUNBUFFERED": "1",
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
                "AWS_DEFAULT_REGION": job.region_name,
                "AWS_REGION": job.region_name,
            }
        )
        variables.update(job.environment())
        variables.update(
            {
                "AWS_BATCH_JOB_ID": job.job_id,
                "AWS_BATCH_JOB_ATTEMPT": str(attempt_number),
                "AWS_BATCH_CE_NAME": environment_name,
                "AWS_BATCH_JQ_NAME": job.queue_name,
            }
        )
        if job.array_index is not None:
            variables["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
        return variables

    def _run_attempt(
        self, job: MotoBatchJob, attempt_number: int, environment: ComputeCapacity
    ) -> AttemptOutcome:
        job.status = "STARTING"
        log_stream_name = f"{job.job_definition_name}/default/{uuid.uuid4().hex}"
        job.start_attempt(log_stream_name, datetime.now())
        command = job.command()
        variables = self._process_environment(job, attempt_number, environment.name)
        workdir = tempfile.mkdtemp(prefix="local-batch-job-")
        try:
            outcome = self._run_process(job, command, variables, workdir, log_stream_name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        job.stop_attempt(
            exit_code=outcome.exit_code,
            status_reason=outcome.status_reason,
            container_reason=outcome.container_reason,
            stopped_at=datetime.now(),
        )
        return outcome

    def _run_process(
        self,
        job: MotoBatchJob,
        command: list[str],
        variables: dict[str, str],
        workdir: str,
        log_stream_name: str,
    ) -> AttemptOutcome:
        if not command:
            return AttemptOutcome(
                None, TASK_FAILED_TO_START, "CannotStartContainerError: the job definition has no command"
            )
        try:
            process = subprocess.Popen(
                command,
                env=variables,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            reason = f"CannotStartContainerError: {command[0]!r}: {error.strerror or error}"
            log.warning("Job %s cannot start: %s", job.job_id, reason)
            return AttemptOutcome(None, TASK_FAILED_TO_START, reason)
        if _held(job.job_name):
            _kill_process_group(process, signal.SIGSTOP)
            log.info("Job %s (%s) held: its process %s starts stopped", job.job_id, job.job_name, process.pid)
        with self._lock:
            self._processes[job.job_id] = process
        shipper = LogShipper(job, log_stream_name, process)
        job.status = "RUNNING"
        try:
            stop_reason = self._supervise(job, process)
        finally:
            _kill_process_group(
                process, signal.SIGKILL
            )  # what a stopped container leaves behind dies with it
            shipper.close()
            with self._lock:
                self._processes.pop(job.job_id, None)
        return_code = process.returncode
        exit_code = return_code if return_code >= 0 else 128 - return_code
        if stop_reason is not None:
            return AttemptOutcome(exit_code, stop_reason, None, final=True)
        return AttemptOutcome(exit_code, CONTAINER_EXITED)

    def _supervise(self, job: MotoBatchJob, process: subprocess.Popen[bytes]) -> str | None:
        """Wait for the process; on TerminateJob or the attempt timeout stop it and say why."""
        duration = job.attempt_duration_seconds()
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            try:
                process.wait(timeout=_POLL_SECONDS)
                return None
            except subprocess.TimeoutExpired:
                pass
            reason = None
            if job.stop_requested:
                reason = job.stop_reason
            elif deadline is not None and time.monotonic() >= deadline:
                reason = ATTEMPT_TIMED_OUT
            if reason is not None:
                log.info("Stopping job %s (pid %s): %s", job.job_id, process.pid, reason)
                self._stop_process(process)
                return reason

    def _stop_process(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period (docker stop / ECS StopTask)."""
        _kill_process_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_grace_seconds)
        except subprocess.TimeoutExpired:
            _kill_process_group(process, signal.SIGKILL)
            process.wait()


def _held(job_name: str) -> bool:
    hold_dir = os.environ.get(HOLD_DIR_VARIABLE)
    if not hold_dir or not os.path.isdir(hold_dir):
        return False
    return any(job_name.startswith(prefix) for prefix in os.listdir(hold_dir))


def _kill_process_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class LogShipper:
    """Streams a process's stdout and stderr lines into the job's CloudWatch log stream while it runs."""

    def __init__(self, job: MotoBatchJob, log_stream_name: str, process: subprocess.Popen[bytes]) -> None:
        self._job = job
        self._log_stream_name = log_stream_name
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        streams = [stream for stream in (process.stdout, process.stderr) if stream is not None]
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True) for stream in streams
        ]
        self._flusher = threading.Thread(target=self._flush_periodically, daemon=True)
        for thread in [*self._readers, self._flusher]:
            thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream:
            for raw_line in stream:
                message = raw_line.rstrip(b"\r\n")[:_MAX_LOG_EVENT_BYTES].decode("utf-8", errors="replace")
                with self._lock:
                    self._events.append({"timestamp": int(time.time() * 1000), "message": message})

    def _flush_periodically(self) -> None:
        while not self._closed.wait(0.2):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        if events:
            events.sort(key=lambda event: event["timestamp"])
            self._job.put_log_events(self._log_stream_name, events)

    def close(self) -> None:
        """After the process group is gone: drain both pipes and ship the last lines."""
        for reader in self._readers:
            reader.join(timeout=5.0)
        self._closed.set()
        self._flusher.join(timeout=5.0)
        self._flush()
