"""A generated week of landing files per shipped feed.

``orders`` (:func:`sample_week`): several files on one date, one large (sharded) file, one with bad rows, one
gzipped. ``sensor_readings`` (:func:`sensor_week`): one file a day keyed by sensor and reading time, one day
with two files, one gzipped. :data:`GENERATORS` maps a feed name to its generator.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

COLUMNS = ("id", "customer", "category", "price", "quantity", "ordered_at")
SENSOR_COLUMNS = ("sensor_id", "reading_time", "temperature", "humidity", "battery_ok")
CATEGORIES = ("books", "games", "garden", "kitchen", "music", "tools")


@dataclass(frozen=True)
class SampleFile:
    """One generated landing file and what a correct import of it reports."""

    partition_date: date
    key: str
    body: bytes
    data_rows: int
    bad_rows: int
    feed: str = "orders"

    @property
    def good_rows(self) -> int:
        return self.data_rows - self.bad_rows


def _good_row(rng: random.Random, row_id: str, day: date) -> list[str]:
    return [
        row_id,
        f"customer-{rng.randrange(1, 5000):05d}",
        rng.choice(CATEGORIES),
        f"{rng.randrange(100, 100000) / 100:.2f}",
        str(rng.randrange(1, 20)),
        f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
    ]


def _bad_rows(rng: random.Random, day: date, prefix: str) -> list[list[str]]:
    """Rows the job must reject: no key, a non-numeric typed column, too few columns."""
    no_key = _good_row(rng, "", day)
    not_a_number = _good_row(rng, f"{prefix}-bad-price", day)
    not_a_number[COLUMNS.index("price")] = "twelve euros"
    too_short = [f"{prefix}-short", "customer-00001"]
    return [no_key, not_a_number, too_short]


def _csv_bytes(rows: list[list[str]], columns: tuple[str, ...] = COLUMNS) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _sample(
    rng: random.Random,
    *,
    landing_prefix: str,
    day: date,
    name: str,
    rows: int,
    with_bad_rows: bool = False,
    gzipped: bool = False,
    feed: str,
) -> SampleFile:
    prefix = f"{day:%Y%m%d}-{name}"
    body_rows = [_good_row(rng, f"{prefix}-{number:06d}", day) for number in range(rows)]
    bad = _bad_rows(rng, day, prefix) if with_bad_rows else []
    for offset, row in enumerate(bad):
        body_rows.insert((offset + 1) * len(body_rows) // (len(bad) + 1), row)
    return _landed(
        _csv_bytes(body_rows), landing_prefix=landing_prefix, day=day, name=name, gzipped=gzipped,
        data_rows=len(body_rows), bad_rows=len(bad), feed=feed,
    )  # fmt: skip


def _landed(
    body: bytes,
    *,
    landing_prefix: str,
    day: date,
    name: str,
    gzipped: bool,
    data_rows: int,
    bad_rows: int,
    feed: str,
) -> SampleFile:
    """The sample file of ``body`` under ``<landing_prefix><day>/<name>.csv`` (``.csv.gz``, gzipped, when asked)."""
    suffix = ".csv"
    if gzipped:
        body = gzip.compress(body, mtime=0)
        suffix = ".csv.gz"
    return SampleFile(
        partition_date=day,
        key=f"{landing_prefix}{day.isoformat()}/{name}{suffix}",
        body=body,
        data_rows=data_rows,
        bad_rows=bad_rows,
        feed=feed,
    )


def sample_week(
    *, first_date: date, landing_prefix: str, large_file_rows: int, seed: int = 7, feed: str = "orders"
) -> list[SampleFile]:
    """Seven days of files under ``<landing_prefix><date>/``, deterministic for a given seed.

    Day 3 has three files, day 4 one ``large_file_rows``-row file (to be sharded), day 5 a file with three bad
    rows, day 6 a gzipped file.
    """
    rng = random.Random(seed)
    day = [first_date + timedelta(days=offset) for offset in range(7)]
    plan = [
        (day[0], "orders", 300, False, False),
        (day[1], "orders", 250, False, False),
        (day[2], "orders-web", 200, False, False),
        (day[2], "orders-shop", 150, False, False),
        (day[2], "returns", 80, False, False),
        (day[3], "orders-bulk", large_file_rows, False, False),
        (day[4], "orders", 300, True, False),
        (day[5], "orders", 250, False, True),
        (day[6], "orders", 200, False, False),
    ]
    return [
        _sample(
            rng, landing_prefix=landing_prefix, day=d, name=n, rows=r, with_bad_rows=b, gzipped=g, feed=feed
        )
        for d, n, r, b, g in plan
    ]


def _sensor_sample(
    rng: random.Random, *, landing_prefix: str, day: date, name: str, sensors: int, gzipped: bool, feed: str
) -> SampleFile:
    """Readings of ``sensors`` sensors every 30 minutes of ``day``: key (sensor_id, reading_time epoch seconds)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    rows = [
        [
            f"{name}-sensor-{sensor:02d}",
            str(start + slot * 1800),
            f"{rng.uniform(-5, 35):.1f}",
            str(rng.randrange(20, 95)),
            "true" if rng.random() > 0.05 else "false",
        ]
        for sensor in range(sensors)
        for slot in range(48)
    ]
    return _landed(
        _csv_bytes(rows, SENSOR_COLUMNS), landing_prefix=landing_prefix, day=day, name=name, gzipped=gzipped,
        data_rows=len(rows), bad_rows=0, feed=feed,
    )  # fmt: skip


def sensor_week(
    *,
    first_date: date,
    landing_prefix: str,
    large_file_rows: int = 0,
    seed: int = 7,
    feed: str = "sensor_readings",
) -> list[SampleFile]:
    """Seven days of sensor readings under ``<landing_prefix><date>/``: one file a day (two on day 3, from two
    sites), day 6 gzipped. ``large_file_rows`` is accepted for the generators' common signature and unused."""
    del large_file_rows
    rng = random.Random(seed)
    day = [first_date + timedelta(days=offset) for offset in range(7)]
    plan = [(d, "site-a", 3, offset == 5) for offset, d in enumerate(day)] + [(day[2], "site-b", 2, False)]
    plan.sort(key=lambda entry: (entry[0], entry[1]))
    return [
        _sensor_sample(rng, landing_prefix=landing_prefix, day=d, name=n, sensors=c, gzipped=g, feed=feed)
        for d, n, c, g in plan
    ]


# The demo's generator per shipped feed (``python -m include.demo`` lands a week for each).
GENERATORS = {"orders": sample_week, "sensor_readings": sensor_week}
