"""The S3 stream dropping mid-file: the job resumes from its byte offset with a ranged GET of the same ETag.

The drop is injected in the GetObject response body: after N bytes its read raises what botocore raises when
the connection breaks (``ResponseStreamingError`` around urllib3's ``ProtocolError``, or ``ReadTimeoutError``).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError, ResponseStreamingError
from urllib3.exceptions import ProtocolError, SSLError

from csv_importer.exit_codes import ObjectChanged, TransientFailure
from csv_importer.importer import run_import
from csv_importer.settings import ImportSettings
from tests.faults.conftest import BUCKET, TABLE, FaultWorld, csv_bytes

ROWS = [
    [f"row-{n:05d}", f"value {n} with, a comma", "line\nbreak" if n % 7 == 0 else ""] for n in range(3000)
]
BODY = csv_bytes([["id", "text", "note"], *ROWS])


def broken_connection() -> Exception:
    return ResponseStreamingError(error=ProtocolError("Connection broken: IncompleteRead"))


class DroppingBody:
    """A StreamingBody stand-in that hands on ``drop_after`` bytes of the real body, then raises ``error``."""

    def __init__(self, body: Any, drop_after: int, error: Exception) -> None:
        self._body = body
        self._left = drop_after
        self._error = error

    def iter_chunks(self, chunk_size: int) -> Any:
        while True:
            if self._left <= 0:
                raise self._error
            chunk = self._body.read(min(chunk_size, self._left))
            if not chunk:
                return
            self._left -= len(chunk)
            yield chunk


class DroppingS3:
    """An S3 client whose GetObject bodies drop at the given offsets (one per call, in order)."""

    def __init__(self, s3: Any, drops: list[tuple[int, Exception]], before_resume: Any = None) -> None:
        self._s3 = s3
        self._drops = list(drops)
        self._before_resume = before_resume
        self.get_calls: list[dict[str, Any]] = []

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.get_calls.append(kwargs)
        if "Range" in kwargs and self._before_resume is not None:
            self._before_resume()
        response = self._s3.get_object(**kwargs)
        if self._drops:
            drop_after, error = self._drops.pop(0)
            response["Body"] = DroppingBody(response["Body"], drop_after, error)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def test_a_dropped_stream_resumes_at_its_offset_and_imports_every_row_once(world: FaultWorld) -> None:
    import_id = world.land("incoming/drop.csv", BODY)
    etag = world.s3.head_object(Bucket=BUCKET, Key="incoming/drop.csv")["ETag"]
    first, second = len(BODY) // 3, len(BODY) // 4  # the second drop is inside the resumed stream
    s3 = DroppingS3(
        world.s3,
        [
            (first, broken_connection()),
            (second, ReadTimeoutError(endpoint_url="http://s3", error="Read timed out")),
        ],
    )
    _, dynamodb = world.job_clients()
    manifest = run_import(
        ImportSettings(bucket=BUCKET, key="incoming/drop.csv", table=TABLE), s3=s3, dynamodb=dynamodb
    )

    assert [call.get("Range") for call in s3.get_calls] == [
        None,
        f"bytes={first}-",
        f"bytes={first + second}-",
    ]
    assert all(call["IfMatch"] == etag for call in s3.get_calls[1:])
    items = world.table_items()
    assert sorted(items) == [row[0] for row in ROWS]
    assert all(items[row[0]]["text"]["S"] == row[1] for row in ROWS)
    assert all(items[row[0]].get("note", {}).get("S", "") == row[2] for row in ROWS)
    assert (manifest.status, manifest.rows_read, manifest.rows_imported, manifest.rows_rejected) == (
        "succeeded", len(ROWS), len(ROWS), 0,
    )  # fmt: skip
    result = world.verify("incoming/drop.csv", import_id)
    assert (result.expected, result.counted) == (len(ROWS), len(ROWS))


def test_a_tls_record_broken_mid_stream_resumes_too(world: FaultWorld) -> None:
    # botocore's StreamingBody wraps urllib3's ProtocolError and ReadTimeoutError but lets its SSLError through.
    world.land("incoming/tls.csv", BODY)
    drop = SSLError("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac")
    s3 = DroppingS3(world.s3, [(len(BODY) // 2, drop)])
    _, dynamodb = world.job_clients()
    manifest = run_import(
        ImportSettings(bucket=BUCKET, key="incoming/tls.csv", table=TABLE), s3=s3, dynamodb=dynamodb
    )
    assert [call.get("Range") for call in s3.get_calls] == [None, f"bytes={len(BODY) // 2}-"]
    assert (manifest.status, manifest.rows_read, manifest.rows_imported) == (
        "succeeded",
        len(ROWS),
        len(ROWS),
    )
    assert sorted(world.table_items()) == [row[0] for row in ROWS]


def test_a_dropped_gzip_stream_resumes_in_its_compressed_bytes(world: FaultWorld) -> None:
    compressed = gzip.compress(BODY)
    world.land("incoming/drop.csv.gz", compressed)
    s3 = DroppingS3(world.s3, [(len(compressed) // 2, broken_connection())])
    _, dynamodb = world.job_clients()
    manifest = run_import(
        ImportSettings(bucket=BUCKET, key="incoming/drop.csv.gz", table=TABLE), s3=s3, dynamodb=dynamodb
    )
    assert [call.get("Range") for call in s3.get_calls] == [None, f"bytes={len(compressed) // 2}-"]
    assert (manifest.rows_read, manifest.rows_imported) == (len(ROWS), len(ROWS))
    assert len(world.table_items()) == len(ROWS)


def test_an_object_replaced_before_the_resume_fails_as_object_changed_instead_of_mixing_versions(
    world: FaultWorld,
) -> None:
    world.land("incoming/replaced.csv", BODY)

    def replace() -> None:
        world.s3.put_object(Bucket=BUCKET, Key="incoming/replaced.csv", Body=csv_bytes([["id"], ["other"]]))

    s3 = DroppingS3(world.s3, [(len(BODY) // 2, broken_connection())], before_resume=replace)
    _, dynamodb = world.job_clients()
    # Not retried: this import id names the first version, which is gone; the next run imports the new one.
    with pytest.raises(
        ObjectChanged, match=r"s3://faults-landing/incoming/replaced.csv: object changed since it was listed"
    ):
        run_import(
            ImportSettings(bucket=BUCKET, key="incoming/replaced.csv", table=TABLE), s3=s3, dynamodb=dynamodb
        )
    # Only rows of the first version were written, and the failed manifest says how many.
    items = world.table_items()
    assert "other" not in items
    assert set(items) <= {row[0] for row in ROWS}
    (manifest_object,) = world.s3.list_objects_v2(Bucket=BUCKET, Prefix="manifests/")["Contents"]
    manifest = json.loads(world.s3.get_object(Bucket=BUCKET, Key=manifest_object["Key"])["Body"].read())
    assert manifest["status"] == "failed"
    assert "object changed since it was listed" in manifest["error"]
    assert manifest["rows_imported"] == manifest["distinct_keys"] == len(items)


def test_a_stream_that_keeps_dropping_without_progress_gives_up_retryably(
    world: FaultWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("csv_importer.reader.RESUME_BACKOFF_SECONDS", 0.0)
    world.land("incoming/flaky.csv", BODY)
    s3 = DroppingS3(world.s3, [(100, broken_connection())] + [(0, broken_connection())] * 10)
    _, dynamodb = world.job_clients()
    with pytest.raises(
        TransientFailure, match=r"incoming/flaky.csv: the object stream dropped 6 times at byte 100"
    ):
        run_import(
            ImportSettings(bucket=BUCKET, key="incoming/flaky.csv", table=TABLE), s3=s3, dynamodb=dynamodb
        )
    assert len(s3.get_calls) == 6
