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
from csv_importer.inputs import (
    DEFAULT_MANIFEST_PREFIX,
    DEFAULT_REJECTED_PREFIX,
    DEFAULT_WRITER_CONCURRENCY,
    EMPTY_CELLS_CHOICES,
    JOB_INPUTS,
    LINEAGE_CHOICES,
)

ColumnType = Literal["S", "N", "BOOL"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("S", "N", "BOOL")
EmptyCells = Literal["keep", "omit", "null"]
Lineage = Literal["all", "import_id"]
MAX_WRITER_CONCURRENCY = 64
IMPORT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A bucket prefix the job writes under: empty segments, "." or ".." and a leading "/" are refused.
_PREFIX_PATTERN = re.compile(r"(?:[^/\x00-\x1f\x7f]+/)+")


@dataclass(frozen=True)
class ImportSettings:
    bucket: str
    key: str
    table: str
    import_id: str | None = None
    expected_etag: str | None = None
    max_reject_ratio: float = 0.0
    column_types: Mapping[str, ColumnType] = field(default_factory=dict)
    empty_cells: EmptyCells = "keep"
    lineage: Lineage = "all"
    manifest_prefix: str = DEFAULT_MANIFEST_PREFIX
    rejected_prefix: str = DEFAULT_REJECTED_PREFIX
    shard_count: int = 1
    shard_index: int = 0
    writer_concurrency: int = DEFAULT_WRITER_CONCURRENCY
    batch_job_id: str | None = None

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
    for job_input in JOB_INPUTS:
        if job_input.required:
            detail = "required"
        elif job_input.default:
            detail = f"default {job_input.default}"
        else:
            detail = "optional"
        parser.add_argument(
            job_input.flag,
            dest=job_input.name,
            default=None,
            help=f"{job_input.help} ({detail}) [env {job_input.env}]",
        )
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
    for job_input in JOB_INPUTS:
        value = flags[job_input.name] if flags[job_input.name] is not None else environ.get(job_input.env)
        if value is not None and value.strip() != "":
            raw[job_input.name] = value.strip()
        elif job_input.default is not None:
            raw[job_input.name] = job_input.default
    missing = [f"{i.flag} (env {i.env})" for i in JOB_INPUTS if i.required and i.name not in raw]
    if missing:
        raise UsageProblem(f"missing required setting(s): {', '.join(missing)}")
    shard_count = _parse_int("shard_count", raw["shard_count"], 1)
    shard_index = _parse_int("shard index", raw["shard_index"], 0)
    if shard_index >= shard_count:
        raise UsageProblem(
            f"shard index {shard_index} is outside 0..{shard_count - 1} (shard_count {shard_count})"
        )
    concurrency = _parse_int("writer_concurrency", raw["writer_concurrency"], 1)
    if concurrency > MAX_WRITER_CONCURRENCY:
        raise UsageProblem(f"writer_concurrency must be at most {MAX_WRITER_CONCURRENCY}, got {concurrency}")
    import_id = raw.get("import_id")
    if import_id is not None and not IMPORT_ID_PATTERN.fullmatch(import_id):
        raise UsageProblem(
            f"import_id {import_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-'"
        )
    empty_cells = raw["empty_cells"].lower()
    if empty_cells not in EMPTY_CELLS_CHOICES:
        raise UsageProblem(
            f"empty_cells must be one of {', '.join(EMPTY_CELLS_CHOICES)}, got {raw['empty_cells']!r}"
        )
    lineage = raw["lineage"].lower()
    if lineage not in LINEAGE_CHOICES:
        raise UsageProblem(f"lineage must be one of {', '.join(LINEAGE_CHOICES)}, got {raw['lineage']!r}")
    return ImportSettings(
        bucket=raw["bucket"],
        key=raw["key"],
        table=raw["table"],
        import_id=import_id,
        expected_etag=raw.get("expected_etag"),
        max_reject_ratio=_parse_ratio(raw["max_reject_ratio"]),
        column_types=parse_column_types(raw["column_types"]),
        empty_cells=empty_cells,  # type: ignore[arg-type]
        lineage=lineage,  # type: ignore[arg-type]
        manifest_prefix=_parse_prefix("manifest_prefix", raw["manifest_prefix"]),
        rejected_prefix=_parse_prefix("rejected_prefix", raw["rejected_prefix"]),
        shard_count=shard_count,
        shard_index=shard_index,
        writer_concurrency=concurrency,
        batch_job_id=raw.get("batch_job_id"),
    )


def _parse_prefix(name: str, text: str) -> str:
    if not _PREFIX_PATTERN.fullmatch(text) or any(part in (".", "..") for part in text.split("/")):
        raise UsageProblem(
            f"{name} {text!r} must be one or more path segments each ending in '/', e.g. manifests/ "
            "(no leading '/', no empty, '.' or '..' segment)"
        )
    return text
