"""Streaming the CSV object: S3 body in chunks -> gunzip -> incremental UTF-8 -> lines -> CSV records.

Nothing here holds more than one chunk (plus one partial line or record) of the object in memory.
A stream that drops mid-object is resumed from its byte offset with a ranged GET pinned to the first
response's ETag (``Range: bytes=<offset>-``, ``If-Match``), never started over.
"""

from __future__ import annotations

import codecs
import csv
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.compat import exceptions as http_exceptions
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from csv_importer.compression import GZIP_MAGIC, is_gzip
from csv_importer.exit_codes import BadInput, ObjectChanged, TransientFailure

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

CHUNK_BYTES = 1024 * 1024
MAX_INFLATED_CHUNK = 4 * CHUNK_BYTES
MAX_LINE_CHARS = 16 * 1024 * 1024
# A record may hold one whole 400 KB item, escaped; larger records are rejected by the item-size rule.
csv.field_size_limit(4 * 1024 * 1024)

_MISSING_OBJECT_CODES = {"NoSuchKey", "404", "NotFound"}
_CHANGED_OBJECT_CODES = {"PreconditionFailed", "412"}
# What a body read raises when the connection drops or stalls mid-object. botocore's StreamingBody wraps
# urllib3's ProtocolError (ResponseStreamingError) and ReadTimeoutError, and checks the length
# (IncompleteReadError); the rest of urllib3's errors pass through unwrapped, notably its SSLError (a TLS record
# broken mid-stream, "bad record mac"). botocore re-exports urllib3's exceptions module as botocore.compat's
# ``exceptions``; taking HTTPError, their base, from there keeps the job's imports to boto3/botocore.
STREAM_DROPS = (
    ResponseStreamingError,
    ReadTimeoutError,
    ConnectionClosedError,
    IncompleteReadError,
    http_exceptions.HTTPError,
)
MAX_RESUMES_WITHOUT_PROGRESS = 5
RESUME_BACKOFF_SECONDS = 0.5

log = logging.getLogger(__name__)


@dataclass
class ObjectSource:
    """One version of the object being imported: where it is, its ETag and size, and its bytes in chunks."""

    uri: str
    etag: str
    content_length: int
    chunks: Iterable[bytes]
    bytes_read: int = 0

    def iter_chunks(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.bytes_read += len(chunk)
            yield chunk


def _get_object_error(error: ClientError, uri: str, bucket: str) -> Exception:
    code = error.response.get("Error", {}).get("Code", "")
    if code == "NoSuchBucket":
        return BadInput(f"{uri}: bucket {bucket!r} does not exist")
    if code in _MISSING_OBJECT_CODES:
        return BadInput(f"{uri}: object does not exist")
    if code in {"AccessDenied", "403"}:
        return BadInput(f"{uri}: access denied reading the object")
    return TransientFailure(f"{uri}: GetObject failed: {code}: {error}")


def _object_changed(uri: str, etag: str) -> ObjectChanged:
    return ObjectChanged(
        f"{uri}: object changed since it was listed (its ETag is no longer {etag}); this import is not retried, "
        "the next run imports the new version under its own import id"
    )


def open_s3_object(
    s3: S3Client,
    bucket: str,
    key: str,
    *,
    expected_etag: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ObjectSource:
    """GetObject, streamed and resumable. Missing bucket or object -> :class:`BadInput` naming it.

    With ``expected_etag`` (the version the import id was derived from) the GET is made with ``If-Match``: an
    object replaced since it was listed is :class:`ObjectChanged`, and nothing of it is read.
    """
    uri = f"s3://{bucket}/{key}"
    pinned = {"IfMatch": expected_etag} if expected_etag else {}
    try:
        response = s3.get_object(Bucket=bucket, Key=key, **pinned)
    except ClientError as error:
        if expected_etag and error.response.get("Error", {}).get("Code", "") in _CHANGED_OBJECT_CODES:
            raise _object_changed(uri, expected_etag) from None
        raise _get_object_error(error, uri, bucket) from None
    etag = response.get("ETag", "")
    return ObjectSource(
        uri=uri,
        etag=etag,
        content_length=int(response.get("ContentLength", 0)),
        chunks=resumable_chunks(
            s3, bucket=bucket, key=key, etag=etag, first_body=response["Body"], sleep=sleep
        ),
    )


def resumable_chunks(
    s3: S3Client,
    *,
    bucket: str,
    key: str,
    etag: str,
    first_body: Any,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """The object's bytes in chunks; when the stream drops, GET ``bytes=<offset>-`` of the same ETag.

    Up to :data:`MAX_RESUMES_WITHOUT_PROGRESS` drops in a row without a new byte are resumed; then the
    drop is a :class:`TransientFailure`. The object replaced meanwhile (ETag differs) is
    :class:`ObjectChanged`: the next run imports the new version under its own import id.
    """
    uri = f"s3://{bucket}/{key}"
    body, offset, drops_in_a_row = first_body, 0, 0
    while True:
        try:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                if chunk:
                    offset += len(chunk)
                    drops_in_a_row = 0
                    yield chunk
            return
        except STREAM_DROPS as drop:
            drops_in_a_row += 1
            if drops_in_a_row > MAX_RESUMES_WITHOUT_PROGRESS:
                raise TransientFailure(
                    f"{uri}: the object stream dropped {drops_in_a_row} times at byte {offset} "
                    f"without progress ({type(drop).__name__}: {drop})"
                ) from None
            log.warning(
                "%s: stream dropped at byte %s (%s: %s); resuming with a ranged GET",
                uri,
                offset,
                type(drop).__name__,
                drop,
            )
            sleep(RESUME_BACKOFF_SECONDS * (drops_in_a_row - 1))
        body = _ranged_body(s3, bucket=bucket, key=key, etag=etag, offset=offset)
        if body is None:
            return


def _ranged_body(s3: S3Client, *, bucket: str, key: str, etag: str, offset: int) -> Any:
    """GetObject from ``offset`` to the end, only if the ETag is unchanged; None when nothing is left."""
    uri = f"s3://{bucket}/{key}"
    try:
        pinned = {"IfMatch": etag} if etag else {}
        response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-", **pinned)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _CHANGED_OBJECT_CODES:
            raise _object_changed(uri, etag) from None
        if code == "InvalidRange":  # the drop came after the last byte
            return None
        raise _get_object_error(error, uri, bucket) from None
    return response["Body"]


def _gunzip(chunks: Iterator[bytes], uri: str) -> Iterator[bytes]:
    """Inflate a gzip stream (several members allowed) in bounded pieces; truncation is an error."""
    inflater = zlib.decompressobj(wbits=31)
    member_started = False
    try:
        for chunk in chunks:
            data = chunk
            while data:
                member_started = True
                inflated = inflater.decompress(data, MAX_INFLATED_CHUNK)
                if inflated:
                    yield inflated
                data = inflater.unconsumed_tail
                if inflater.eof:
                    data = inflater.unused_data + data
                    inflater = zlib.decompressobj(wbits=31)
                    member_started = False
    except zlib.error as error:
        raise BadInput(f"{uri}: not a valid gzip stream ({error})") from None
    if member_started:
        raise BadInput(f"{uri}: gzip stream is truncated")


def _with_gzip_detection(source: ObjectSource) -> Iterator[bytes]:
    """The object's bytes, inflated when :func:`csv_importer.compression.is_gzip` says so."""
    chunks = source.iter_chunks()
    first = b""
    for first in chunks:
        if first:
            break
    if not first:
        return iter(())
    while len(first) < len(GZIP_MAGIC):  # a chunk of one byte: look at one more before deciding
        following = next(chunks, b"")
        if not following:
            break
        first += following

    def replay() -> Iterator[bytes]:
        yield first
        yield from chunks

    if is_gzip(first, source.uri):
        return _gunzip(replay(), source.uri)
    return replay()


def iter_lines(source: ObjectSource) -> Iterator[str]:
    """Yield the object's text lines (inflated first if it is gzip), each ending in ``\\n`` (the last one may
    not), BOM stripped.

    Only ``\\n`` ends a line here (``\\r\\n`` keeps its ``\\r`` for the csv module): other Unicode line
    breaks inside fields stay data. Invalid UTF-8 raises :class:`BadInput` naming the line.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    newlines_before = 0
    pending = ""
    first = True
    for chunk in _with_gzip_detection(source):
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as error:
            # Hand on the complete lines before the bad bytes, then stop naming the line.
            valid = bytes(error.object[: error.start]).decode("utf-8")
            if first and valid.startswith("\ufeff"):
                valid = valid[1:]
            lines = (pending + valid).split("\n")
            for line in lines[:-1]:
                yield line + "\n"
            line_number = newlines_before + len(lines)
            raise BadInput(f"{source.uri}: line {line_number} is not valid UTF-8 ({error.reason})") from None
        if first and text:
            first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if not text:
            continue
        lines = (pending + text).split("\n")
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
        newlines_before += len(lines)
        if len(pending) > MAX_LINE_CHARS:
            raise BadInput(
                f"{source.uri}: line {newlines_before + 1} is longer than {MAX_LINE_CHARS} characters "
                "(no row can be that large); is this a CSV file?"
            )
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise BadInput(
            f"{source.uri}: line {newlines_before + 1} is not valid UTF-8 ({error.reason})"
        ) from None
    if pending:
        yield pending


class RecordError(Exception):
    """A record the csv module could not parse (e.g. a field over the size limit), with the fields it did read
    when there are any (a quote never closed: the record up to the end of the object), for the rejected rows."""

    def __init__(self, line_number: int, reason: str, fields: list[str] | None = None) -> None:
        super().__init__(reason)
        self.line_number = line_number
        self.reason = reason
        self.fields = fields


def iter_records(lines: Iterable[str]) -> Iterator[tuple[int, list[str]] | RecordError]:
    """RFC 4180 records with their starting line number; blank lines are skipped.

    A record the parser refuses is yielded as a :class:`RecordError` (the caller rejects it) and parsing
    continues with the next line. So is a record whose quoted field is still open at the end of the
    object: the lenient parser would hand it on with every later line swallowed into that field.
    """
    ended = False

    def tracked() -> Iterator[str]:
        nonlocal ended
        yield from lines
        ended = True  # the parser asked for a line after the last one

    reader = csv.reader(tracked(), strict=False)
    last_line = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield RecordError(last_line + 1, f"unparseable CSV record: {error}")
            last_line = reader.line_num
            continue
        start = last_line + 1
        last_line = reader.line_num
        if ended and fields:
            yield RecordError(
                start,
                f"quoted field opened on line {start} is not closed before the end of the file",
                fields,
            )
            return
        if fields:
            yield start, fields
