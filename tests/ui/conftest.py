"""A running stack for the browser tests: local AWS endpoint + ``airflow standalone``, provisioned, one file landed.

Headless Chromium and chromedriver come from the operating system's packages (Debian: ``apt-get install
chromium chromium-driver``); Selenium is pointed at them and never downloads a browser or driver.
Without them the tests are skipped with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batch_import.config import FeedConfig, PipelineConfig
from include.airflow_standalone import AirflowRestClient, AirflowStandalone
from include.demo.sample_files import SampleFile, sample_week
from include.demo.stack import ProvisionedStack, provisioned_stack
from tests.fixtures.feeds import first_feed

CHROMIUM = Path(os.environ.get("UI_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("UI_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL_HINT = "install them from the OS packages, e.g. `sudo apt-get install chromium chromium-driver`"
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
UI_SETTINGS = {
    "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "2",
}


def _missing_browser() -> str | None:
    missing = [
        str(path) for path in (CHROMIUM, CHROMEDRIVER) if not (path.is_file() and os.access(path, os.X_OK))
    ]
    if not missing:
        return None
    return f"headless Chromium not found ({', '.join(missing)}): {INSTALL_HINT}"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[Path, Path]:
    """The system Chromium and chromedriver; skip without them (fail under CI=true)."""
    reason = _missing_browser()
    if reason:
        print(f"\nUI tests: {reason}")
        if _in_ci():
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


@dataclass(frozen=True)
class RunningStack:
    """What the browser tests drive: Airflow's URL and login, its REST client, the AWS endpoint, one landed file."""

    standalone: AirflowStandalone
    client: AirflowRestClient
    endpoint_url: str
    config: PipelineConfig
    landed: SampleFile
    provisioned: ProvisionedStack

    @property
    def feed(self) -> FeedConfig:
        """The feed whose DAG the tests trigger (the shipped config's first; ``landed`` is its file)."""
        return first_feed(self.config)

    def s3_client(self) -> Any:
        return self.provisioned.aws("s3")


@pytest.fixture(scope="module")
def running_stack(
    chromium_paths: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    with provisioned_stack(tmp_path_factory.mktemp("ui-stack"), UI_SETTINGS) as provisioned:
        config = provisioned.config
        # A date no scheduled run covers (catchup is off), landed without an S3 event: only the browser's
        # trigger imports the file.
        day = datetime.now(UTC).date() - timedelta(days=40)
        sample = sample_week(
            first_date=day, landing_prefix=first_feed(config).landing_prefix, large_file_rows=10
        )[0]
        stack = RunningStack(
            standalone=provisioned.standalone,
            client=provisioned.client,
            endpoint_url=provisioned.endpoint_url,
            config=config,
            landed=sample,
            provisioned=provisioned,
        )
        provisioned.land_without_event(sample.key, sample.body)
        yield stack


@pytest.fixture
def browser(chromium_paths: tuple[Path, Path], tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium (own profile directory) driven through the system chromedriver."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=str(chromedriver)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
