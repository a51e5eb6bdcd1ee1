"""Batch jobs run as real host processes on the local endpoint: environment, exit codes, logs, start failures."""

from __future__ import annotations

import json
import os
import sys

import pytest

from include.local_aws import LocalAws
from tests.local_aws.batch_jobs import (
    client,
    create_queue,
    log_messages,
    register_python_job,
    unique,
    wait_for_status,
)

PRINT_ENVIRONMENT = """
import json, os, boto3
s3 = boto3.client("s3")
s3.put_object(Bucket=os.environ["bucket_name"], Key="from-job.txt", Body=os.environ["AWS_BATCH_JOB_ID"].encode())
print("ENV " + json.dumps(dict(os.environ)))
print("ARGV " + json.dumps(__import__("sys").argv[1:]))
"""


def test_success_runs_the_command_with_the_batch_environment(local_aws: LocalAws) -> None:
    environment, queue = create_queue(local_aws)
    bucket = unique("local-bucket")
    client(local_aws, "s3").create_bucket(Bucket=bucket)
    definition = register_python_job(
        local_aws,
        PRINT_ENVIRONMENT,
        containerProperties={
            "command": ["python", "-c", PRINT_ENVIRONMENT, "Ref::source", "key=Ref::key"],
            "environment": [
                {"name": "from_definition", "value": "definition"},
                {"name": "overridden", "value": "definition"},
            ],
        },
        parameters={"source": "default-source", "key": "default-key"},
    )

    job_id = client(local_aws, "batch").submit_job(
        jobName="env",
        jobQueue=queue,
        jobDefinition=definition,
        parameters={"key": "data/file.csv"},
        containerOverrides={
            "environment": [
                {"name": "overridden", "value": "override"},
                {"name": "bucket_name", "value": bucket},
            ]
        },
    )["jobId"]
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    assert job["container"]["exitCode"] == 0
    assert job["statusReason"] == "Essential container in task exited"
    lines = log_messages(local_aws, job["container"]["logStreamName"])
    seen = json.loads(next(line for line in lines if line.startswith("ENV "))[4:])
    assert json.loads(next(line for line in lines if line.startswith("ARGV "))[5:]) == [
        "default-source",
        "key=data/file.csv",
    ]
    assert seen["from_definition"] == "definition"
    assert seen["overridden"] == "override"
    assert seen["AWS_BATCH_JOB_ID"] == job_id
    assert seen["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert seen["AWS_BATCH_CE_NAME"] == environment
    assert seen["AWS_BATCH_JQ_NAME"] == queue
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in seen
    assert seen["AWS_ENDPOINT_URL"] == local_aws.url
    assert seen["AWS_DEFAULT_REGION"] == "us-east-1"
    assert (seen["AWS_ACCESS_KEY_ID"], seen["AWS_SECRET_ACCESS_KEY"]) == ("testing", "testing")
    assert seen["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    written = client(local_aws, "s3").get_object(Bucket=bucket, Key="from-job.txt")["Body"].read()
    assert written.decode() == job_id


def test_nonzero_exit_fails_the_job_with_its_exit_code(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, "raise SystemExit(3)")
    batch = client(local_aws, "batch")

    job_id = batch.submit_job(jobName="exit-three", jobQueue=queue, jobDefinition=definition)["jobId"]
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "FAILED"
    assert job["container"]["exitCode"] == 3
    assert job["statusReason"] == "Essential container in task exited"
    assert [attempt["container"]["exitCode"] for attempt in job["attempts"]] == [3]
    summary = batch.list_jobs(jobQueue=queue, jobStatus="FAILED")["jobSummaryList"]
    assert [(item["jobId"], item["container"]["exitCode"]) for item in summary] == [(job_id, 3)]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["csv-importer-that-does-not-exist", "--help"], id="missing-executable"),
        pytest.param([], id="no-command"),
    ],
)
def test_command_that_cannot_start_fails_with_a_clear_reason(local_aws: LocalAws, command: list[str]) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, "pass", retryStrategy={"attempts": 2})

    job_id = client(local_aws, "batch").submit_job(
        jobName="cannot-start",
        jobQueue=queue,
        jobDefinition=definition,
        containerOverrides={"command": command},
    )["jobId"]
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "FAILED"
    assert job["statusReason"].startswith("CannotStartContainerError: ")
    assert job["container"]["reason"] == job["statusReason"]
    if command:
        assert command[0] in job["statusReason"]
    assert "exitCode" not in job["container"]
    # a start failure is retried like any other failed attempt
    assert [attempt["statusReason"] for attempt in job["attempts"]] == ["Task failed to start"] * 2


def test_stdout_and_stderr_reach_cloudwatch_for_the_provider_log_fetcher(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook
    from airflow.providers.amazon.aws.utils.task_log_fetcher import AwsTaskLogFetcher

    _, queue = create_queue(local_aws)
    code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nprint('\\u00e9t\\u00e9 \\u2713')"
    definition = register_python_job(local_aws, code)
    job_id = client(local_aws, "batch").submit_job(jobName="logs", jobQueue=queue, jobDefinition=definition)[
        "jobId"
    ]
    job = wait_for_status(local_aws, job_id)
    assert job["status"] == "SUCCEEDED", job.get("statusReason")

    monkeypatch.delenv(
        "AWS_ENDPOINT_URL"
    )  # the endpoint must come from the fixture's AIRFLOW_CONN_AWS_DEFAULT
    hook = BatchClientHook(aws_conn_id="aws_default")
    assert hook.conn_region_name == "us-east-1"
    [log_info] = hook.get_job_all_awslogs_info(job_id)
    assert log_info["awslogs_group"] == "/aws/batch/job"
    assert log_info["awslogs_stream_name"] == job["container"]["logStreamName"]
    fetcher = AwsTaskLogFetcher(
        log_group=log_info["awslogs_group"],
        log_stream_name=log_info["awslogs_stream_name"],
        fetch_interval=None,  # type: ignore[arg-type]
        logger=hook.log,
        aws_conn_id="aws_default",
        region_name=hook.conn_region_name,
    )
    messages = [event["message"] for event in fetcher._get_log_events()]
    assert sorted(messages) == sorted(["to stdout", "to stderr", "été ✓"])


def test_the_venv_console_scripts_are_found_without_an_activated_venv(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as when pytest runs as .venv/bin/python without activation
    _, queue = create_queue(local_aws)
    definition = register_python_job(
        local_aws, "pass", containerProperties={"command": ["csv-importer", "--help"]}
    )

    job_id = client(local_aws, "batch").submit_job(
        jobName="importer-help", jobQueue=queue, jobDefinition=definition
    )["jobId"]
    job = wait_for_status(local_aws, job_id)

    assert job["status"] == "SUCCEEDED", job.get("container", {}).get("reason")
    assert log_messages(local_aws, job["container"]["logStreamName"])[0].startswith("usage: csv-importer")
