"""The BatchWriteItem pool against fake clients: limits, ordering, UnprocessedItems, throttling, refusals.

moto never returns UnprocessedItems and enforces neither the 25-item nor the 16 MB limit, so these use a
fake low-level client that records every request (and botocore's real retry handler where it matters).
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from csv_importer.exit_codes import TransientFailure
from csv_importer.writer import (
    MAX_BATCH_ITEMS,
    MAX_REQUEST_BYTES,
    BatchItemWriter,
    RowOrigin,
    WriteOutcome,
    backoff_seconds,
)

TABLE = "writer-test"


class RecordingClient:
    """A thread-safe fake DynamoDB client: keeps the last written value per key and every request."""

    def __init__(self, *, delay: float = 0.0, unprocessed_first: int = 0) -> None:
        self.lock = threading.Lock()
        self.requests: list[list[dict[str, Any]]] = []
        self.stored: dict[str, str] = {}
        self.delay = delay
        self.unprocessed_left = unprocessed_first
        self.in_flight_keys: set[str] = set()
        self.overlaps = 0

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]], **_: Any) -> dict[str, Any]:  # noqa: N803
        requests = RequestItems[TABLE]
        keys = [r["PutRequest"]["Item"]["id"]["S"] for r in requests]
        assert len(requests) <= MAX_BATCH_ITEMS
        assert len(set(keys)) == len(keys), "duplicate key in one request"
        with self.lock:
            self.requests.append(requests)
            self.overlaps += len(self.in_flight_keys & set(keys))
            self.in_flight_keys |= set(keys)
            unprocessed = []
            if self.unprocessed_left:
                unprocessed, requests = requests[: self.unprocessed_left], requests[self.unprocessed_left :]
                self.unprocessed_left -= len(unprocessed)
        time.sleep(self.delay * random.random())
        with self.lock:
            for request in requests:
                item = request["PutRequest"]["Item"]
                self.stored[item["id"]["S"]] = item["v"]["S"]
            self.in_flight_keys -= set(keys)
        return {"UnprocessedItems": {TABLE: unprocessed} if unprocessed else {}}


def make_item(key: str, value: str) -> dict[str, Any]:
    return {"id": {"S": key}, "v": {"S": value}}


def writer_for(client: Any, *, concurrency: int = 4, sleeps: list[float] | None = None, **kwargs: Any) -> Any:
    outcomes: list[WriteOutcome] = []
    writer = BatchItemWriter(
        client=client,
        table=TABLE,
        concurrency=concurrency,
        on_outcome=outcomes.append,
        sleep=(sleeps.append if sleeps is not None else (lambda _s: None)),
        rng=random.Random(7),
        **kwargs,
    )
    writer.outcomes = outcomes  # type: ignore[attr-defined]
    return writer


def test_requests_hold_at_most_25_items():
    client = RecordingClient()
    with writer_for(client) as writer:
        for i in range(101):
            writer.put(f"k{i}", make_item(f"k{i}", "x"), 20, RowOrigin(i, []))
    assert [len(r) for r in client.requests] == [25, 25, 25, 25, 1]
    assert len(client.stored) == 101


def test_requests_stay_under_16_mb():
    client = RecordingClient()
    text = "\u00e9" * 150_000  # 300 KB in UTF-8, 900 KB as escaped JSON
    with writer_for(client, concurrency=1) as writer:
        for i in range(40):
            writer.put(f"k{i}", make_item(f"k{i}", text), 300_010, RowOrigin(i, []))
    bodies = [len(json.dumps({"RequestItems": {TABLE: r}}, separators=(",", ":"))) for r in client.requests]
    assert len(client.requests) > 2
    assert max(bodies) <= MAX_REQUEST_BYTES
    assert sum(len(r) for r in client.requests) == 40


def test_last_row_wins_with_many_requests_in_flight():
    client = RecordingClient(delay=0.002)
    expected: dict[str, str] = {}
    with writer_for(client, concurrency=8) as writer:
        for i in range(2000):
            key = f"k{random.Random(i).randrange(40)}"
            expected[key] = str(i)
            writer.put(key, make_item(key, str(i)), 20, RowOrigin(i, []))
    assert client.stored == expected
    assert client.overlaps == 0, "a key was sent while an earlier request holding it was in flight"


def test_unprocessed_items_are_retried_until_every_item_is_stored():
    client = RecordingClient(unprocessed_first=30)
    sleeps: list[float] = []
    with writer_for(client, concurrency=1, sleeps=sleeps, backoff_base=0.1, backoff_cap=1.0) as writer:
        for i in range(50):
            writer.put(f"k{i}", make_item(f"k{i}", "v"), 20, RowOrigin(i, []))
    assert len(client.stored) == 50
    assert len(sleeps) >= 2
    assert all(0.0 <= s <= 1.0 for s in sleeps)


class HighestDraw(random.Random):
    """A random source that always draws the top of the range asked for, and records the ranges."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return b


def test_backoff_bound_doubles_from_base_up_to_the_cap():
    base, cap = 0.05, 1.0
    rng = HighestDraw()
    delays = [backoff_seconds(attempt, base=base, cap=cap, rng=rng) for attempt in range(8)]
    expected = [min(cap, base * 2**attempt) for attempt in range(8)]
    assert delays == expected
    assert rng.ranges == [(0.0, bound) for bound in expected]
    assert expected.index(cap) > 2  # the bound doubled several times, then stayed at the cap


def test_backoff_jitter_spreads_over_the_whole_bound():
    base, cap, attempt = 0.05, 5.0, 3
    bound = base * 2**attempt
    rng = random.Random(20260101)
    draws = [backoff_seconds(attempt, base=base, cap=cap, rng=rng) for _ in range(2000)]
    assert all(0.0 <= d <= bound for d in draws)
    quarters = [sum(1 for d in draws if q * bound / 4 <= d < (q + 1) * bound / 4) for q in range(4)]
    # Full jitter: uniform over [0, bound], so every quarter of the range holds about a quarter of the draws.
    assert min(quarters) > len(draws) / 5
    assert min(draws) < bound / 20
    assert max(draws) > bound * 19 / 20


def test_the_writer_sleeps_a_growing_backoff_before_each_resend_of_unprocessed_items():
    events: list[tuple[str, Any]] = []

    class PartlyUnprocessed:
        """Leaves all but the first item of a request unprocessed, three times in a row."""

        def __init__(self) -> None:
            self.refusals_left = 3

        def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]], **_: Any) -> dict[str, Any]:  # noqa: N803
            requests = RequestItems[TABLE]
            events.append(("send", [r["PutRequest"]["Item"]["id"]["S"] for r in requests]))
            if self.refusals_left:
                self.refusals_left -= 1
                return {"UnprocessedItems": {TABLE: requests[1:]}}
            return {"UnprocessedItems": {}}

    base, cap = 0.05, 5.0
    writer = BatchItemWriter(
        client=PartlyUnprocessed(),
        table=TABLE,
        concurrency=1,
        on_outcome=lambda _outcome: None,
        backoff_base=base,
        backoff_cap=cap,
        sleep=lambda seconds: events.append(("sleep", seconds)),
        rng=HighestDraw(),
    )
    with writer:
        for i in range(5):
            writer.put(f"k{i}", make_item(f"k{i}", "v"), 20, RowOrigin(i, []))
    assert events == [
        ("send", ["k0", "k1", "k2", "k3", "k4"]),
        ("sleep", base),
        ("send", ["k1", "k2", "k3", "k4"]),
        ("sleep", base * 2),
        ("send", ["k2", "k3", "k4"]),
        ("sleep", base * 4),
        ("send", ["k3", "k4"]),
    ]


def test_items_still_unprocessed_after_the_retries_are_a_transient_failure():
    client = RecordingClient(unprocessed_first=10**6)
    writer = writer_for(client, concurrency=1, max_unprocessed_retries=3)
    writer.put("a", make_item("a", "v"), 20, RowOrigin(2, []))
    with pytest.raises(TransientFailure, match="1 items still unprocessed after 3 retries"):
        writer.close()
    assert len(client.requests) == 4


def _throttling_client(failures: int, max_attempts: int) -> tuple[Any, list[str]]:
    """A real botocore client whose HTTP layer answers ThrottlingException ``failures`` times, then 200."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"mode": "standard", "max_attempts": max_attempts}),
    )
    calls: list[str] = []

    def answer(request: Any, **_kwargs: Any) -> AWSResponse:
        calls.append(request.url)
        if len(calls) <= failures:
            body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}'
            return AWSResponse(request.url, 400, {"x-amzn-RequestId": "t"}, _Raw(body))
        return AWSResponse(request.url, 200, {"x-amzn-RequestId": "ok"}, _Raw(b'{"UnprocessedItems":{}}'))

    client.meta.events.register("before-send.dynamodb.BatchWriteItem", answer)
    client.meta.events.register("before-sleep", lambda **_kw: None)
    return client, calls


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self.body


def test_throttling_is_retried_by_botocore(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    client, calls = _throttling_client(failures=2, max_attempts=5)
    with writer_for(client, concurrency=1) as writer:
        writer.put("a", make_item("a", "v"), 20, RowOrigin(2, []))
    assert len(calls) == 3


def test_throttling_beyond_the_retries_is_transient(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    client, calls = _throttling_client(failures=1000, max_attempts=3)
    writer = writer_for(client, concurrency=1, max_unprocessed_retries=2)
    writer.put("a", make_item("a", "v"), 20, RowOrigin(2, []))
    with pytest.raises(TransientFailure, match="ThrottlingException after the client's retries and 2 more"):
        writer.close()
    # botocore's max_attempts counts retries after the first call; the writer sends the request 2 more times
    assert len(calls) == (1 + 3) * (1 + 2)


def test_items_dynamodb_refuses_are_reported_not_lost():
    class RefusingClient:
        def __init__(self) -> None:
            self.stored: dict[str, Any] = {}

        def batch_write_item(self, RequestItems: Any, **_: Any) -> Any:  # noqa: N803
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "too big"}}, "BatchWriteItem"
            )

        def put_item(self, TableName: str, Item: Any, **_: Any) -> Any:  # noqa: N803
            if Item["v"]["S"] == "bad":
                raise ClientError({"Error": {"Code": "ValidationException", "Message": "too big"}}, "PutItem")
            self.stored[Item["id"]["S"]] = Item
            return {}

    client = RefusingClient()
    writer = writer_for(client)
    for i, value in enumerate(["ok", "bad", "ok"]):
        writer.put(f"k{i}", make_item(f"k{i}", value), 20, RowOrigin(i + 2, ["k", value]))
    writer.close()
    refused = [pair for outcome in writer.outcomes for pair in outcome.refused]
    assert sorted(client.stored) == ["k0", "k2"]
    assert [(origin.line_number, reason) for origin, reason in refused] == [
        (3, "DynamoDB refused the item: too big")
    ]
