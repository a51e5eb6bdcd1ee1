"""The demo's exit code from its summary rows (``include.demo.summary.exit_code``), without running a demo.

Each file's figures start as what a correct import of the generated sample reports (derived from the sample and
the demo's own shard settings); one figure at a time is then made wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

import pytest

from batch_import.config import load_config
from include.demo.run import demo_environment, demo_feeds, expected_shards
from include.demo.sample_files import GENERATORS, SampleFile
from include.demo.summary import FileOutcome, exit_code, format_table

DEMO_CONFIG = load_config(environ=demo_environment({}))


def _week() -> list[SampleFile]:
    """Every shipped feed's generated week, as the demo lands it."""
    return [
        sample
        for feed in demo_feeds(DEMO_CONFIG)
        for sample in GENERATORS[feed.name](
            first_date=date(2026, 1, 1), landing_prefix=feed.landing_prefix, large_file_rows=8000
        )
    ]


def _expected_shards(sample: SampleFile) -> int:
    """As the demo computes it, with the demo's own shard settings."""
    return expected_shards(DEMO_CONFIG.feed(sample.feed), sample)


def _as_reported(sample: SampleFile) -> FileOutcome:
    """The figures a correct import of ``sample`` leaves in its manifests and verification marker."""
    shards = _expected_shards(sample)
    return FileOutcome(
        sample=sample,
        import_id=f"import-{sample.key}",
        expected_shards=shards,
        shard_count=shards,
        shards_found=shards,
        rows_read=sample.data_rows,
        rows_imported=sample.good_rows,
        rows_rejected=sample.bad_rows,
        statuses=("succeeded",),
        verified=True,
    )


def _pick(samples: list[SampleFile], which: str) -> int:
    """Index of the first clean single-shard file, the file with bad rows, or the sharded file."""
    for index, sample in enumerate(samples):
        shards = _expected_shards(sample)
        if which == "clean" and sample.bad_rows == 0 and shards == 1:
            return index
        if which == "with_rejects" and sample.bad_rows > 0:
            return index
        if which == "sharded" and shards > 1:
            return index
    raise AssertionError(f"the generated week has no {which} file")


def _row(table: str, key: str) -> str:
    (row,) = [line for line in table.splitlines() if f"  {key}  " in line]
    return row


def test_every_file_as_reported_exits_0_and_the_file_with_reported_rejects_counts_as_expected() -> None:
    samples = _week()
    outcomes = [_as_reported(sample) for sample in samples]
    with_rejects = outcomes[_pick(samples, "with_rejects")]

    assert with_rejects.rows_rejected > 0
    assert with_rejects.as_expected, with_rejects.problems
    assert exit_code(outcomes, failed_runs=[]) == 0
    table = format_table(outcomes)
    assert all(_row(table, o.sample.key).endswith("as expected") for o in outcomes), table


def _missing(o: FileOutcome) -> FileOutcome:
    """Nothing in the bucket: no manifest, no marker."""
    return FileOutcome(sample=o.sample, import_id=o.import_id, expected_shards=o.expected_shards)


@pytest.mark.parametrize(
    ("which", "change", "problem"),
    [
        pytest.param("clean", lambda o: replace(o, verified=False), "not verified", id="not-verified"),
        pytest.param("clean", _missing, "no manifest", id="missing"),
        pytest.param(
            "clean",
            lambda o: replace(o, rows_imported=o.rows_imported - 1, rows_rejected=o.rows_rejected + 1),
            "rows rejected",
            id="unexpected-rejects",
        ),
        pytest.param(
            "with_rejects",
            lambda o: replace(o, rows_imported=o.rows_read, rows_rejected=0),
            "rows rejected",
            id="rejects-not-reported",
        ),
        pytest.param(
            "clean", lambda o: replace(o, rows_imported=o.rows_imported - 1), "rows imported", id="row-lost"
        ),
        pytest.param("clean", lambda o: replace(o, statuses=("failed",)), "status failed", id="failed"),
        pytest.param(
            "with_rejects",
            lambda o: replace(o, statuses=("reject_ratio_exceeded",)),
            "status reject_ratio_exceeded",
            id="reject-ratio-exceeded",
        ),
        pytest.param(
            "sharded",
            lambda o: replace(o, statuses=("failed", "succeeded")),
            "status failed,succeeded",
            id="one-shard-failed",
        ),
        pytest.param(
            "sharded",
            lambda o: replace(o, shards_found=o.shards_found - 1),
            "manifests of",
            id="shard-manifest-missing",
        ),
        pytest.param(
            "sharded",
            lambda o: replace(o, shard_count=1, shards_found=1),
            "shards, expected",
            id="not-sharded",
        ),
    ],
)
def test_one_file_not_as_expected_exits_1_and_its_row_says_why(
    which: str, change: Callable[[FileOutcome], FileOutcome], problem: str
) -> None:
    samples = _week()
    outcomes = [_as_reported(sample) for sample in samples]
    index = _pick(samples, which)
    outcomes[index] = change(outcomes[index])

    assert exit_code(outcomes, failed_runs=[]) == 1
    table = format_table(outcomes)
    for position, outcome in enumerate(outcomes):
        row = _row(table, outcome.sample.key)
        if position == index:
            assert problem in row, row
            assert not row.endswith("as expected"), row
        else:
            assert row.endswith("as expected"), row


def test_a_failed_backfill_run_exits_1_even_when_every_file_is_as_expected() -> None:
    outcomes = [_as_reported(sample) for sample in _week()]

    assert all(outcome.as_expected for outcome in outcomes)
    assert exit_code(outcomes, failed_runs=["backfill__2026-01-03T00:00:00+00:00"]) == 1


def test_no_file_in_the_summary_exits_1() -> None:
    assert exit_code([], failed_runs=[]) == 1


def test_the_demo_covers_every_shipped_feed_and_its_files_fit_their_feed() -> None:
    """Both shipped feeds have a week of files; each file lies under its feed's landing prefix and has the
    feed's key columns and typed columns (or the job would refuse it)."""
    import csv
    import gzip
    import io

    assert [feed.name for feed in demo_feeds(DEMO_CONFIG)] == list(DEMO_CONFIG.feed_names)
    samples = _week()
    assert {sample.feed for sample in samples} == set(DEMO_CONFIG.feed_names)
    for sample in samples:
        feed = DEMO_CONFIG.feed(sample.feed)
        assert sample.key.startswith(feed.landing_prefix), sample.key
        body = gzip.decompress(sample.body) if sample.key.endswith(".gz") else sample.body
        header = next(csv.reader(io.StringIO(body.decode())))
        typed = [entry.split(":")[0] for entry in feed.column_types.split(",") if entry]
        keys = [name for name, _, _ in feed.table.key_schema]
        assert set(keys + typed) <= set(header), (sample.key, header)


def test_the_summary_has_a_feed_column() -> None:
    samples = _week()
    table = format_table([_as_reported(sample) for sample in samples])
    assert table.splitlines()[0].split()[0] == "feed"
    for sample in samples:
        assert _row(table, sample.key).split()[0] == sample.feed
