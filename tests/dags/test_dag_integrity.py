"""DAG integrity: both DAG files import cleanly, offline, and are wired as the pipeline expects.

Parsing happens with every socket refused, so a DAG file (or anything it imports) that reaches AWS, the
metadata DB over the network or any other host at parse time fails here. Parse times are reported
(``record_property`` + the test output), not asserted: speed belongs to benchmarks (``make bench``).

The import DAG file generates one DAG per feed: checked for the shipped config and for a generated config of
several feeds, including that Airflow's parsing context (set by the task runner) builds only the running
feed's DAG.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from batch_import.config import load_config
from tests.fixtures.feeds import THREE_FEEDS, first_feed, generated_feeds, write_feeds_config

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
SHIPPED = load_config(environ={})
IMPORT_DAG_IDS = {feed.dag_id for feed in SHIPPED.feeds}
EXPECTED_DAG_IDS = IMPORT_DAG_IDS | {"provision_batch_environment"}
DAG_FILES = {"import_feeds.py", "provision_batch_environment.py"}


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
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("CSV_IMPORT")]:
            patch.delenv(name)
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
    assert DAG_FILES <= set(stats)
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


@pytest.mark.parametrize("feed_name", SHIPPED.feed_names)
def test_import_dag_schedule_and_wiring(dag_bag: Any, feed_name: str) -> None:
    from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable

    from batch_import.event_trigger import LandingEventsTrigger

    feed = SHIPPED.feed(feed_name)
    dag = dag_bag.dags[feed.dag_id]
    # Scheduled on the feed's landing events or its timetable.
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.timetable, CronDataIntervalTimetable)
    landed = dag.timetable.asset_condition
    (watcher,) = landed.watchers
    assert isinstance(watcher.trigger, LandingEventsTrigger)
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "batch_import.event_trigger.LandingEventsTrigger"
    assert "sqs_queue" not in kwargs, "no queue URL at parse time: the trigger asks for it by name"
    assert (kwargs["queue_name"], kwargs["wait_time_seconds"], kwargs["waiter_delay"]) == (
        feed.event_queue,
        SHIPPED.events.long_poll_seconds,
        SHIPPED.events.empty_poll_delay_seconds,
    )
    assert dag.catchup is feed.schedule.catchup
    assert dag.max_active_runs == feed.schedule.max_active_runs >= 2
    sensor = dag.get_task("wait_for_files")
    assert sensor.mode == "reschedule"
    assert sensor.timeout == feed.schedule.sensor_grace_seconds
    assert sensor.landing_prefix == feed.landing_prefix
    assert sensor.downstream_task_ids == {"list_files"}
    assert "import_file" in dag.get_task("list_files").downstream_task_ids
    assert dag.get_task("verify_file").upstream_task_ids == {"import_file", "list_files"}
    assert dag.get_task("import_file").downstream_task_ids == {"verify_file"}
    assert dag.get_task("import_file").awslogs_enabled is True
    outlets = dag.get_task("verify_file").outlets
    assert [asset.name for asset in outlets] == [feed.table.name]
    assert dag.get_task("import_file").job_definition == feed.job_definition
    assert dag.get_task("list_files").manifest_prefix == feed.manifest_prefix
    verify = dag.get_task("verify_file")
    assert (verify.table_name, verify.manifest_prefix, verify.rejected_prefix) == (
        feed.table.name,
        feed.manifest_prefix,
        feed.rejected_prefix,
    )
    assert dag.params.get_param("max_reject_ratio").value == feed.import_.max_reject_ratio
    assert set(dag.params) == {"s3_key", "reprocess", "max_reject_ratio"}
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title"), name
        assert param.description, name
        assert param.schema.get("type"), name


FIRST = first_feed(SHIPPED)
OTHER = SHIPPED.feeds[1]


@pytest.mark.parametrize(
    ("s3_key", "valid"),
    [
        pytest.param(None, True, id="none"),
        pytest.param(f"{FIRST.landing_prefix}2026-01-02/orders.csv", True, id="csv"),
        pytest.param(f"{FIRST.landing_prefix}2026-01-02/orders.csv.gz", True, id="gzip"),
        pytest.param("elsewhere/orders.csv", False, id="outside-prefix"),
        pytest.param(f"{OTHER.landing_prefix}2026-01-02/orders.csv", False, id="other-feeds-prefix"),
        pytest.param("incoming/2026-01-02/orders.csv", False, id="landing-root"),
        pytest.param(f"{FIRST.landing_prefix}../secrets/orders.csv", False, id="dot-dot"),
        pytest.param(f"{FIRST.landing_prefix}2026-01-02/orders.parquet", False, id="not-csv"),
        pytest.param(f"x{FIRST.landing_prefix}2026-01-02/orders.csv", False, id="unanchored"),
    ],
)
def test_s3_key_param_is_validated_by_the_trigger_form(dag_bag: Any, s3_key: str | None, valid: bool) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    param = dag_bag.dags[FIRST.dag_id].params.get_param("s3_key")
    if valid:
        assert param.resolve(s3_key) == s3_key
    else:
        with pytest.raises(ParamValidationError):
            param.resolve(s3_key)


def _parse_generated(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    feeds: list[dict[str, Any]],
    running_dag_id: str | None = None,
) -> tuple[Any, list[str]]:
    """A DagBag of the DAG folder with a generated config, offline; plus the dag ids of every DAG constructed.

    ``running_dag_id`` parses as Airflow's task runner does for a task of that DAG (its parsing context).
    """
    import airflow.sdk
    from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager

    for name in [name for name in os.environ if name.startswith("CSV_IMPORT")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CSV_IMPORT_CONFIG", str(write_feeds_config(tmp_path / "pipeline.toml", feeds)))
    constructed: list[str] = []

    class CountingDAG(airflow.sdk.DAG):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            constructed.append(kwargs.get("dag_id") or args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(airflow.sdk, "DAG", CountingDAG)
    # Airflow's context manager leaves the variable set when it was unset before: monkeypatch restores it.
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    with _airflow_parsing_context_manager(dag_id=running_dag_id):
        bag = parse_offline(DAGS_FOLDER)
    os.environ.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    return bag, constructed


def test_one_import_dag_per_configured_feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feeds = [*THREE_FEEDS, *generated_feeds(4)]
    bag, constructed = _parse_generated(tmp_path, monkeypatch, feeds)

    assert bag.import_errors == {}, bag.import_errors
    wanted = {f"import_{feed['name']}" for feed in feeds}
    assert set(bag.dag_ids) == wanted | {"provision_batch_environment"}
    assert sorted(constructed) == sorted(wanted | {"provision_batch_environment"})
    readings = bag.dags["import_readings"]
    assert readings.get_task("verify_file").key_schema == [("sensor_id", "S"), ("reading_time", "N")]
    assert bag.dags["import_customers"].get_task("verify_file").key_schema == [("customer_no", "N")]
    provision = bag.dags["provision_batch_environment"]
    for feed in feeds:
        for task in ("ensure_table", "ensure_job_role", "ensure_job_definition"):
            assert f"{feed['name']}.{task}" in provision.task_ids


def test_parsing_context_builds_only_the_running_feeds_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = [*THREE_FEEDS, *generated_feeds(4)]
    bag, constructed = _parse_generated(tmp_path, monkeypatch, feeds, running_dag_id="import_customers")

    assert bag.import_errors == {}, bag.import_errors
    import_dags = [dag_id for dag_id in constructed if dag_id.startswith("import_")]
    assert import_dags == ["import_customers"]
    assert "import_customers" in bag.dag_ids
    assert not {dag_id for dag_id in bag.dag_ids if dag_id.startswith("import_")} - {"import_customers"}


def test_a_removed_feed_has_no_dag_anymore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bag, _ = _parse_generated(tmp_path, monkeypatch, list(THREE_FEEDS[:2]))
    assert {dag_id for dag_id in bag.dag_ids if dag_id.startswith("import_")} == {
        "import_orders",
        "import_customers",
    }
