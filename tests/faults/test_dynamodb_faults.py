"""DynamoDB refusing work: throttling at the HTTP layer, UnprocessedItems, throttling that outlives botocore's
retries, and an item DynamoDB refuses although the job's own size check accepted it.

Faults sit in front of a real (moto) DynamoDB, so the items that get through really land; the DAG's
verification then judges the table against the manifest.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from csv_importer.importer import run_import
from csv_importer.settings import ImportSettings
from tests.faults.conftest import BUCKET, TABLE, FaultWorld, csv_bytes

THROTTLE_CODES = ("ProvisionedThroughputExceededException", "ThrottlingException")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self.body


class HttpThrottler:
    """A before-send handler answering a share of BatchWriteItem sends with a throttling error (HTTP 400).

    It runs before moto's own handler, so botocore's retry mode sees a real throttling response; at most
    ``max_in_a_row`` sends in a row are throttled, so botocore's retries always get through eventually.
    """

    def __init__(self, share: float, *, max_in_a_row: int = 2, seed: int = 11) -> None:
        self._share = share
        self._max_in_a_row = max_in_a_row
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._in_a_row = 0
        self.throttled = 0
        self.sends = 0

    def __call__(self, request: Any, **_kwargs: Any) -> AWSResponse | None:
        with self._lock:
            self.sends += 1
            if self._in_a_row >= self._max_in_a_row or self._rng.random() >= self._share:
                self._in_a_row = 0
                return None
            self._in_a_row += 1
            code = THROTTLE_CODES[self.throttled % 2]
            self.throttled += 1
        body = f'{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}'.encode()
        return AWSResponse(request.url, 400, {"x-amzn-RequestId": "injected"}, _Raw(body))


class FaultyDynamoDB:
    """A DynamoDB client wrapper: on a share of BatchWriteItem calls, only some items go to the real table
    and the rest come back as UnprocessedItems; on another share the call raises a throttling ClientError
    as botocore does once its retries (or its retry quota) are spent."""

    def __init__(self, client: Any, *, unprocessed_share: float, raise_share: float, seed: int = 5) -> None:
        self._client = client
        self._unprocessed_share = unprocessed_share
        self._raise_share = raise_share
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0
        self.partial_calls = 0
        self.raised = 0
        self._faults: dict[str, int] = {}

    def batch_write_item(self, *, RequestItems: dict[str, list[Any]], **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        ((table, requests),) = RequestItems.items()
        keys = [request["PutRequest"]["Item"]["id"]["S"] for request in requests]
        with self._lock:
            self.calls += 1
            draw = self._rng.random()
            held_share = self._rng.uniform(0.3, 1.0)
            # At most 3 faults in a row for any item, so the writer's 10 retries always get it through.
            if any(self._faults.get(key, 0) >= 3 for key in keys):
                draw = 1.0
            elif draw < self._raise_share + self._unprocessed_share:
                for key in keys:
                    self._faults[key] = self._faults.get(key, 0) + 1
        if draw < self._raise_share:
            with self._lock:
                self.raised += 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}
            raise ClientError(error, "BatchWriteItem")
        if draw < self._raise_share + self._unprocessed_share:
            ((table, requests),) = RequestItems.items()
            held = max(1, int(len(requests) * held_share))
            sent, unprocessed = requests[: len(requests) - held], requests[len(requests) - held :]
            with self._lock:
                self.partial_calls += 1
            response = {"UnprocessedItems": {}}
            if sent:
                response = self._client.batch_write_item(RequestItems={table: sent}, **kwargs)
            merged = list(response.get("UnprocessedItems", {}).get(table, [])) + unprocessed
            return {**response, "UnprocessedItems": {table: merged}}
        return self._client.batch_write_item(RequestItems=RequestItems, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _rows(count: int, duplicate_every: int = 0) -> list[list[str]]:
    rows = [[f"k{n:05d}", str(n)] for n in range(count)]
    if duplicate_every:
        rows += [[f"k{n:05d}", f"last {n}"] for n in range(0, count, duplicate_every)]
    return rows


def _assert_exact(world: FaultWorld, key: str, import_id: str, rows: list[list[str]], manifest: Any) -> None:
    expected = {row[0]: row[1] for row in rows}  # the last row of a key wins
    items = world.table_items()
    assert {k: item["amount"]["S"] for k, item in items.items()} == expected
    assert all(item["importId"]["S"] == import_id for item in items.values())
    assert (manifest.status, manifest.rows_read, manifest.rows_imported, manifest.rows_rejected) == (
        "succeeded", len(rows), len(rows), 0,
    )  # fmt: skip
    assert manifest.duplicate_keys == len(rows) - len(expected)
    assert manifest.distinct_keys == len(expected)
    # Every row is one write of an item under 1 KB (a key's duplicate comes hundreds of rows later, in another
    # request), so one unit a row: items left unprocessed count once, when a later request writes them.
    assert (manifest.write_request_units_source, manifest.write_request_units) == (
        "consumed_capacity",
        len(rows),
    )
    result = world.verify(key, import_id)
    assert (result.expected, result.counted, result.unaccounted_keys) == (len(expected), len(expected), [])


def test_http_throttling_and_partial_unprocessed_items_lose_and_duplicate_nothing(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff._BASE", 0.02)  # keep the test fast
    rows = _rows(600, duplicate_every=7)
    import_id = world.land("incoming/throttled.csv", csv_bytes([["id", "amount"], *rows]))
    _, dynamodb = world.job_clients()
    throttler = HttpThrottler(share=0.4)
    dynamodb.meta.events.register_first("before-send.dynamodb.BatchWriteItem", throttler)
    faulty = FaultyDynamoDB(dynamodb, unprocessed_share=0.5, raise_share=0.0)

    manifest = run_import(
        ImportSettings(bucket=BUCKET, key="incoming/throttled.csv", table=TABLE, writer_concurrency=4),
        s3=world.s3,
        dynamodb=faulty,
    )

    assert throttler.throttled >= throttler.sends // 5, "the fault was not injected on a large share"
    assert faulty.partial_calls >= faulty.calls // 4
    _assert_exact(world, "incoming/throttled.csv", import_id, rows, manifest)


def test_throttling_that_outlives_botocores_retries_is_retried_by_the_writer(world: FaultWorld) -> None:
    rows = _rows(500, duplicate_every=5)
    import_id = world.land("incoming/quota.csv", csv_bytes([["id", "amount"], *rows]))
    _, dynamodb = world.job_clients()
    faulty = FaultyDynamoDB(dynamodb, unprocessed_share=0.3, raise_share=0.4)

    manifest = run_import(
        ImportSettings(bucket=BUCKET, key="incoming/quota.csv", table=TABLE, writer_concurrency=4),
        s3=world.s3,
        dynamodb=faulty,
    )

    assert faulty.raised >= faulty.calls // 5
    _assert_exact(world, "incoming/quota.csv", import_id, rows, manifest)


def test_an_item_dynamodb_refuses_is_not_counted_as_a_distinct_key(world: FaultWorld) -> None:
    # moto refuses items from 405,000 bytes; the job's own check allows up to 409,600 (DynamoDB's 400 KB).
    near_limit = "y" * 406_000
    filler = [[f"f{n:02d}", "ok"] for n in range(30)]  # more than one request's 25 items
    rows = [
        ["a", "ok"],
        ["b", near_limit],  # line 3: refused, and no other row of b: b is not in the table
        ["d", "first"],  # line 4: written in the first request
        *filler,
        ["d", near_limit],  # line 35: refused in a later request; d still holds line 4's item
        ["e", near_limit],  # line 36: replaced in its pending request by line 37 (the last row wins)
        ["e", "last"],
    ]
    body = csv_bytes([["id", "amount"], *rows])
    import_id = world.land("incoming/near-limit.csv", body)
    manifest = run_import(
        ImportSettings(
            bucket=BUCKET,
            key="incoming/near-limit.csv",
            table=TABLE,
            max_reject_ratio=1.0,
            writer_concurrency=1,
        ),
        s3=world.s3,
        dynamodb=world.dynamodb,
    )
    items = world.table_items()
    rejected = world.rejected(manifest)
    assert sorted(int(row["line_number"]) for row in rejected) == [3, 35]
    assert all(row["reason"].startswith("DynamoDB refused the item:") for row in rejected)
    assert sorted(items) == sorted(["a", "d", "e", *(row[0] for row in filler)])
    assert items["d"]["amount"]["S"] == "first"
    assert (manifest.rows_read, manifest.rows_imported, manifest.rows_rejected) == (
        len(rows),
        len(rows) - 2,
        2,
    )
    assert manifest.distinct_keys == len(items)
    # Each item that landed was written once (each under 1 KB: one unit); the refused ones cost nothing. Both
    # requests were refused whole and written item by item, and moto's 1.0 a PutItem is then the true figure.
    assert (manifest.write_request_units_source, manifest.write_request_units) == (
        "consumed_capacity",
        len(items),
    )
    result = world.verify("incoming/near-limit.csv", import_id)
    assert (result.expected, result.counted) == (len(items), len(items))
