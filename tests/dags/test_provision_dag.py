"""``provision_batch_environment`` end to end: the real DAG file run with ``dag.test()`` against the local endpoint.

Every AWS call the tasks make is recorded in-process (``botocore.client.BaseClient._make_api_call``; the tasks
of ``dag.test()`` run in this process), whichever client made it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient

from batch_import.config import load_config
from tests.fixtures.feeds import first_feed
from tests.fixtures.provisioning import FEED_RESOURCES, SHARED_RESOURCES

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "provision_batch_environment.py"
DAG_ID = "provision_batch_environment"
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Head")
SHIPPED = load_config(environ={})
FARGATE_RESOURCES = SHARED_RESOURCES + tuple(
    f"{feed.name}.{resource}" for feed in SHIPPED.feeds for resource in FEED_RESOURCES
)
FIRST = first_feed(SHIPPED)


class AwsCalls:
    """AWS operations made in this process, as ``(service, operation, params)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def clear(self) -> None:
        self.calls.clear()

    def mutating(self) -> list[tuple[str, str]]:
        return [(service, name) for service, name, _ in self.calls if not name.startswith(READ_ONLY_PREFIXES)]

    def params_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for _, name, params in self.calls if name == operation]


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> AwsCalls:
    recorded = AwsCalls()
    original = BaseClient._make_api_call

    def recording(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        recorded.calls.append((client.meta.service_model.service_name, operation_name, api_params))
        return original(client, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return recorded


def load_dag() -> Any:
    """The DAG as the DAG processor builds it from the file (config and env overrides read now)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def run(dag: Any) -> tuple[Any, dict[str, str] | None]:
    """``dag.test()`` once: the DagRun and the summary task's XCom."""
    dag_run = dag.test()
    summary = dag_run.get_task_instance("summarize").xcom_pull(task_ids="summarize")
    return dag_run, summary


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def clear_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CSV_IMPORT__"):
            monkeypatch.delenv(name)


@pytest.mark.slow
def test_provisioning_twice_second_run_makes_no_mutating_call(
    local_aws: Any,
    airflow_db: None,
    aws_calls: AwsCalls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clear_overrides(monkeypatch)
    dag = load_dag()

    first_run, first = run(dag)
    assert str(first_run.state) == "success"
    assert first == dict.fromkeys(FARGATE_RESOURCES, "created")
    config = dag.get_task("ensure_job_queue")
    batch = boto3.client("batch", endpoint_url=local_aws.url)
    (queue,) = batch.describe_job_queues(jobQueues=[config.job_queue_name])["jobQueues"]
    assert (queue["state"], queue["status"]) == ("ENABLED", "VALID")
    capsys.readouterr()
    aws_calls.clear()

    second_run, second = run(load_dag())

    assert str(second_run.state) == "success"
    assert second == dict.fromkeys(FARGATE_RESOURCES, "unchanged")
    assert aws_calls.calls, "the second run must describe every resource"
    assert aws_calls.mutating() == []
    log = capsys.readouterr().out
    for resource in SHARED_RESOURCES:
        assert f"Provisioning: {resource} " in log
    for feed in SHIPPED.feeds:
        for resource in FEED_RESOURCES:
            assert f"Provisioning feed {feed.name}: {resource} " in log
    assert ": created" not in log
    assert ": updated" not in log
    assert "Every provisioned feed is configured" in log
    assert "no longer configured" not in log


@pytest.mark.slow
def test_config_change_updates_exactly_that_and_a_key_change_is_refused(
    local_aws: Any,
    airflow_db: None,
    aws_calls: AwsCalls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clear_overrides(monkeypatch)
    first_run, _ = run(load_dag())
    assert str(first_run.state) == "success"
    aws_calls.clear()
    monkeypatch.setenv("CSV_IMPORT__BATCH__MAX_VCPUS", "48")
    monkeypatch.setenv("CSV_IMPORT__BATCH__IMAGE", "csv-importer:next")

    changed_run, summary = run(load_dag())

    assert str(changed_run.state) == "success"
    expected = dict.fromkeys(FARGATE_RESOURCES, "unchanged")
    expected.update(compute_environment="updated")
    expected.update({f"{feed.name}.job_definition": "updated" for feed in SHIPPED.feeds})
    assert summary == expected
    assert sorted(aws_calls.mutating()) == [("batch", "RegisterJobDefinition")] * len(SHIPPED.feeds) + [
        ("batch", "UpdateComputeEnvironment"),
    ]
    (update,) = aws_calls.params_of("UpdateComputeEnvironment")
    assert update["computeResources"] == {"maxvCpus": 48}
    batch = boto3.client("batch", endpoint_url=local_aws.url)
    name = load_dag().get_task("ensure_compute_environment").compute_environment_name
    (environment,) = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    assert environment["computeResources"]["maxvCpus"] == 48
    definitions = batch.describe_job_definitions(
        jobDefinitionName=load_dag().get_task(f"{FIRST.name}.ensure_job_definition").job_definition_name,
        status="ACTIVE",
    )["jobDefinitions"]
    latest = max(definitions, key=lambda d: d["revision"])
    assert (latest["revision"], latest["containerProperties"]["image"]) == (2, "csv-importer:next")

    capsys.readouterr()
    aws_calls.clear()
    monkeypatch.setenv(f"CSV_IMPORT__FEEDS__{FIRST.name.upper()}__SORT_KEY", "loaded_at")

    refused_run, _ = run(load_dag())

    states = task_states(refused_run)
    table_task = f"{FIRST.name}.ensure_table"
    assert str(refused_run.state) == "failed"
    assert states[table_task] == "failed"
    assert states["summarize"] == "upstream_failed"
    # The other feeds' tables are not held back by one feed's refusal.
    assert all(states[f"{feed.name}.ensure_table"] == "success" for feed in SHIPPED.feeds[1:])
    assert refused_run.get_task_instance(table_task).try_number == 1, "a refusal must not be retried"
    assert not [call for call in aws_calls.mutating() if call[0] == "dynamodb"]
    log = capsys.readouterr().out
    assert "key schema" in log
    assert "loaded_at RANGE S" in log


def test_dependencies_follow_the_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_overrides(monkeypatch)
    dag = load_dag()

    def upstream(task_id: str) -> set[str]:
        return set(dag.get_task(task_id).upstream_task_ids)

    assert dag.schedule is None, "triggered by hand only"
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert dag.max_active_runs == 1
    assert dag.tags
    assert all(task.retries >= 1 for task in dag.tasks)
    assert upstream("ensure_bucket") == set()
    assert upstream("ensure_job_queue") == {"ensure_compute_environment"}
    for feed in SHIPPED.feeds:
        assert upstream(f"{feed.name}.ensure_table") == set()
        assert upstream(f"{feed.name}.ensure_job_definition") == {
            f"{feed.name}.ensure_job_role",
            "ensure_execution_role",
            "ensure_log_group",
        }
    assert upstream("ensure_event_notifications") == {"ensure_bucket"} | {
        f"{feed.name}.ensure_event_queue" for feed in SHIPPED.feeds
    }
    assert upstream("report_unconfigured_feeds") == set()
    assert upstream("summarize") == {task.task_id for task in dag.tasks} - {
        "summarize",
        "report_unconfigured_feeds",
    }


def test_ec2_environment_waits_for_the_instance_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_overrides(monkeypatch)
    monkeypatch.setenv("CSV_IMPORT__BATCH__COMPUTE_TYPE", "SPOT")
    dag = load_dag()

    assert set(dag.get_task("ensure_compute_environment").upstream_task_ids) == {"ensure_instance_profile"}
    assert set(dag.get_task("ensure_instance_profile").upstream_task_ids) == {"ensure_instance_role"}
    assert {"ensure_instance_role", "ensure_instance_profile"} <= set(
        dag.get_task("summarize").upstream_task_ids
    )
