"""The landing files an event-triggered run imports: the S3 keys named in its triggering asset events.

A feed's import DAG is scheduled on its SQS queue (:mod:`batch_import.event_trigger`) or its timetable. Each
asset event the watcher produces carries, in ``extra["payload"]["message_batch"]``, the SQS messages it
received; each message body is an S3 event notification with ``Records``. One run may consume several asset
events: every record of every message of every event counts.

Plain functions over plain data (no Airflow import), so they are testable with hand-built payloads.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from batch_import.files import LandingKeyError, confine_to_landing_prefix

log = logging.getLogger(__name__)

S3_EVENT_SOURCE = "aws:s3"
OBJECT_CREATED = "ObjectCreated:"
S3_TEST_EVENT = "s3:TestEvent"


def event_extras(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> list[Mapping[str, Any]]:
    """The ``extra`` of every triggering asset event of a run (``context["triggering_asset_events"]``)."""
    if not triggering_asset_events:
        return []
    return [
        getattr(event, "extra", None) or {} for events in triggering_asset_events.values() for event in events
    ]


def landed_keys_from_events(
    extras: Iterable[Mapping[str, Any]], *, bucket_name: str, landing_prefix: str
) -> list[str]:
    """The distinct landing keys the events name, in the order they first appear.

    Each record's key is decoded as S3 encodes it (``urllib.parse.unquote_plus``) and must pass
    :func:`batch_import.files.confine_to_landing_prefix` (under the feed's landing prefix, ``.csv``/``.csv.gz``).
    S3's test event, other event sources and names, other buckets and refused keys are logged and ignored.
    """
    keys: list[str] = []
    for record in _records(extras):
        key = _landing_key(record, bucket_name=bucket_name, landing_prefix=landing_prefix)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def _records(extras: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for extra in extras:
        payload = extra.get("payload") or {}
        for message in payload.get("message_batch") or []:
            body = _message_body(message)
            if body is None:
                continue
            if body.get("Event") == S3_TEST_EVENT:
                log.info("Ignoring S3's test event for bucket %s", body.get("Bucket"))
                continue
            records = body.get("Records")
            if not isinstance(records, list):
                log.info("Ignoring SQS message %s: not an S3 event notification", message.get("MessageId"))
                continue
            yield from (record for record in records if isinstance(record, Mapping))


def _message_body(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    try:
        body = json.loads(message.get("Body") or "")
    except (TypeError, ValueError):
        log.info("Ignoring SQS message %s: its body is not JSON", message.get("MessageId"))
        return None
    return body if isinstance(body, Mapping) else None


def _landing_key(record: Mapping[str, Any], *, bucket_name: str, landing_prefix: str) -> str | None:
    event_name = str(record.get("eventName", ""))
    if record.get("eventSource") != S3_EVENT_SOURCE or not event_name.startswith(OBJECT_CREATED):
        log.info(
            "Ignoring event %s from %s: not an S3 object creation", event_name, record.get("eventSource")
        )
        return None
    s3 = record.get("s3") or {}
    record_bucket = (s3.get("bucket") or {}).get("name")
    key = urllib.parse.unquote_plus(str((s3.get("object") or {}).get("key", "")))
    if record_bucket != bucket_name:
        log.info("Ignoring event for s3://%s/%s: not the landing bucket %s", record_bucket, key, bucket_name)
        return None
    try:
        return confine_to_landing_prefix(key, landing_prefix=landing_prefix, bucket_name=bucket_name)
    except LandingKeyError as err:
        log.info("Ignoring event: %s", err)
        return None
