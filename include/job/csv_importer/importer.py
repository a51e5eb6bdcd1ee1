"""One shard of one import, end to end: key schema -> object stream -> rows -> writer -> rejected rows -> manifest."""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from csv_importer.exit_codes import BadInput, JobFailure
from csv_importer.fingerprints import KeyFingerprints
from csv_importer.import_id import derive_import_id
from csv_importer.manifest import (
    REJECTED_COLUMNS,
    ImportManifest,
    Status,
    manifest_key,
    rejected_key,
    write_manifest,
)
from csv_importer.progress import PROGRESS_INTERVAL_SECONDS, ProgressLog
from csv_importer.reader import ObjectSource, RecordError, iter_lines, iter_records, open_s3_object
from csv_importer.rows import (
    KeySchema,
    RowConverter,
    RowRejected,
    describe_key_schema,
    lineage_stamps,
)
from csv_importer.settings import ImportSettings
from csv_importer.writer import BatchItemWriter, RowOrigin, WriteOutcome, WriteUnits

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
else:
    DynamoDBClient = S3Client = Any

log = logging.getLogger(__name__)

SPOOL_REJECTED_BYTES = 8 * 1024 * 1024


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class RejectedRows:
    """The rejected-rows CSV, spooled to a temporary file (memory up to 8 MB) and uploaded at the end."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_REJECTED_BYTES, mode="w+b")  # noqa: SIM115
        self._text = io.TextIOWrapper(self._file, encoding="utf-8", newline="")
        self._writer = csv.writer(self._text)
        self._writer.writerow(REJECTED_COLUMNS)
        self._raw = io.StringIO()
        self._raw_writer = csv.writer(self._raw, lineterminator="")

    def add(self, line_number: int, reason: str, fields: list[str] | None) -> None:
        raw_row = ""
        if fields is not None:
            self._raw.seek(0)
            self._raw.truncate()
            self._raw_writer.writerow(fields)
            raw_row = self._raw.getvalue()
        self._writer.writerow((line_number, reason, raw_row))

    def upload(self, s3: S3Client, bucket: str, key: str) -> None:
        self._text.flush()
        self._file.seek(0)
        s3.upload_fileobj(self._file, bucket, key, ExtraArgs={"ContentType": "text/csv"})

    def close(self) -> None:
        self._text.close()


@dataclass
class RefusedKey:
    """A key of rows DynamoDB itself refused: its key attributes (for GetItem) and how many of its rows."""

    key: dict[str, Any]
    rows: int = 0


@dataclass
class ImportCounts:
    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    duplicate_keys: int = 0
    distinct_keys: int = 0


class ShardImport:
    """State of one shard's run; :func:`run_import` is the entry point."""

    def __init__(
        self,
        settings: ImportSettings,
        *,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        source: ObjectSource,
        import_id: str,
        started_at: datetime,
        progress_interval: float,
    ) -> None:
        self.settings = settings
        self.s3 = s3
        self.dynamodb = dynamodb
        self.source = source
        self.import_id = import_id
        self.started_at = started_at
        self.counts = ImportCounts()
        self.rejected = RejectedRows()
        self.progress = ProgressLog(
            uri=source.uri,
            total_bytes=source.content_length,
            rows_read=lambda: self.counts.rows_read,
            bytes_read=lambda: source.bytes_read,
            interval=progress_interval,
        )
        self.converter: RowConverter | None = None
        # Keys of rows DynamoDB itself refused (rare: items at its size limit), by canonical key text.
        self.refused_keys: dict[str, RefusedKey] = {}
        self.write_units = WriteUnits()  # the writer's, once it exists

    def reject(self, line_number: int, reason: str, fields: list[str] | None) -> None:
        self.counts.rows_rejected += 1
        self.rejected.add(line_number, reason, fields)

    def on_outcome(self, outcome: WriteOutcome) -> None:
        for origin, reason in outcome.refused:
            self.counts.rows_imported -= 1
            self.reject(origin.line_number, reason, origin.fields)
            if self.converter is not None:
                key_text, _ = self.converter.key_of(origin.fields)
                refused = self.refused_keys.get(key_text)
                if refused is None:
                    item, _ = self.converter.convert(origin.fields)
                    refused = self.refused_keys[key_text] = RefusedKey(
                        {key.name: item[key.name] for key in self.converter.key_attributes}
                    )
                refused.rows += 1

    def settle_refused_keys(self) -> None:
        """Correct ``distinct_keys`` and ``duplicate_keys`` for the keys of rows DynamoDB itself refused.

        Both are counted as rows are queued, before DynamoDB's verdict: a key's first row counts in
        ``distinct_keys``, each later row in ``duplicate_keys``. Per refused key, a consistent GetItem reads
        back whether the table holds an item of this import (from another row):

        - if not, the key leaves ``distinct_keys`` (the manifest's count is the table's truth, so verification
          never fails on it), and of its ``r`` refused rows ``r - 1`` leave ``duplicate_keys`` (one of them was
          counted as the key's first row);
        - if so, the key stays in ``distinct_keys`` and all ``r`` refused rows leave ``duplicate_keys``.

        So ``rows_imported = distinct_keys + duplicate_keys`` holds as it does without refusals.
        """
        for refused in self.refused_keys.values():
            try:
                response = self.dynamodb.get_item(
                    TableName=self.settings.table,
                    Key=refused.key,
                    ConsistentRead=True,
                    ProjectionExpression="importId",
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ValidationException":
                    raise
                response = {}  # a key DynamoDB cannot even look up holds no item
            if response.get("Item", {}).get("importId", {}).get("S") == self.import_id:
                self.counts.duplicate_keys -= refused.rows
            else:
                self.counts.distinct_keys -= 1
                self.counts.duplicate_keys -= refused.rows - 1

    def import_rows(self, key_schema: KeySchema) -> None:
        settings, counts = self.settings, self.counts
        records = iter_records(iter_lines(self.source))
        header = next(records, None)
        if header is None:
            raise BadInput(f"{self.source.uri}: object is empty (no header row)")
        if isinstance(header, RecordError):
            raise BadInput(f"{self.source.uri}: header row cannot be parsed: {header.reason}")
        converter = RowConverter(
            header=header[1],
            key_schema=key_schema,
            column_types=settings.column_types,
            stamps=lineage_stamps(
                settings.lineage,
                import_id=self.import_id,
                source_uri=settings.source_uri,
                imported_at=iso_utc(self.started_at),
            ),
            source_uri=settings.source_uri,
            table=settings.table,
            empty_cells=settings.empty_cells,
        )
        self.converter = converter
        shard_count, shard_index = settings.shard_count, settings.shard_index
        seen_keys = KeyFingerprints()
        try:
            with BatchItemWriter(
                client=self.dynamodb,
                table=settings.table,
                concurrency=settings.writer_concurrency,
                on_outcome=self.on_outcome,
            ) as writer:
                self.write_units = writer.units
                for ordinal, record in enumerate(records):
                    if isinstance(record, RecordError):
                        if ordinal % shard_count == shard_index:
                            counts.rows_read += 1
                            self.reject(record.line_number, record.reason, record.fields)
                        continue
                    line_number, fields = record
                    try:
                        key_text, key_hash = converter.key_of(fields)
                    except RowRejected as rejection:
                        if ordinal % shard_count == shard_index:
                            counts.rows_read += 1
                            self.reject(line_number, str(rejection), fields)
                        continue
                    if key_hash % shard_count != shard_index:
                        continue
                    counts.rows_read += 1
                    try:
                        item, size = converter.convert(fields)
                    except RowRejected as rejection:
                        self.reject(line_number, str(rejection), fields)
                        continue
                    if not seen_keys.add(key_hash):
                        counts.duplicate_keys += 1
                    counts.rows_imported += 1
                    writer.put(key_text, item, size, RowOrigin(line_number, fields))
        finally:
            # Also when the import fails: the rows queued before the failure are written by then.
            counts.distinct_keys = seen_keys.distinct
        self.settle_refused_keys()

    def finish(self, failure: str | None) -> ImportManifest:
        """Upload the rejected rows, then the manifest (the manifest is the last thing written)."""
        settings, counts = self.settings, self.counts
        status: Status = "failed" if failure else "succeeded"
        error = failure
        if failure is None and reject_ratio_exceeded(counts, settings.max_reject_ratio):
            status = "reject_ratio_exceeded"
            error = (
                f"{counts.rows_rejected} of {counts.rows_read} rows rejected, over max_reject_ratio "
                f"{settings.max_reject_ratio}"
            )
        rejected_at = rejected_key(
            settings.rejected_prefix, self.import_id, settings.shard_index, settings.shard_count
        )
        self.rejected.upload(self.s3, settings.bucket, rejected_at)
        self.rejected.close()
        manifest = ImportManifest(
            import_id=self.import_id,
            bucket=settings.bucket,
            key=settings.key,
            etag=self.source.etag,
            table=settings.table,
            shard_index=settings.shard_index,
            shard_count=settings.shard_count,
            rows_read=counts.rows_read,
            rows_imported=counts.rows_imported,
            rows_rejected=counts.rows_rejected,
            duplicate_keys=counts.duplicate_keys,
            distinct_keys=counts.distinct_keys,
            rejected_key=rejected_at,
            started_at=iso_utc(self.started_at),
            finished_at=iso_utc(datetime.now(UTC)),
            status=status,
            error=error,
            batch_job_id=settings.batch_job_id,
            write_request_units=self.write_units.units,
            write_request_units_source=self.write_units.source,
            index_write_request_units=self.write_units.index_units,
        )
        write_manifest(self.s3, manifest, manifest_prefix=settings.manifest_prefix)
        self.progress.summary(
            status=status,
            rows_read=counts.rows_read,
            rows_imported=counts.rows_imported,
            rows_rejected=counts.rows_rejected,
            duplicates=counts.duplicate_keys,
        )
        return manifest


def reject_ratio_exceeded(counts: ImportCounts, max_reject_ratio: float) -> bool:
    return counts.rows_read > 0 and counts.rows_rejected / counts.rows_read > max_reject_ratio


def run_import(
    settings: ImportSettings,
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    open_source: Callable[[], ObjectSource] | None = None,
    progress_interval: float = PROGRESS_INTERVAL_SECONDS,
) -> ImportManifest:
    """Import this shard's rows; returns the manifest it wrote.

    A fatal error after the object was opened still writes the rejected rows so far and a manifest with
    status ``failed`` (rows before the failure may be written), then re-raises.

    :param open_source: opens the object stream (default: GetObject on ``s3``); the benchmark passes a
        synthetic stream.
    """
    started_at = datetime.now(UTC)
    key_schema = describe_key_schema(dynamodb, settings.table)
    source = (
        open_source()
        if open_source
        else open_s3_object(s3, settings.bucket, settings.key, expected_etag=settings.expected_etag)
    )
    import_id = settings.import_id or derive_import_id(settings.bucket, settings.key, source.etag)
    log.info(
        "importing %s (%s bytes, ETag %s) into table %s as import %s, shard %s of %s, %s writers",
        source.uri,
        source.content_length,
        source.etag,
        settings.table,
        import_id,
        settings.shard_index,
        settings.shard_count,
        settings.writer_concurrency,
    )
    shard = ShardImport(
        settings,
        s3=s3,
        dynamodb=dynamodb,
        source=source,
        import_id=import_id,
        started_at=started_at,
        progress_interval=progress_interval,
    )
    try:
        with shard.progress:  # progress lines every interval until the rows are written, then the summary
            shard.import_rows(key_schema)
    except Exception as failure:
        reason = (
            failure.message if isinstance(failure, JobFailure) else f"{type(failure).__name__}: {failure}"
        )
        try:
            shard.finish(reason)
        except Exception:
            log.exception(
                "could not write the failed manifest %s",
                manifest_key(settings.manifest_prefix, import_id, settings.shard_index, settings.shard_count),
            )
        raise
    return shard.finish(None)
