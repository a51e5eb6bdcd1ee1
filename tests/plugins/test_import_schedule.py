"""The schedule rules that keep a UI run for one s3_key from queueing behind runs waiting for files."""

from __future__ import annotations

import pytest

from batch_import.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"CSV_IMPORT__SCHEDULE__MAX_ACTIVE_RUNS": "1"}, "max_active_runs", id="one-run"),
        pytest.param(
            {"CSV_IMPORT__SCHEDULE__CRON": "@hourly", "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "3600"},
            r"shorter than the schedule's shortest interval \(3600 s\)",
            id="grace-as-long-as-the-interval",
        ),
        pytest.param(
            {
                "CSV_IMPORT__SCHEDULE__CRON": "0 6,7 * * *",
                "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "7200",
            },
            r"\(3600 s\)",
            id="irregular-cron-uses-its-shortest-gap",
        ),
        pytest.param({"CSV_IMPORT__SCHEDULE__CRON": "every day"}, "is not a cron expression", id="bad-cron"),
    ],
)
def test_schedules_that_could_starve_ui_runs_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)


def test_the_checked_in_schedule_leaves_room_for_ui_runs() -> None:
    schedule = load_config(environ={}).schedule
    assert schedule.max_active_runs >= 2
    assert schedule.sensor_grace_seconds < 24 * 3600
    assert load_config(environ={"CSV_IMPORT__SCHEDULE__CRON": "0 9 * * 1-5"}).schedule.cron == "0 9 * * 1-5"
