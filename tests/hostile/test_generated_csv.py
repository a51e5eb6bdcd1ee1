"""Property-based hostile CSVs through the real job (in-process ``run_import`` / ``main`` against moto).

The promise under test: every data row ends up exactly once, either in the table (the last row of a key
wins) or in the rejected rows with its line number; ``rows_read = rows_imported + rows_rejected``; duplicates
are counted; content that is not UTF-8 fails with exit code 3 naming the line.

The expected outcome of each generated row is derived from how it was generated, not from the job's parser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csv_importer.cli import main
from csv_importer.exit_codes import ExitCode
from csv_importer.import_id import derive_import_id
from csv_importer.importer import run_import
from csv_importer.settings import ImportSettings
from tests.hostile.conftest import BUCKET, HostileWorld

HEADER = ["id", "text", "note"]
HUGE_ACCEPTED = 150_000  # two of them stay well under DynamoDB's 400 KB item limit (stamps included)
HUGE_REFUSED = 420_000  # well over it

_NASTY_ALPHABET = st.sampled_from(
    list("\",\n\r\t ;|\\'")
    + ["\u00e9", "\u4e2d", "\U0001f600", "\u2028", "\u0085", "\ufeff", "\x00", "a", "Z", "0"]
)
_field = st.one_of(
    st.text(alphabet=_NASTY_ALPHABET, max_size=12),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=8),
    st.sampled_from(["<huge-accepted>", "<huge-refused>"]),  # expanded by expand(): short reprs on failure
)
# Few distinct keys, so duplicates are frequent; "" is an empty key; unicode and quotes in keys too.
_key = st.sampled_from(["", "k1", "k2", "K1", "k 1", '"q"', "a,b", "line\nkey", "\u00e9", "\U0001f600"])


def expand(value: str) -> str:
    if value == "<huge-accepted>":
        return "x" * HUGE_ACCEPTED
    if value == "<huge-refused>":
        return "y" * HUGE_REFUSED
    return value


@dataclass(frozen=True)
class GeneratedRow:
    fields: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        if len(self.fields) != len(HEADER) or self.fields[0] in {"", "<huge-accepted>", "<huge-refused>"}:
            return False  # ragged, empty key, or a key over DynamoDB's 2048-byte partition-key limit
        return "<huge-refused>" not in self.fields

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(expand(value) for value in self.fields)


_row = st.one_of(
    st.tuples(_key, _field, _field),  # well-formed
    st.lists(st.one_of(_key, _field), min_size=1, max_size=5).map(tuple),  # ragged (or not, by chance)
).map(GeneratedRow)


def _quote(value: str) -> str:
    """RFC 4180: a field holding a comma, a quote, CR or LF is quoted, its quotes doubled."""
    if any(char in value for char in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _serialize(rows: list[GeneratedRow], *, terminator: str, bom: bool) -> tuple[bytes, list[int]]:
    """The file's bytes and each data row's starting line number (1-based, the header is line 1)."""
    records = [",".join(HEADER)]
    line_numbers = []
    line = 2
    for row in rows:
        line_numbers.append(line)
        # A lone empty field is written quoted, or it would be a blank line (skipped, not a row).
        record = '""' if row.fields == ("",) else ",".join(_quote(value) for value in row.values)
        records.append(record)
        line += record.count("\n") + 1
    text = terminator.join(records) + terminator
    return ("\ufeff" if bom else "").encode("utf-8") + text.encode("utf-8"), line_numbers


_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    derandomize=True,
)


@settings(_SETTINGS, max_examples=100)
@given(
    rows=st.lists(_row, min_size=0, max_size=30),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    shard_count=st.sampled_from([1, 1, 2, 3]),
)
def test_every_generated_row_is_imported_or_rejected_exactly_once(
    hostile_world: HostileWorld, rows: list[GeneratedRow], terminator: str, bom: bool, shard_count: int
) -> None:
    body, line_numbers = _serialize(rows, terminator=terminator, bom=bom)
    table = hostile_world.new_table()
    key = hostile_world.land(body)

    manifests = [
        run_import(
            ImportSettings(
                bucket=BUCKET, key=key, table=table, max_reject_ratio=1.0, writer_concurrency=3,
                shard_count=shard_count, shard_index=shard_index,
            ),
            s3=hostile_world.s3,
            dynamodb=hostile_world.dynamodb,
        )
        for shard_index in range(shard_count)
    ]  # fmt: skip

    accepted = [row for row in rows if row.accepted]
    expected_rejected_lines = sorted(
        line for row, line in zip(rows, line_numbers, strict=True) if not row.accepted
    )
    last_by_key: dict[str, GeneratedRow] = {row.fields[0]: row for row in accepted}

    # Every rejected row in exactly one shard's rejected rows, with its line number.
    rejected = [entry for manifest in manifests for entry in hostile_world.rejected(manifest.rejected_key)]
    assert sorted(int(entry["line_number"]) for entry in rejected) == expected_rejected_lines
    assert all(entry["reason"] for entry in rejected)
    items = hostile_world.items(table)
    assert sorted(items) == sorted(last_by_key)
    for item_key, row in last_by_key.items():
        stored: dict[str, Any] = items[item_key]
        for name, value in zip(HEADER, row.values, strict=True):
            assert stored[name] == {"S": value}  # string columns: empty cells stay "" (empty_cells keep)
    for manifest in manifests:
        assert manifest.status == "succeeded"
        assert manifest.rows_read == manifest.rows_imported + manifest.rows_rejected
    assert sum(m.rows_read for m in manifests) == len(rows)
    assert sum(m.rows_imported for m in manifests) == len(accepted)
    assert sum(m.rows_rejected for m in manifests) == len(expected_rejected_lines)
    assert sum(m.duplicate_keys for m in manifests) == len(accepted) - len(last_by_key)
    assert sum(m.distinct_keys for m in manifests) == len(items)


@_SETTINGS
@given(prefix_rows=st.lists(st.tuples(_key, st.text(max_size=6), st.text(max_size=6)), max_size=8),
       garbage=st.binary(min_size=1, max_size=64))  # fmt: skip
def test_random_bytes_either_import_truthfully_or_fail_with_exit_3_naming_the_line(
    hostile_world: HostileWorld,
    prefix_rows: list[tuple[str, str, str]],
    garbage: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    head, _ = _serialize([GeneratedRow(row) for row in prefix_rows], terminator="\n", bom=False)
    body = head + garbage
    table = hostile_world.new_table()
    key = hostile_world.land(body)

    code = main(["--bucket", BUCKET, "--key", key, "--table", table, "--max-reject-ratio", "1"])

    stderr = capsys.readouterr().err.strip().splitlines()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        bad_line = body[: error.start].count(b"\n") + 1
        assert code == ExitCode.BAD_INPUT
        assert stderr[-1].startswith(
            f"csv-importer: BAD_INPUT: s3://{BUCKET}/{key}: line {bad_line} is not valid UTF-8"
        )
        return
    # Valid UTF-8 garbage: just more rows, each imported or rejected, the counts adding up.
    assert code == ExitCode.OK, stderr[-1:]
    etag = hostile_world.s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
    manifest_key = f"manifests/{derive_import_id(BUCKET, key, etag)}/shard-0-of-1.json"
    manifest = json.loads(hostile_world.s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert manifest["rows_read"] == manifest["rows_imported"] + manifest["rows_rejected"]
    assert len(hostile_world.rejected(manifest["rejected_key"])) == manifest["rows_rejected"]
    assert manifest["rows_read"] >= len(prefix_rows)
    assert manifest["distinct_keys"] == len(hostile_world.items(table))
