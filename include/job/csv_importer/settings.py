"""The job's settings: environment variables (the article's names) and flags; a flag wins over the environment."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn

from csv_importer.exit_codes import UsageProblem

ColumnType = Literal["S", "N", "BOOL"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("S", "N", "BOOL")
DEFAULT_WRITER_CONCURRENCY = 8
MAX_WRITER_CONCURRENCY = 64
IMPORT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

# (env name, flag, dest, help)
_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("bucket_name", "--bucket", "bucket", "bucket of the CSV object (required)"),
    ("key", "--key", "key", "object key, .csv or gzip .csv.gz (required)"),
    ("table_name", "--table", "table", "DynamoDB table (required)"),
    (
        "import_id",
        "--import-id",
        "import_id",
        "stamped on every item; default derived from bucket, key, ETag",
    ),
    (
        "max_reject_ratio",
        "--max-reject-ratio",
        "max_reject_ratio",
        "highest tolerated rejected/read (default 0)",
    ),
    (
        "column_types",
        "--column-types",
        "column_types",
        "e.g. price:N,active:BOOL; types S (default), N, BOOL",
    ),
    ("shard_count", "--shard-count", "shard_count", "number of shards of the object (default 1)"),
    ("AWS_BATCH_JOB_ARRAY_INDEX", "--shard-index", "shard_index", "this shard's index, 0-based (default 0)"),
    ("writer_concurrency", "--writer-concurrency", "writer_concurrency", "BatchWriteItem requests in flight"),
)


@dataclass(frozen=True)
class ImportSettings:
    bucket: str
    key: str
    table: str
    import_id: str | None = None
    max_reject_ratio: float = 0.0
    column_types: Mapping[str, ColumnType] = field(default_factory=dict)
    shard_count: int = 1
    shard_index: int = 0
    writer_concurrency: int = DEFAULT_WRITER_CONCURRENCY

    @property
    def source_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, flag without its value, stray argument) are :class:`UsageProblem`,
    so they end like every other failure (``csv-importer: USAGE: ... (a retry cannot fix this)``, exit 2)
    instead of with argparse's own ``csv-importer: error: ...`` line."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageProblem(f"{message}; see csv-importer --help")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="csv-importer",
        description="Import one CSV object from S3 into a DynamoDB table. Each flag defaults to the "
        "environment variable named in brackets.",
    )
    for env_name, flag, dest, help_text in _OPTIONS:
        parser.add_argument(flag, dest=dest, default=None, help=f"{help_text} [env {env_name}]")
    return parser


def parse_column_types(text: str) -> dict[str, ColumnType]:
    """Parse ``price:N,active:BOOL`` into ``{"price": "N", "active": "BOOL"}``."""
    column_types: dict[str, ColumnType] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, separator, type_name = entry.rpartition(":")
        name, type_name = name.strip(), type_name.strip().upper()
        if not separator or not name:
            raise UsageProblem(f"column_types entry {entry!r} is not of the form column:TYPE")
        if type_name not in COLUMN_TYPES:
            raise UsageProblem(f"column_types entry {entry!r}: type must be one of {', '.join(COLUMN_TYPES)}")
        if name in column_types:
            raise UsageProblem(f"column_types names column {name!r} twice")
        column_types[name] = type_name  # type: ignore[assignment]
    return column_types


def _parse_int(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageProblem(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise UsageProblem(f"{name} must be at least {minimum}, got {value}")
    return value


def _parse_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageProblem(f"max_reject_ratio must be a number between 0 and 1, got {text!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UsageProblem(f"max_reject_ratio must be between 0 and 1, got {text!r}")
    return value


def load_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> ImportSettings:
    """Resolve flags over environment variables into validated settings.

    :raises UsageProblem: a flag is unknown or lacks its value, a required setting is missing, or a value is
        malformed.
    """
    flags = vars(build_parser().parse_args(argv))
    raw: dict[str, str] = {}
    for env_name, _flag, dest, _help in _OPTIONS:
        value = flags[dest] if flags[dest] is not None else environ.get(env_name)
        if value is not None and value.strip() != "":
            raw[dest] = value.strip()
    missing = [f"{flag} (env {env})" for env, flag, dest, _ in _OPTIONS[:3] if dest not in raw]
    if missing:
        raise UsageProblem(f"missing required setting(s): {', '.join(missing)}")
    shard_count = _parse_int("shard_count", raw.get("shard_count", "1"), 1)
    shard_index = _parse_int("shard index", raw.get("shard_index", "0"), 0)
    if shard_index >= shard_count:
        raise UsageProblem(
            f"shard index {shard_index} is outside 0..{shard_count - 1} (shard_count {shard_count})"
        )
    concurrency = _parse_int(
        "writer_concurrency", raw.get("writer_concurrency", str(DEFAULT_WRITER_CONCURRENCY)), 1
    )
    if concurrency > MAX_WRITER_CONCURRENCY:
        raise UsageProblem(f"writer_concurrency must be at most {MAX_WRITER_CONCURRENCY}, got {concurrency}")
    import_id = raw.get("import_id")
    if import_id is not None and not IMPORT_ID_PATTERN.fullmatch(import_id):
        raise UsageProblem(
            f"import_id {import_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-'"
        )
    return ImportSettings(
        bucket=raw["bucket"],
        key=raw["key"],
        table=raw["table"],
        import_id=import_id,
        max_reject_ratio=_parse_ratio(raw.get("max_reject_ratio", "0")),
        column_types=parse_column_types(raw.get("column_types", "")),
        shard_count=shard_count,
        shard_index=shard_index,
        writer_concurrency=concurrency,
    )
