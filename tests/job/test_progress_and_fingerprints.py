"""Progress lines while the job waits, the duplicate-key fingerprints' memory, and the counts when DynamoDB
itself refuses items of duplicated keys.

Imports run in-process against moto; the stand-ins below only hold a request or a chunk back until the
progress lines the test waits for have been logged, then pass everything to moto.
"""

from __future__ import annotations

import inspect
import logging
import random
import re
import sys
import threading
from array import array
from collections.abc import Iterator
from typing import Any

import pytest

from csv_importer.fingerprints import KeyFingerprints
from csv_importer.importer import run_import
from csv_importer.progress import PROGRESS_INTERVAL_SECONDS
from csv_importer.reader import ObjectSource
from csv_importer.settings import ImportSettings
from tests.job.conftest import BUCKET, TABLE, ImportRunner, csv_text, items_by_id, put_object, rejected_rows

PROGRESS_LINE = re.compile(
    r"progress (?P<uri>\S+): (?P<rows>\d+) rows read, (?P<rate>\d+) rows/s, "
    r"(?P<percent>\d+\.\d)% of (?P<total>\d+) bytes$"
)
SHORT_INTERVAL = 0.02
HANG_GUARD_SECONDS = 120  # only ends a test that would otherwise wait forever; never a speed limit


class ProgressLines(logging.Handler):
    """Collects the job's progress lines; :meth:`wait_for` blocks until there are ``count`` of them."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("progress "):
            with self._changed:
                self.lines.append(message)
                self._changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.lines) >= count, timeout=HANG_GUARD_SECONDS)


@pytest.fixture
def progress_lines() -> Iterator[ProgressLines]:
    handler = ProgressLines()
    logger = logging.getLogger("csv_importer.progress")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous_level)


class StallingDynamoDB:
    """The moto client, except that the first BatchWriteItem waits until ``lines`` more progress lines were
    logged (as a request does while DynamoDB throttles or answers slowly)."""

    def __init__(self, client: Any, progress: ProgressLines, lines: int) -> None:
        self._client = client
        self._progress = progress
        self._lines = lines
        self._stalled = threading.Event()
        self.lines_while_stalled: list[str] = []

    def batch_write_item(self, **kwargs: Any) -> Any:
        if not self._stalled.is_set():
            self._stalled.set()
            before = len(self._progress.lines)
            self._progress.wait_for(before + self._lines)
            self.lines_while_stalled = self._progress.lines[before:]
        return self._client.batch_write_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _assert_progress_line(line: str, *, uri: str, total_bytes: int) -> re.Match[str]:
    match = PROGRESS_LINE.match(line)
    assert match, line
    assert match["uri"] == uri
    assert int(match["total"]) == total_bytes
    assert 0.0 <= float(match["percent"]) <= 100.0
    return match


def test_progress_lines_keep_coming_while_a_dynamodb_request_is_stalled(
    s3: Any, dynamodb: Any, table: str, progress_lines: ProgressLines
) -> None:
    rows = [[f"k{n:03d}", "v"] for n in range(120)]
    body = csv_text([["id", "v"], *rows])
    put_object(s3, "stalled-writes.csv", body)
    stalling = StallingDynamoDB(dynamodb, progress_lines, lines=3)

    manifest = run_import(
        ImportSettings(bucket=BUCKET, key="stalled-writes.csv", table=TABLE, writer_concurrency=1),
        s3=s3,
        dynamodb=stalling,
        progress_interval=SHORT_INTERVAL,
    )

    assert len(stalling.lines_while_stalled) >= 3
    for line in stalling.lines_while_stalled:
        match = _assert_progress_line(
            line, uri=f"s3://{BUCKET}/stalled-writes.csv", total_bytes=len(body.encode())
        )
        assert 0 < int(match["rows"]) <= len(rows)  # the first request left after its 25 rows were read
    assert manifest.rows_imported == len(rows)
    assert len(items_by_id(dynamodb)) == len(rows)
    assert not [t for t in threading.enumerate() if t.name == "progress"]  # the ticker was stopped


def test_progress_lines_keep_coming_while_the_s3_stream_stalls(
    s3: Any, dynamodb: Any, table: str, progress_lines: ProgressLines, caplog: pytest.LogCaptureFixture
) -> None:
    first = csv_text([["id", "v"]] + [[f"a{n}", "v"] for n in range(10)]).encode()
    rest = csv_text([[f"b{n}", "v"] for n in range(30)]).encode()
    total = len(first) + len(rest)
    lines_while_stalled: list[str] = []

    def chunks() -> Iterator[bytes]:
        yield first
        before = len(progress_lines.lines)
        progress_lines.wait_for(before + 3)
        lines_while_stalled.extend(progress_lines.lines[before:])
        yield rest

    def open_source() -> ObjectSource:
        return ObjectSource(
            uri=f"s3://{BUCKET}/stalled.csv", etag='"e"', content_length=total, chunks=chunks()
        )

    with caplog.at_level(logging.INFO, logger="csv_importer"):
        manifest = run_import(
            ImportSettings(bucket=BUCKET, key="stalled.csv", table=TABLE),
            s3=s3,
            dynamodb=dynamodb,
            open_source=open_source,
            progress_interval=SHORT_INTERVAL,
        )

    assert len(lines_while_stalled) >= 3
    for line in lines_while_stalled:
        match = _assert_progress_line(line, uri=f"s3://{BUCKET}/stalled.csv", total_bytes=total)
        assert float(match["percent"]) == round(100.0 * len(first) / total, 1)
        assert int(match["rows"]) <= 10
    assert manifest.rows_read == 40
    messages = [r.getMessage() for r in caplog.records if r.name == "csv_importer.progress"]
    assert messages[-1].startswith(f"summary s3://{BUCKET}/stalled.csv: status=succeeded rows_read=40 ")


def test_progress_interval_defaults_to_10_seconds() -> None:
    assert PROGRESS_INTERVAL_SECONDS == 10.0
    assert inspect.signature(run_import).parameters["progress_interval"].default == PROGRESS_INTERVAL_SECONDS


def _storage_bytes(fingerprints: KeyFingerprints) -> int:
    """What the interpreter allocated for the arrays the table holds (their buffers, without object headers)."""
    return sum(
        sys.getsizeof(value) - sys.getsizeof(array(value.typecode))
        for value in vars(fingerprints).values()
        if isinstance(value, array)
    )


def test_fingerprints_hold_at_most_16_bytes_a_distinct_key_at_every_size() -> None:
    fingerprints = KeyFingerprints()
    assert _storage_bytes(fingerprints) == 0
    rng = random.Random(7)
    growths = []
    storage = 0
    keys = 300_000  # past the sizes where a table kept at most half full held 32 bytes a key (32K-262K)
    for distinct in range(1, keys + 1):
        assert fingerprints.add(rng.getrandbits(64) | 1)
        now = _storage_bytes(fingerprints)
        if now != storage:
            growths.append(distinct)
            storage = now
        assert storage <= 16 * distinct, (distinct, storage)  # right after a growth too
    assert fingerprints.distinct == keys
    assert storage >= 8 * keys  # the 8-byte fingerprints really are in the measured storage
    assert len(growths) > 20
    assert growths[-1] > 2**17


def test_fingerprints_count_exactly_what_a_set_counts_within_one_shard() -> None:
    # One shard's hashes share their low bits (hash % shard_count == shard_index); 0 and 1 are one fingerprint.
    rng = random.Random(3)
    pool = [h for h in (rng.getrandbits(64) for _ in range(80_000)) if h % 4 == 2][:20_000]
    fingerprints, seen = KeyFingerprints(), set()
    for key_hash in rng.choices(pool, k=60_000):
        assert fingerprints.add(key_hash) == (key_hash not in seen)
        seen.add(key_hash)
    assert fingerprints.distinct == len(seen)


# moto refuses items from 405,000 bytes; the job's own size check allows up to 409,600 (DynamoDB's 400 KB).
NEAR_LIMIT = "y" * 406_000


def test_counts_stay_consistent_when_dynamodb_refuses_rows_of_duplicated_keys(
    s3: Any, dynamodb: Any, table: str, run: ImportRunner
) -> None:
    fillers = [[f"g{n:02d}", "ok"] for n in range(30)]  # more than a request's 25 items apart
    rows = [
        ["a", "ok"],
        ["b", NEAR_LIMIT],  # refused, b's only row
        ["c", NEAR_LIMIT],  # refused, c's first row; c's later row is written
        ["d", "first"],  # written; d's later row is refused
        ["e", NEAR_LIMIT],  # refused, and so is e's later row
        ["f", "one"],
        *fillers,
        ["c", "last"],
        ["d", NEAR_LIMIT],
        ["e", NEAR_LIMIT],
        ["f", "two"],  # a plain duplicate
    ]
    put_object(s3, "refused-duplicates.csv", csv_text([["id", "v"], *rows]))

    manifest = run("refused-duplicates.csv", max_reject_ratio=1.0, writer_concurrency=1)

    written = [row for row in rows if row[1] != NEAR_LIMIT]
    imported_per_key: dict[str, int] = {}
    for key, _ in written:
        imported_per_key[key] = imported_per_key.get(key, 0) + 1
    items = items_by_id(dynamodb)
    assert sorted(items) == sorted(imported_per_key)
    assert items["c"]["v"] == {"S": "last"}
    assert items["d"]["v"] == {"S": "first"}
    rejected = rejected_rows(s3, manifest)
    assert len(rejected) == len(rows) - len(written)
    assert all(row["reason"].startswith("DynamoDB refused the item:") for row in rejected)
    assert manifest.rows_imported == len(written)
    assert manifest.distinct_keys == len(items)
    assert manifest.duplicate_keys == sum(count - 1 for count in imported_per_key.values())
    assert manifest.rows_imported == manifest.distinct_keys + manifest.duplicate_keys
