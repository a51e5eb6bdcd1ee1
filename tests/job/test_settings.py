"""Settings resolution, the import id, and the value conversions that need no AWS."""

from __future__ import annotations

import pytest

from csv_importer.exit_codes import UsageProblem
from csv_importer.import_id import derive_import_id
from csv_importer.rows import parse_bool, parse_number
from csv_importer.settings import load_settings, parse_column_types

REQUIRED_ENV = {"bucket_name": "b", "key": "k.csv", "table_name": "t"}


def test_environment_supplies_defaults_and_flags_win():
    env = {
        **REQUIRED_ENV,
        "max_reject_ratio": "0.1",
        "shard_count": "4",
        "AWS_BATCH_JOB_ARRAY_INDEX": "3",
        "writer_concurrency": "2",
        "column_types": "price:n, active:BOOL",
    }
    settings = load_settings(["--table", "other", "--shard-index", "1"], env)
    assert (settings.bucket, settings.key, settings.table) == ("b", "k.csv", "other")
    assert (settings.shard_count, settings.shard_index, settings.writer_concurrency) == (4, 1, 2)
    assert settings.max_reject_ratio == 0.1
    assert dict(settings.column_types) == {"price": "N", "active": "BOOL"}
    assert settings.import_id is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--shard-count", "0"], "shard_count must be at least 1", id="shard-count"),
        pytest.param(
            ["--writer-concurrency", "x"], "writer_concurrency must be an integer", id="concurrency"
        ),
        pytest.param(["--import-id", "a/b"], "import_id 'a/b' must be", id="import-id"),
        pytest.param(["--max-reject-ratio", "nan"], "max_reject_ratio must be between 0 and 1", id="ratio"),
        pytest.param(["--column-types", "price"], "not of the form column:TYPE", id="column-types"),
        pytest.param(["--column-types", "a:N,a:S"], "names column 'a' twice", id="column-twice"),
    ],
)
def test_bad_values_are_usage_problems(argv, message):
    with pytest.raises(UsageProblem, match=message):
        load_settings(argv, REQUIRED_ENV)


def test_import_id_is_deterministic_short_and_path_safe():
    first = derive_import_id("bucket", "incoming/2026-01-01/a.csv", '"abc123"')
    assert first == derive_import_id("bucket", "incoming/2026-01-01/a.csv", "abc123")
    assert len(first) == 24
    assert all(c in "0123456789abcdef" for c in first)
    assert first != derive_import_id("bucket", "incoming/2026-01-01/a.csv", '"abc124"')
    assert first != derive_import_id("bucket2", "incoming/2026-01-01/a.csv", '"abc123"')


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1", "1"),
        ("1.50", "1.5"),
        (" -0.0 ", "0"),
        ("1e3", "1000"),
        ("1E+100", "1E+100"),
        ("0.000001", "0.000001"),
    ],
)
def test_numbers_are_canonical(text, canonical):
    assert parse_number(text)[0] == canonical


@pytest.mark.parametrize("text", ["", "abc", "NaN", "Infinity", "1e126", "1e-131", "1" * 39])
def test_numbers_dynamodb_refuses(text):
    with pytest.raises(ValueError, match=r"not a|range|digits"):
        parse_number(text)


def test_booleans():
    assert [parse_bool(v) for v in ["TRUE", "yes", "1", " No ", "false", "0"]] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("y")


def test_column_types_parse():
    assert parse_column_types("") == {}
    assert parse_column_types("a:S,b:N,") == {"a": "S", "b": "N"}


def test_key_fingerprints_count_distinct_hashes_across_growth():
    from csv_importer.fingerprints import KeyFingerprints

    fingerprints = KeyFingerprints()
    hashes = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 5001)] + [0]
    assert all(fingerprints.add(h) for h in hashes)
    assert not any(fingerprints.add(h) for h in hashes[::7])
    assert fingerprints.distinct == len(hashes)
    assert fingerprints.nbytes <= 16 * len(hashes)
