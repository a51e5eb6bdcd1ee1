"""DAG integrity: both DAG files import cleanly, offline, and are wired as the pipeline expects.

Parsing happens with every socket refused, so a DAG file (or anything it imports) that reaches AWS, the
metadata DB over the network or any other host at parse time fails here. Parse times are reported
(``record_property`` + the test output), not asserted: speed belongs to benchmarks.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
EXPECTED_DAG_IDS = {"import_csv_to_dynamodb", "provision_batch_environment"}


class NetworkAtParseTime(AssertionError):
    """A DAG file opened a network connection while being parsed."""


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise NetworkAtParseTime(f"network access while parsing DAG files: {args!r}")


def parse_offline(folder: Path) -> Any:
    """A DagBag of ``folder``, parsed while every socket connection and name lookup is refused."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse)
        patch.setattr(socket.socket, "connect_ex", _refuse)
        patch.setattr(socket, "create_connection", _refuse)
        patch.setattr(socket, "getaddrinfo", _refuse)
        return DagBag(dag_folder=str(folder))


@pytest.fixture(scope="module")
def dag_bag() -> Any:
    return parse_offline(DAGS_FOLDER)


def test_network_at_parse_time_is_an_import_error(tmp_path: Path) -> None:
    (tmp_path / "calls_out.py").write_text(
        "import socket\nfrom airflow.sdk import DAG\n"
        "socket.create_connection(('127.0.0.1', 9))\n"
        "dag = DAG(dag_id='calls_out', schedule=None)\n"
    )
    bag = parse_offline(tmp_path)
    assert "network access while parsing" in "".join(bag.import_errors.values())


def test_no_import_errors(dag_bag: Any) -> None:
    assert dag_bag.import_errors == {}, "\n".join(f"{f}: {e}" for f, e in dag_bag.import_errors.items())


def test_both_dags_are_there(dag_bag: Any) -> None:
    assert set(dag_bag.dag_ids) == EXPECTED_DAG_IDS


def test_parse_time_is_reported(dag_bag: Any, record_property: Any) -> None:
    stats = {Path(stat.file).name: stat for stat in dag_bag.dagbag_stats}
    assert {f"{dag_id}.py" for dag_id in EXPECTED_DAG_IDS} <= set(stats)
    for name, stat in sorted(stats.items()):
        seconds = (
            stat.duration.total_seconds() if hasattr(stat.duration, "total_seconds") else float(stat.duration)
        )
        record_property(f"parse_seconds[{name}]", seconds)
        print(f"parse time {name}: {seconds:.3f} s ({stat.dag_num} DAG, {stat.task_num} tasks)")


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAG_IDS))
def test_tags_retries_and_docs(dag_bag: Any, dag_id: str) -> None:
    dag = dag_bag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.doc_md, f"{dag_id} has no documentation"
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_import_dag_schedule_and_wiring(dag_bag: Any) -> None:
    from airflow.sdk import CronDataIntervalTimetable

    from batch_import.config import load_config

    config = load_config()
    dag = dag_bag.dags["import_csv_to_dynamodb"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.catchup is config.schedule.catchup
    assert dag.max_active_runs == config.schedule.max_active_runs >= 2
    sensor = dag.get_task("wait_for_files")
    assert sensor.mode == "reschedule"
    assert sensor.timeout == config.schedule.sensor_grace_seconds
    assert sensor.downstream_task_ids == {"list_files"}
    assert "import_file" in dag.get_task("list_files").downstream_task_ids
    assert dag.get_task("verify_file").upstream_task_ids == {"import_file", "list_files"}
    assert dag.get_task("import_file").downstream_task_ids == {"verify_file"}
    assert dag.get_task("import_file").awslogs_enabled is True
    outlets = dag.get_task("verify_file").outlets
    assert [asset.name for asset in outlets] == [config.table.name]
    assert set(dag.params) == {"s3_key", "reprocess", "max_reject_ratio"}
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title"), name
        assert param.description, name
        assert param.schema.get("type"), name


@pytest.mark.parametrize(
    ("s3_key", "valid"),
    [
        pytest.param(None, True, id="none"),
        pytest.param("incoming/2026-01-02/orders.csv", True, id="csv"),
        pytest.param("incoming/2026-01-02/orders.csv.gz", True, id="gzip"),
        pytest.param("elsewhere/orders.csv", False, id="outside-prefix"),
        pytest.param("incoming/../secrets/orders.csv", False, id="dot-dot"),
        pytest.param("incoming/2026-01-02/orders.parquet", False, id="not-csv"),
        pytest.param("xincoming/2026-01-02/orders.csv", False, id="unanchored"),
    ],
)
def test_s3_key_param_is_validated_by_the_trigger_form(dag_bag: Any, s3_key: str | None, valid: bool) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    param = dag_bag.dags["import_csv_to_dynamodb"].params.get_param("s3_key")
    if valid:
        assert param.resolve(s3_key) == s3_key
    else:
        with pytest.raises(ParamValidationError):
            param.resolve(s3_key)
