"""The import DAGs' trigger forms, used in a real (headless) browser against a running ``airflow standalone``.

Login, open the first feed's DAG, trigger it with an ``s3_key``: the run succeeds and the file is imported and
verified. Trigger it with a key outside its landing prefix, or another feed's DAG with this feed's key: the
form shows the refusal and no run is created. The Dags page lists one DAG per feed.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, unquote

import pytest

from batch_import import files
from batch_import.config import load_config
from include.demo.sample_files import sample_week
from include.demo.summary import read_outcome
from tests.fixtures.feeds import first_feed
from tests.ui.conftest import RunningStack

SHIPPED = load_config(environ={})
IMPORT_DAG_ID = first_feed(SHIPPED).dag_id  # the feed of the stack's landed file
OTHER_DAG_ID = SHIPPED.feeds[1].dag_id

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.timeout(600)]

UI_WAIT_SECONDS = 20
RUN_WAIT_SECONDS = 240


def _wait(browser: Any, timeout: float = UI_WAIT_SECONDS) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout)


def _click(browser: Any, locator: tuple[str, str]) -> None:
    """Click what ``locator`` finds, retrying while the single-page app re-renders it."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        NoSuchElementException,
        StaleElementReferenceException,
    )

    def click(driver: Any) -> bool:
        try:
            driver.find_element(*locator).click()
        except (
            NoSuchElementException,
            StaleElementReferenceException,
            ElementClickInterceptedException,
            ElementNotInteractableException,
        ):
            return False
        return True

    _wait(browser).until(click, f"could not click {locator[1]}")


def _log_in(browser: Any, stack: RunningStack, next_path: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{stack.standalone.url}/auth/login?next={quote(next_path, safe='')}")
    _wait(browser).until(ec.visibility_of_element_located((By.NAME, "username"))).send_keys(
        stack.standalone.login.username
    )
    browser.find_element(By.NAME, "password").send_keys(stack.standalone.login.password)
    _click(browser, (By.CSS_SELECTOR, "button[type=submit]"))
    _wait(browser).until(ec.url_contains(next_path))


def _open_dag_from_the_list(browser: Any, stack: RunningStack) -> None:
    """Log in to the Dags list and click the import DAG, as a user does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _log_in(browser, stack, "/dags")
    _click(browser, (By.XPATH, f"//a[normalize-space(.)='{IMPORT_DAG_ID}']"))
    _wait(browser).until(ec.url_contains(f"/dags/{IMPORT_DAG_ID}"))


def _open_trigger_form(browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _click(browser, (By.CSS_SELECTOR, "[data-testid=trigger-dag-button]"))
    _wait(browser).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]"))
    )


def _submit_with_s3_key(browser: Any, s3_key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    field = _wait(browser).until(ec.visibility_of_element_located((By.ID, "element_s3_key")))
    field.clear()
    field.send_keys(s3_key)
    _click(browser, (By.CSS_SELECTOR, "[data-testid=trigger-dag-submit]"))


def _run_state_in_page(browser: Any, run_id: str) -> str | None:
    """The run's state badge next to its heading on the run page, lower-cased (None while not rendered)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    badge = f"//h2[normalize-space(text())='{run_id}']/following-sibling::span[@data-testid='state-badge']"
    try:
        return browser.find_element(By.XPATH, badge).text.strip().lower() or None
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def test_trigger_form_imports_the_given_s3_key(browser: Any, running_stack: RunningStack) -> None:
    from selenium.webdriver.support import expected_conditions as ec

    stack = running_stack
    dag_path = f"/dags/{IMPORT_DAG_ID}"
    _open_dag_from_the_list(browser, stack)
    _open_trigger_form(browser)
    _submit_with_s3_key(browser, stack.landed.key)

    # The UI opens the new run's page: /dags/<dag_id>/runs/<run_id>
    _wait(browser).until(ec.url_contains(f"{dag_path}/runs/"))
    run_id = unquote(browser.current_url.split(f"{dag_path}/runs/", 1)[1].split("?")[0].split("/")[0])
    run = stack.client.dag_run(IMPORT_DAG_ID, run_id)
    assert run["conf"].get("s3_key") == stack.landed.key, (
        f"the form's s3_key did not reach the run: {run['conf']}"
    )

    deadline = time.monotonic() + RUN_WAIT_SECONDS
    state = None
    while time.monotonic() < deadline:
        state = _run_state_in_page(browser, run_id)
        if state in ("success", "failed"):
            break
        time.sleep(3)
        browser.refresh()
    instances = stack.client.task_instances(IMPORT_DAG_ID, run_id)
    task_states = sorted(f"{ti['task_id']}[{ti['map_index']}]={ti['state']}" for ti in instances)
    assert state == "success", f"run {run_id} shows {state!r} in the UI; tasks: {task_states}"

    outcome = read_outcome(
        stack.s3_client(),
        stack.landed,
        bucket_name=stack.config.bucket.name,
        manifest_prefix=stack.feed.manifest_prefix,
        expected_shards=1,
    )
    assert outcome.as_expected, f"{stack.landed.key}: {outcome.problems}"
    assert files.is_verified(
        stack.s3_client(),
        bucket_name=stack.config.bucket.name,
        manifest_prefix=stack.feed.manifest_prefix,
        import_id=outcome.import_id,
    )


def test_the_dags_page_lists_one_import_dag_per_feed(browser: Any, running_stack: RunningStack) -> None:
    from selenium.webdriver.common.by import By

    _log_in(browser, running_stack, "/dags")
    for feed in running_stack.config.feeds:
        link = f"//a[normalize-space(.)='{feed.dag_id}']"
        _wait(browser).until(lambda driver, link=link: driver.find_elements(By.XPATH, link), feed.dag_id)


@pytest.mark.parametrize(
    ("dag_id", "where"),
    [
        pytest.param(IMPORT_DAG_ID, "outside", id="outside-the-landing-prefix"),
        pytest.param(OTHER_DAG_ID, "other-feed", id="another-feeds-file"),
    ],
)
def test_trigger_form_refuses_a_key_outside_the_landing_prefix(
    browser: Any, running_stack: RunningStack, dag_id: str, where: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    stack = running_stack
    if where == "outside":
        outside_key = "elsewhere/" + stack.landed.key.removeprefix(stack.config.bucket.landing_prefix)
    else:  # the first feed's landed file, given to another feed's form: not under that feed's prefix
        outside_key = stack.landed.key
    runs_before = {run["dag_run_id"] for run in stack.client.dag_runs(dag_id)}
    dag_path = f"/dags/{dag_id}"
    _log_in(browser, stack, dag_path)
    _open_trigger_form(browser)
    _submit_with_s3_key(browser, outside_key)

    refusal = "Invalid input for param s3_key"
    shown = _wait(browser).until(
        ec.visibility_of_element_located((By.XPATH, f"//*[@role='dialog']//*[contains(text(), '{refusal}')]"))
    )
    assert outside_key in shown.text, shown.text
    assert "does not match" in shown.text, shown.text
    assert f"{dag_path}/runs/" not in browser.current_url
    runs_after = {run["dag_run_id"] for run in stack.client.dag_runs(dag_id)}
    assert runs_after == runs_before, f"a refused trigger created runs: {runs_after - runs_before}"


def test_cli_backfill_imports_a_past_day(running_stack: RunningStack) -> None:
    """The README's history command: `airflow backfill create` over a past day, executed by the scheduler."""
    import os
    import subprocess
    from datetime import date, timedelta

    stack = running_stack
    day = date.fromisoformat(stack.landed.key.split("/")[-2]) - timedelta(days=3)
    landing_prefix = stack.feed.landing_prefix
    sample = sample_week(first_date=day, landing_prefix=landing_prefix, large_file_rows=10, seed=11)[0]
    stack.s3_client().put_object(Bucket=stack.config.bucket.name, Key=sample.key, Body=sample.body)

    env = stack.standalone.environment()
    command = [
        "airflow", "backfill", "create", "--dag-id", IMPORT_DAG_ID,
        "--from-date", day.isoformat(), "--to-date", day.isoformat(),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=os.fspath(stack.standalone.airflow_home),
    )
    assert result.returncode == 0, f"{' '.join(command)} failed: {result.stderr[-2000:]}"

    backfills = stack.client.request("GET", "/api/v2/backfills", params={"dag_id": IMPORT_DAG_ID})[
        "backfills"
    ]
    assert backfills, f"the CLI created no backfill: {result.stdout[-1000:]}"
    backfill = max(backfills, key=lambda b: b["id"])
    runs = stack.client.wait_for_backfill(backfill, timeout=RUN_WAIT_SECONDS)
    assert [run["logical_date"][:10] for run in runs] == [day.isoformat()]
    assert runs[0]["state"] == "success", f"backfill run {runs[0]['dag_run_id']} ended {runs[0]['state']}"

    outcome = read_outcome(
        stack.s3_client(),
        sample,
        bucket_name=stack.config.bucket.name,
        manifest_prefix=stack.feed.manifest_prefix,
        expected_shards=1,
    )
    assert outcome.as_expected, f"{sample.key}: {outcome.problems}"
