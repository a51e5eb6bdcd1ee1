"""The files an event-triggered run imports, from hand-built asset events as the SQS watcher stores them."""

from __future__ import annotations

import json
import logging
import urllib.parse
from types import SimpleNamespace
from typing import Any

import pytest

from batch_import.events import event_extras, landed_keys_from_events
from batch_import.operators import started_by_events
from tests.plugins.test_import_files import BUCKET, LANDING

PREFIX = f"{LANDING}orders/"


def record(key: str, *, bucket: str = BUCKET, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One S3 event record, its key encoded as S3 encodes it."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": urllib.parse.quote_plus(key, safe="/"), "size": 10},
        },
    }


def message(*records: dict[str, Any], body: Any = None) -> dict[str, Any]:
    text = json.dumps({"Records": list(records)}) if body is None else body
    return {"MessageId": "m-1", "ReceiptHandle": "r", "Body": text}


def event(*messages: dict[str, Any]) -> SimpleNamespace:
    """An asset event of the watcher: ``extra`` as ``Trigger.submit_event`` stores it."""
    return SimpleNamespace(
        extra={"from_trigger": True, "payload": {"status": "success", "message_batch": list(messages)}}
    )


def keys_of(*events: SimpleNamespace) -> list[str]:
    extras = event_extras({"asset": list(events)})
    return landed_keys_from_events(extras, bucket_name=BUCKET, landing_prefix=PREFIX)


def test_every_record_of_every_message_of_every_event_is_imported_once() -> None:
    first = event(
        message(record(f"{PREFIX}2026-03-01/a.csv"), record(f"{PREFIX}2026-03-01/b.csv.gz")),
        message(record(f"{PREFIX}2026-03-02/c.CSV")),
    )
    second = event(message(record(f"{PREFIX}2026-03-01/a.csv")), message(record(f"{PREFIX}2026-03-03/d.csv")))

    assert keys_of(first, second) == [
        f"{PREFIX}2026-03-01/a.csv",
        f"{PREFIX}2026-03-01/b.csv.gz",
        f"{PREFIX}2026-03-02/c.CSV",
        f"{PREFIX}2026-03-03/d.csv",
    ]


def test_keys_are_decoded_as_s3_encodes_them() -> None:
    key = f"{PREFIX}2026-03-01/orders + returns (März).csv"

    assert keys_of(event(message(record(key)))) == [key]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
            "test event",
            id="s3-test-event",
        ),
        pytest.param(
            json.dumps({"Records": [record(f"{PREFIX}x/a.csv", bucket="other")]}),
            "landing bucket",
            id="other-bucket",
        ),
        pytest.param(
            json.dumps({"Records": [record("incoming/other/a.csv")]}), "landing prefix", id="outside-prefix"
        ),
        pytest.param(
            json.dumps({"Records": [record(f"{PREFIX}2026-03-01/a.txt")]}), ".csv.gz", id="other-suffix"
        ),
        pytest.param(
            json.dumps({"Records": [record(f"{PREFIX}../secrets/a.csv")]}), "segments", id="dot-dot"
        ),
        pytest.param(
            json.dumps({"Records": [record(f"{PREFIX}a.csv", event_name="ObjectRemoved:Delete")]}),
            "not an S3 object creation",
            id="removal",
        ),
        pytest.param("not json", "not JSON", id="not-json"),
        pytest.param(json.dumps({"hello": 1}), "not an S3 event notification", id="other-message"),
    ],
)
def test_what_is_not_a_landed_file_is_ignored_with_a_log_line(
    body: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="batch_import.events"):
        keys = keys_of(event(message(body=body), message(record(f"{PREFIX}2026-03-01/kept.csv"))))

    assert keys == [f"{PREFIX}2026-03-01/kept.csv"]
    assert reason in caplog.text


def test_a_run_without_events_names_no_file() -> None:
    assert event_extras(None) == []
    assert keys_of() == []


@pytest.mark.parametrize(
    ("run_type", "expected"),
    [("asset_triggered", True), ("scheduled", False), ("manual", False), ("backfill", False)],
)
def test_only_asset_triggered_runs_are_started_by_events(run_type: str, expected: bool) -> None:
    from airflow.utils.types import DagRunType

    assert started_by_events({"dag_run": SimpleNamespace(run_type=DagRunType(run_type))}) is expected
    assert started_by_events({"dag_run": SimpleNamespace(run_type=run_type)}) is expected
