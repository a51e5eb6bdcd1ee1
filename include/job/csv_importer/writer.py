"""The BatchWriteItem pool: up to 25 items and 16 MB a request, several requests in flight, last row wins.

Ordering rule: a key is never put in a new request while an earlier request holding that key is still in
flight (the new request waits for it), and within one pending request a later row replaces an earlier one.
So the last row of a key is always the last write of that key, whatever the concurrency.

Retries: botocore's ``standard`` retry mode (set on the client) retries throttling and network errors;
``UnprocessedItems`` are re-sent by this module with exponential backoff and full jitter.

Write request units: every request asks for ``ReturnConsumedCapacity=INDEXES``, and each answer's table and
global secondary index units are added up (:class:`WriteUnits`). Each answer is also checked against the units
computed from the sizes of the items it processed (:func:`csv_importer.rows.write_request_units`): DynamoDB never
charges less (an overwrite costs the larger of the old and the new item), so an answer without ConsumedCapacity
or below that figure is not DynamoDB's (moto answers a fixed 1.0 a request), and the shard then records the
computed units instead. Items re-sent as ``UnprocessedItems`` count when a later request processes them; items
DynamoDB refuses count nothing.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from csv_importer.exit_codes import BadInput, TransientFailure
from csv_importer.manifest import WriteUnitsSource
from csv_importer.rows import write_request_units

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

log = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 25
MAX_REQUEST_BYTES = 16 * 1024 * 1024
REQUEST_ENVELOPE_BYTES = 64 * 1024  # headroom for the table name, JSON structure and PutRequest wrappers
EXACT_SIZE_FROM_BYTES = 20 * 1024  # below this an item's JSON cannot matter: 25 x 20 KB x 6 (escapes) < 16 MB
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


@dataclass(frozen=True)
class RowOrigin:
    """Where a queued item came from, kept only while its request is pending or in flight."""

    line_number: int
    fields: list[str]


@dataclass
class WriteOutcome:
    """What a finished request reports back: rows DynamoDB itself refused (line, fields, reason), and the write
    request units of the items it processed: computed from their sizes, and as DynamoDB reported them."""

    refused: list[tuple[RowOrigin, str]] = field(default_factory=list)
    computed_units: int = 0
    reported_units: float = 0.0
    reported_index_units: dict[str, float] = field(default_factory=dict)
    answers: int = 0  # BatchWriteItem and PutItem calls DynamoDB answered
    # Every answer carried ConsumedCapacity for the table, never below the computed units of what it processed.
    reported: bool = True


@dataclass
class WriteUnits:
    """A shard's write request units, added up over its requests' outcomes (on the writer's own thread)."""

    computed: int = 0
    reported: float = 0.0
    reported_index: dict[str, float] = field(default_factory=dict)
    answers: int = 0  # calls DynamoDB answered
    all_reported: bool = True

    def add(self, outcome: WriteOutcome) -> None:
        self.computed += outcome.computed_units
        self.reported += outcome.reported_units
        for index, units in outcome.reported_index_units.items():
            self.reported_index[index] = self.reported_index.get(index, 0.0) + units
        self.all_reported = self.all_reported and outcome.reported
        self.answers += outcome.answers

    @property
    def source(self) -> WriteUnitsSource:
        return "consumed_capacity" if self.all_reported and self.answers else "computed"

    @property
    def units(self) -> float | int:
        """DynamoDB's figure when every answer reported one, else the computed units."""
        return self.reported if self.source == "consumed_capacity" else self.computed

    @property
    def index_units(self) -> dict[str, float] | None:
        """Each global secondary index's units, known only from DynamoDB's answers."""
        return dict(self.reported_index) if self.source == "consumed_capacity" else None


def table_consumed_capacity(consumed: Any, table: str) -> tuple[float, dict[str, float]] | None:
    """The table's own units and each secondary index's (global or local, by name) from an answer's
    ``ConsumedCapacity`` (a list for BatchWriteItem, one entry for PutItem); None when it holds none for ``table``."""
    for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
        if entry.get("TableName") != table or "CapacityUnits" not in entry:
            continue
        indexes = {
            name: float(capacity.get("CapacityUnits", 0.0))
            for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
            for name, capacity in entry.get(kind, {}).items()
        }
        if "Table" in entry:
            return float(entry["Table"].get("CapacityUnits", 0.0)), indexes
        return float(entry["CapacityUnits"]) - sum(indexes.values()), indexes
    return None


def request_bytes(item: dict[str, dict[str, Any]], item_size: int) -> int:
    """Bytes an item adds to a BatchWriteItem request body (exact JSON length for large items)."""
    if item_size < EXACT_SIZE_FROM_BYTES:
        return item_size * 6 + 64
    return len(json.dumps(item, separators=(",", ":"))) + 32


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


class BatchItemWriter:
    """Queues items and writes them with ``concurrency`` BatchWriteItem requests in flight on ONE client.

    Use as a context manager or call :meth:`close`; :meth:`put` may block while the pool is full.
    """

    def __init__(
        self,
        *,
        client: DynamoDBClient,
        table: str,
        concurrency: int,
        on_outcome: Callable[[WriteOutcome], None],
        max_unprocessed_retries: int = 10,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._table = table
        self._concurrency = concurrency
        self._on_outcome = on_outcome
        self._max_unprocessed_retries = max_unprocessed_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batch-writer")
        self._pending: dict[str, tuple[dict[str, Any], RowOrigin, int, int]] = {}
        self._pending_bytes = 0
        self._in_flight: dict[Future[WriteOutcome], list[str]] = {}
        self._key_owner: dict[str, Future[WriteOutcome]] = {}
        self.requests_sent = 0
        self.units = WriteUnits()
        self._misreport_logged = False

    def __enter__(self) -> BatchItemWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        # The import failed (e.g. bad bytes mid-file): still write the valid rows queued before it.
        try:
            self.close()
        except Exception:
            log.exception("writing the rows queued before the failure also failed")
            self.abort()

    def put(self, key_text: str, item: dict[str, Any], item_size: int, origin: RowOrigin) -> None:
        """Queue one item; a later item with the same key replaces it if the request has not left yet."""
        weight = request_bytes(item, item_size)
        previous = self._pending.get(key_text)
        replaced = previous[2] if previous is not None else 0
        if (previous is None and len(self._pending) >= MAX_BATCH_ITEMS) or (
            self._pending_bytes - replaced + weight > MAX_REQUEST_BYTES - REQUEST_ENVELOPE_BYTES
        ):
            self._send_pending()
            previous = None
        if previous is not None:
            self._pending_bytes -= previous[2]
        self._pending[key_text] = ({"PutRequest": {"Item": item}}, origin, weight, item_size)
        self._pending_bytes += weight

    def flush(self) -> None:
        """Send what is queued and wait until every request has finished."""
        if self._pending:
            self._send_pending()
        while self._in_flight:
            self._harvest(wait(self._in_flight, return_when=FIRST_COMPLETED).done)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop after the requests already in flight (used when the import fails)."""
        self._pending.clear()
        for future in list(self._in_flight):
            future.cancel()
        self._pool.shutdown(wait=True)
        self._in_flight.clear()

    def _send_pending(self) -> None:
        batch = self._pending
        self._pending, self._pending_bytes = {}, 0
        self._harvest([f for f in self._in_flight if f.done()])
        blockers = {self._key_owner[key] for key in batch if key in self._key_owner}
        if blockers:
            wait(blockers)
            self._harvest(blockers)
        while len(self._in_flight) >= self._concurrency:
            self._harvest(wait(self._in_flight, return_when=FIRST_COMPLETED).done)
        keys = list(batch)
        future = self._pool.submit(
            self._write_request,
            [batch[k][0] for k in keys],
            [batch[k][1] for k in keys],
            [batch[k][3] for k in keys],
        )
        self.requests_sent += 1
        self._in_flight[future] = keys
        for key in keys:
            self._key_owner[key] = future

    def _harvest(self, done: Any) -> None:
        for future in list(done):
            keys = self._in_flight.pop(future, None)
            if keys is None:
                continue
            for key in keys:
                if self._key_owner.get(key) is future:
                    del self._key_owner[key]
            outcome = future.result()
            self.units.add(outcome)
            self._on_outcome(outcome)

    def _write_request(
        self, requests: list[dict[str, Any]], origins: list[RowOrigin], sizes: list[int]
    ) -> WriteOutcome:
        """Runs in a pool thread: one BatchWriteItem until nothing is unprocessed."""
        outcome = WriteOutcome()
        try:
            self._write_until_processed(requests, sizes, outcome)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ValidationException":
                return self._write_one_by_one(requests, origins, sizes, outcome)
            raise self._classify(error) from None
        return outcome

    def _count_units(self, outcome: WriteOutcome, consumed: Any, computed: int) -> None:
        """Add one answer's units: ``computed`` from the sizes of the items it processed, ``consumed`` as
        DynamoDB reported them (its ``ConsumedCapacity``)."""
        outcome.computed_units += computed
        outcome.answers += 1
        reported = table_consumed_capacity(consumed, self._table)
        if reported is None or reported[0] < computed:
            outcome.reported = False
            if not self._misreport_logged:
                self._misreport_logged = True  # once per shard; a lost race only logs it twice
                log.warning(
                    "DynamoDB answered ConsumedCapacity %s for items whose sizes make %s write request units; "
                    "recording the computed units",
                    consumed,
                    computed,
                )
            return
        table_units, index_units = reported
        outcome.reported_units += table_units
        for index, units in index_units.items():
            outcome.reported_index_units[index] = outcome.reported_index_units.get(index, 0.0) + units

    def _write_until_processed(
        self, requests: list[dict[str, Any]], sizes: list[int], outcome: WriteOutcome
    ) -> None:
        pending = requests
        pending_units = [write_request_units(size) for size in sizes]
        throttled = ""
        for attempt in range(self._max_unprocessed_retries + 1):
            try:
                response = self._client.batch_write_item(
                    RequestItems={self._table: pending}, ReturnConsumedCapacity="INDEXES"
                )
            except ClientError as error:
                # Throttling that outlived botocore's retries (its retry quota drains under sustained
                # throttling): back off and send the same items again rather than fail the import.
                throttled = error.response.get("Error", {}).get("Code", "")
                if throttled not in THROTTLING_CODES:
                    raise
            else:
                throttled = ""
                unprocessed = response.get("UnprocessedItems", {}).get(self._table, [])
                # A request never holds a key twice, so each unprocessed item equals exactly one sent.
                unprocessed_units = [pending_units[pending.index(request)] for request in unprocessed]
                self._count_units(
                    outcome, response.get("ConsumedCapacity"), sum(pending_units) - sum(unprocessed_units)
                )
                pending, pending_units = unprocessed, unprocessed_units
                if not pending:
                    return
            delay = backoff_seconds(attempt, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng)
            log.debug(
                "%s of %s items unprocessed (%s), retrying in %.3f s",
                len(pending),
                len(requests),
                throttled or "UnprocessedItems",
                delay,
            )
            self._sleep(delay)
        if throttled:
            raise TransientFailure(
                f"DynamoDB table {self._table!r}: {throttled} after the client's retries and "
                f"{self._max_unprocessed_retries} more"
            )
        raise TransientFailure(
            f"DynamoDB table {self._table!r}: {len(pending)} items still unprocessed after "
            f"{self._max_unprocessed_retries} retries"
        )

    def _write_one_by_one(
        self,
        requests: list[dict[str, Any]],
        origins: list[RowOrigin],
        sizes: list[int],
        outcome: WriteOutcome,
    ) -> WriteOutcome:
        """DynamoDB refused the whole request: put each item alone and report the ones it refuses.

        ``outcome`` keeps the units of items an earlier answer for this request already processed."""
        for request, origin, size in zip(requests, origins, sizes, strict=True):
            try:
                response = self._client.put_item(
                    TableName=self._table,
                    Item=request["PutRequest"]["Item"],
                    ReturnConsumedCapacity="INDEXES",
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ValidationException":
                    raise self._classify(error) from None
                outcome.refused.append(
                    (origin, f"DynamoDB refused the item: {error.response['Error']['Message']}")
                )
                continue
            self._count_units(outcome, response.get("ConsumedCapacity"), write_request_units(size))
        return outcome

    def _classify(self, error: ClientError) -> Exception:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            return BadInput(f"DynamoDB table {self._table!r} does not exist (any more)")
        if code in THROTTLING_CODES:
            return TransientFailure(f"DynamoDB table {self._table!r}: {code} after the client's retries")
        return error
