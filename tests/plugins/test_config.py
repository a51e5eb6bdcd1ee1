"""The pipeline config: the checked-in file loads, env overrides win, bad values are refused by name.

Feeds: the schema (defaults, derived names, per-feed schedule/import overrides), every validation error
naming the feed and the key, ``CSV_IMPORT__FEEDS__<NAME>__<KEY>`` overrides, and ``python -m
batch_import.config`` (JSON with every override applied; exit 2 with the error on an invalid config).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batch_import.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from tests.fixtures.feeds import THREE_FEEDS, first_feed, write_feeds_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_config_loads() -> None:
    config = load_config(environ={})
    assert config.source == str(DEFAULT_CONFIG_PATH)
    assert config.bucket.landing_prefix == "incoming/"
    feed = first_feed(config)
    assert feed.table.key_schema == [(feed.table.partition_key, "HASH", feed.table.partition_key_type)]
    assert config.batch.is_fargate
    assert config.schedule.catchup is False


def test_shipped_config_declares_feeds_with_different_key_schemas() -> None:
    config = load_config(environ={})
    assert len(config.feeds) >= 2
    schemas = {tuple(feed.table.key_schema) for feed in config.feeds}
    assert len(schemas) == len(config.feeds)
    assert len({feed.table.name for feed in config.feeds}) == len(config.feeds)


def test_feed_defaults_and_derived_names(tmp_path: Path) -> None:
    path = write_feeds_config(
        tmp_path / "pipeline.toml", [{"name": "orders", "table": "t-orders", "partition_key": "id"}]
    )
    config = load_config(path, environ={})
    (feed,) = config.feeds
    assert feed.dag_id == "import_orders"
    assert feed.landing_prefix == "incoming/orders/"
    assert feed.manifest_prefix == "manifests/orders/"
    assert feed.rejected_prefix == "rejected/orders/"
    assert feed.job_role == f"{config.iam.job_role}-orders"
    assert feed.job_definition == f"{config.batch.job_definition}-orders"
    assert feed.table.key_schema == [("id", "HASH", "S")]
    assert feed.table.sort_key_type == ""
    # No override: the feed's schedule and import are the shared sections.
    assert feed.schedule == config.schedule
    assert feed.import_ == config.import_


def test_a_feed_overrides_schedule_and_import_keys_for_itself(tmp_path: Path) -> None:
    path = write_feeds_config(
        tmp_path / "pipeline.toml",
        [
            {
                "name": "a",
                "table": "ta",
                "partition_key": "id",
                "cron": "0 3 * * *",
                "max_reject_ratio": 0.1,
                "shard_threshold_bytes": 1024,
                "sort_key": "ts",
                "sort_key_type": "N",
                "landing_prefix": "incoming/vendor/a/",
            },
            {"name": "b", "table": "tb", "partition_key": "id"},
        ],
    )
    config = load_config(path, environ={"CSV_IMPORT__IMPORT__MAX_SHARDS": "7"})
    a, b = config.feeds
    assert (a.schedule.cron, a.import_.max_reject_ratio, a.import_.shard_threshold_bytes) == (
        "0 3 * * *",
        0.1,
        1024,
    )
    assert a.landing_prefix == "incoming/vendor/a/"
    assert a.table.key_schema == [("id", "HASH", "S"), ("ts", "RANGE", "N")]
    # The other feed keeps the shared values; a shared env override reaches both.
    assert (b.schedule.cron, b.import_.max_reject_ratio) == (
        config.schedule.cron,
        config.import_.max_reject_ratio,
    )
    assert a.import_.max_shards == b.import_.max_shards == 7


def test_feed_environment_overrides_win_over_the_file_and_the_shared_sections(tmp_path: Path) -> None:
    path = write_feeds_config(tmp_path / "pipeline.toml", THREE_FEEDS)
    config = load_config(
        path,
        environ={
            "CSV_IMPORT__FEEDS__ORDERS__TABLE": "orders-prod",
            "CSV_IMPORT__FEEDS__ORDERS__MAX_REJECT_RATIO": "0.5",
            "CSV_IMPORT__FEEDS__ORDERS__CRON": "0 4 * * *",
            "CSV_IMPORT__FEEDS__READINGS__SORT_KEY_TYPE": "S",
            "CSV_IMPORT__FEEDS__CUSTOMERS__LANDING_PREFIX": "incoming/crm/",
            "CSV_IMPORT__IMPORT__MAX_REJECT_RATIO": "0.2",
        },
    )
    orders, customers, readings = (config.feed(name) for name in ("orders", "customers", "readings"))
    assert orders.table.name == "orders-prod"
    assert orders.import_.max_reject_ratio == 0.5
    assert orders.schedule.cron == "0 4 * * *"
    assert customers.import_.max_reject_ratio == readings.import_.max_reject_ratio == 0.2
    assert customers.schedule.cron == config.schedule.cron
    assert customers.landing_prefix == "incoming/crm/"
    assert readings.table.key_schema[1] == ("reading_time", "RANGE", "S")


def test_environment_overrides_win_and_are_typed() -> None:
    config = load_config(
        environ={
            "CSV_IMPORT__AWS__REGION": "eu-west-1",
            "CSV_IMPORT__BATCH__MAX_VCPUS": "64",
            "CSV_IMPORT__BATCH__SUBNETS": "subnet-a, subnet-b",
            "CSV_IMPORT__SCHEDULE__CATCHUP": "true",
            "CSV_IMPORT__IMPORT__MAX_REJECT_RATIO": "0.25",
            "CSV_IMPORT__FEEDS__ORDERS__SORT_KEY": "ts",
        }
    )
    assert config.aws.region == "eu-west-1"
    assert config.batch.max_vcpus == 64
    assert config.batch.subnets == ("subnet-a", "subnet-b")
    assert config.schedule.catchup is True
    assert config.import_.max_reject_ratio == 0.25
    feed = config.feed("orders")
    assert feed.schedule.catchup is True
    assert [name for name, _, _ in feed.table.key_schema] == [feed.table.partition_key, "ts"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"CSV_IMPORT__BATCH__MAX_VCPUS": "many"}, "batch.max_vcpus", id="not-an-int"),
        pytest.param({"CSV_IMPORT__SCHEDULE__CATCHUP": "perhaps"}, "schedule.catchup", id="not-a-bool"),
        pytest.param({"CSV_IMPORT__BATCH__COMPUTE_TYPE": "LAMBDA"}, "batch.compute_type", id="compute-type"),
        pytest.param(
            {"CSV_IMPORT__FEEDS__ORDERS__PARTITION_KEY_TYPE": "B"},
            "feeds.orders.partition_key_type",
            id="key-type",
        ),
        pytest.param(
            {"CSV_IMPORT__BUCKET__LANDING_PREFIX": "incoming"}, "bucket.landing_prefix", id="prefix"
        ),
        pytest.param({"CSV_IMPORT__BUCKET__REJECTED_PREFIX": "incoming/rej/"}, "overlap", id="overlap"),
        pytest.param({"CSV_IMPORT__IMPORT__MAX_REJECT_RATIO": "2"}, "max_reject_ratio", id="ratio"),
        pytest.param(
            {"CSV_IMPORT__FEEDS__ORDERS__MAX_REJECT_RATIO": "2"},
            "feeds.orders.max_reject_ratio",
            id="feed-ratio",
        ),
        pytest.param(
            {"CSV_IMPORT__TABLE__NAME": "old"}, r"\[table\].*CSV_IMPORT__TABLE__NAME", id="retired-table-env"
        ),
        pytest.param(
            {"CSV_IMPORT__EVENTS__LONG_POLL_SECONDS": "21"}, "events.long_poll_seconds", id="long-poll"
        ),
        pytest.param({"CSV_IMPORT__EVENTS__MAX_MESSAGES": "11"}, "events.max_messages", id="max-messages"),
        pytest.param(
            {"CSV_IMPORT__FEEDS__ORDERS__EVENT_QUEUE": "orders.fifo!"},
            "feeds.orders.event_queue",
            id="queue-name",
        ),
        pytest.param(
            {
                "CSV_IMPORT__FEEDS__ORDERS__EVENT_QUEUE": "shared",
                "CSV_IMPORT__FEEDS__SENSOR_READINGS__EVENT_QUEUE": "shared",
            },
            r"event_queue: 'shared' is already the event queue of feed 'orders'",
            id="shared-queue",
        ),
    ],
)
def test_bad_values_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)


def _feed(name: str, table: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "table": table, "partition_key": "id", **keys}


@pytest.mark.parametrize(
    ("feeds", "env", "message"),
    [
        pytest.param(
            [_feed("a", "t1"), _feed("a", "t2")],
            {},
            r"feeds\[1\]\.name: feed 'a' is declared twice",
            id="dup-name",
        ),
        pytest.param(
            [_feed("a", "same"), _feed("b", "same")],
            {},
            r"feeds\.b\.table: 'same' is already the table of feed 'a'",
            id="dup-table",
        ),
        pytest.param(
            [_feed("a", "t1"), _feed("b", "t2")],
            {"CSV_IMPORT__FEEDS__B__TABLE": "t1"},
            r"feeds\.b\.table: 't1' is already the table of feed 'a'",
            id="dup-table-by-env",
        ),
        pytest.param(
            [
                _feed("a", "t1", landing_prefix="incoming/x/"),
                _feed("b", "t2", landing_prefix="incoming/x/b/"),
            ],
            {},
            r"feeds\.b\.landing_prefix: 'incoming/x/b/' overlaps feed 'a'",
            id="nested-prefixes",
        ),
        pytest.param(
            [_feed("a", "t1", landing_prefix="incoming/x/"), _feed("b", "t2", landing_prefix="incoming/x/")],
            {},
            r"feeds\.(a|b)\.landing_prefix: 'incoming/x/' overlaps feed",
            id="same-prefix",
        ),
        pytest.param(
            [_feed("a", "t1", landing_prefix="elsewhere/a/")],
            {},
            r"feeds\.a\.landing_prefix: 'elsewhere/a/' is not under the bucket's landing prefix",
            id="prefix-outside-landing",
        ),
        pytest.param(
            [_feed("a", "t1", landing_prefix="incoming/a")],
            {},
            r"feeds\.a\.landing_prefix: .*must end with '/'",
            id="prefix-no-slash",
        ),
        pytest.param(
            [_feed("a", "t1", landing_prefix="incoming/../manifests/")],
            {},
            r"feeds\.a\.landing_prefix: .*'\.\.' path segment",
            id="prefix-dot-dot",
        ),
        pytest.param(
            [_feed("a", "t1")],
            {"CSV_IMPORT__FEEDS__A__LANDING_PREFIX": "manifests/a/"},
            r"feeds\.a\.landing_prefix: 'manifests/a/' is not under",
            id="prefix-into-bookkeeping-by-env",
        ),
        pytest.param(
            [_feed("a", "t1", partition_key_type="B")], {}, r"feeds\.a\.partition_key_type: 'B'", id="pk-type"
        ),
        pytest.param(
            [_feed("a", "t1", sort_key="ts", sort_key_type="BOOL")],
            {},
            r"feeds\.a\.sort_key_type: 'BOOL'",
            id="sk-type",
        ),
        pytest.param([_feed("Orders", "t1")], {}, r"feeds\[0\]\.name: 'Orders' must match", id="bad-name"),
        pytest.param(
            [_feed("a__b", "t1")], {}, r"feeds\[0\]\.name: 'a__b' must not contain '__'", id="ambiguous-name"
        ),
        pytest.param(
            [{"name": "a", "partition_key": "id"}], {}, r"feeds\.a is missing 'table'", id="no-table"
        ),
        pytest.param(
            [_feed("a", "t1", colour="red")], {}, r"feeds\.a: unknown key \['colour'\]", id="unknown-key"
        ),
        pytest.param(
            [_feed("a", "t1")],
            {"CSV_IMPORT__FEEDS__A__COLOUR": "red"},
            r"feeds\.a: unknown environment override",
            id="unknown-env-key",
        ),
        pytest.param(
            [_feed("a", "t1")],
            {"CSV_IMPORT__FEEDS__B__TABLE": "x"},
            r"feeds\.b: environment override .* names no declared feed",
            id="unknown-env-feed",
        ),
        pytest.param(
            [_feed("a", "t1", column_types="price:FLOAT")], {}, r"feeds\.a\.column_types", id="column-types"
        ),
        pytest.param([_feed("a", "t1", cron="not a cron")], {}, r"feeds\.a\.cron", id="cron"),
        pytest.param(
            [_feed("a", "t1", max_active_runs=1)], {}, r"feeds\.a\.max_active_runs", id="max-active-runs"
        ),
        pytest.param([_feed("a", "t1", max_shards="many")], {}, r"feeds\.a\.max_shards", id="not-an-int"),
        pytest.param(
            [_feed("a" * 50, "t1")], {}, r"feeds\.a+\.name: the feed's job role", id="role-too-long"
        ),
        pytest.param([], {}, r"no \[\[feeds\]\] declared", id="no-feeds"),
    ],
)
def test_feed_validation_names_the_feed_and_the_key(
    tmp_path: Path, feeds: list[dict[str, Any]], env: dict[str, str], message: str
) -> None:
    path = write_feeds_config(tmp_path / "pipeline.toml", feeds) if feeds else tmp_path / "pipeline.toml"
    if not feeds:
        from tests.fixtures.feeds import shared_sections_toml

        path.write_text(shared_sections_toml())
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ=env)


def test_retired_table_section_in_the_file_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = write_feeds_config(tmp_path / "pipeline.toml", THREE_FEEDS)
    path.write_text(path.read_text() + '\n[table]\nname = "csv-import-items"\n')
    with pytest.raises(ConfigError, match=r"\[table\].*move its keys into a \[\[feeds\]\] entry"):
        load_config(path, environ={})


def test_unknown_key_and_missing_file_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.toml"
    bad.write_text(DEFAULT_CONFIG_PATH.read_text() + "\n[extra]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={"CSV_IMPORT_CONFIG": str(tmp_path / "nope.toml")})


def test_job_environment_entries_must_be_name_value() -> None:
    config = load_config(
        environ={"CSV_IMPORT__BATCH__JOB_ENVIRONMENT": "AWS_ENDPOINT_URL=http://moto:5000,A_B=x=y"}
    )
    assert config.batch.job_environment == ("AWS_ENDPOINT_URL=http://moto:5000", "A_B=x=y")
    with pytest.raises(ConfigError, match="batch.job_environment"):
        load_config(environ={"CSV_IMPORT__BATCH__JOB_ENVIRONMENT": "no-equals-sign"})


def _print_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSV_IMPORT")}
    return subprocess.run(
        [sys.executable, "-m", "batch_import.config"],
        env={**clean, **env, "PYTHONPATH": str(PROJECT_ROOT / "plugins")},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_m_config_prints_the_resolved_config_with_every_override(tmp_path: Path) -> None:
    path = write_feeds_config(tmp_path / "pipeline.toml", THREE_FEEDS)
    printed = _print_config(
        {
            "CSV_IMPORT_CONFIG": str(path),
            "CSV_IMPORT__AWS__REGION": "eu-west-1",
            "CSV_IMPORT__FEEDS__ORDERS__TABLE": "orders-prod",
            "CSV_IMPORT__FEEDS__CUSTOMERS__CRON": "0 5 * * *",
        }
    )
    assert printed.returncode == 0, printed.stderr
    resolved = json.loads(printed.stdout)
    assert {"aws", "bucket", "iam", "batch", "schedule", "import", "feeds"} <= set(resolved)
    assert resolved["aws"]["region"] == "eu-west-1"
    assert resolved["source"] == str(path)
    by_name = {feed["name"]: feed for feed in resolved["feeds"]}
    assert list(by_name) == ["orders", "customers", "readings"]
    required = {
        "name", "dag_id", "landing_prefix", "table", "partition_key", "partition_key_type",
        "sort_key", "sort_key_type", "column_types", "schedule", "import",
    }  # fmt: skip
    for feed in resolved["feeds"]:
        assert required <= set(feed), feed
    assert by_name["orders"]["table"] == "orders-prod"
    assert by_name["orders"]["dag_id"] == "import_orders"
    assert by_name["customers"]["schedule"]["cron"] == "0 5 * * *"
    assert by_name["orders"]["schedule"]["cron"] == resolved["schedule"]["cron"]
    assert (by_name["readings"]["sort_key"], by_name["readings"]["sort_key_type"]) == ("reading_time", "N")
    assert by_name["customers"]["partition_key_type"] == "N"
    assert by_name["orders"]["column_types"] == "price:N,quantity:N"
    assert by_name["orders"]["landing_prefix"] == "incoming/orders/"


def test_python_m_config_exits_2_with_the_error_on_an_invalid_config() -> None:
    printed = _print_config({"CSV_IMPORT__FEEDS__ORDERS__PARTITION_KEY_TYPE": "X"})
    assert printed.returncode == 2
    assert printed.stdout == ""
    assert "feeds.orders.partition_key_type" in printed.stderr


def test_each_feed_has_its_own_event_queue_named_from_the_config() -> None:
    shipped = load_config(environ={})
    queues = {feed.name: (feed.event_queue, feed.event_dead_letter_queue) for feed in shipped.feeds}
    assert queues == {
        feed.name: (f"{shipped.events.queue}-{feed.name}", f"{shipped.events.queue}-{feed.name}-dlq")
        for feed in shipped.feeds
    }

    renamed = load_config(
        environ={
            "CSV_IMPORT__EVENTS__QUEUE": "landing-events",
            "CSV_IMPORT__EVENTS__DEAD_LETTER_SUFFIX": "-dead",
            "CSV_IMPORT__FEEDS__ORDERS__EVENT_QUEUE": "orders-prod-events",
        }
    )
    assert renamed.feed("orders").event_queue == "orders-prod-events"
    assert renamed.feed("orders").event_dead_letter_queue == "orders-prod-events-dead"
    assert renamed.feed("sensor_readings").event_queue == "landing-events-sensor_readings"


def test_shipped_event_polling_verifies_a_small_file_within_two_minutes() -> None:
    """The trigger's worst wait (one empty-poll pause, then a receive that answers at once) leaves room for the
    scheduler, Batch polling and the job within the two minutes a landed small file may take."""
    shipped = load_config(environ={})
    for feed in shipped.feeds:
        worst_wait = shipped.events.empty_poll_delay_seconds + feed.import_.poll_interval_seconds
        assert worst_wait <= 60, feed.name
    assert 1 <= shipped.events.long_poll_seconds <= 20
