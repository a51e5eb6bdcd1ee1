"""The demo's steps, in order; every process it starts is stopped on the way out."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

from batch_import import files
from batch_import.config import FeedConfig, PipelineConfig, load_config
from csv_importer.import_id import derive_import_id
from include.airflow_standalone import (
    AirflowRestClient,
    AirflowStandalone,
    AirflowStandaloneError,
    local_aws_connection,
)
from include.celery_stack.services import StackError
from include.celery_stack.stack import CeleryStack
from include.demo import PROJECT_ROOT, PROVISION_DAG_ID
from include.demo.local_endpoint import LocalEndpointError, LocalEndpointProcess
from include.demo.sample_files import GENERATORS, SampleFile
from include.demo.summary import FileOutcome, exit_code, format_table, read_outcome

log = logging.getLogger("include.demo")

DEFAULT_HOME = PROJECT_ROOT / ".local" / "demo"
# Demo-sized settings; a variable already set in the environment wins.
DEMO_SETTINGS = {
    "CSV_IMPORT__IMPORT__SHARD_THRESHOLD_BYTES": str(256 * 1024),
    "CSV_IMPORT__IMPORT__SHARD_TARGET_BYTES": str(256 * 1024),
    "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "2",
    "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "10",
    # The landing-events trigger asks its queue again 1 s after an empty receive (shipped: 30 s).
    "CSV_IMPORT__EVENTS__EMPTY_POLL_DELAY_SECONDS": "1",
    "CSV_IMPORT__EVENTS__LONG_POLL_SECONDS": "5",
}
EVENT_FILE_TIMEOUT = 300.0  # seconds the demo waits for the file it lands for today to be verified
# --executor: the embedded default (airflow standalone) or the production engine (include/celery_stack).
EXECUTORS = ("local", "celery")
DEMO_MAX_REJECT_RATIO = 0.05  # the backfill's dag_run_conf: the file with three bad rows stays under it
LOCAL_CREDENTIALS = "local"  # the local endpoint accepts any credentials


class DemoFailed(RuntimeError):
    """A demo step failed; the message says which and where its logs are."""


class _Stop(Exception):
    """SIGTERM: leave the wait loop and clean up like Ctrl-C."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m include.demo", description=__doc__)
    parser.add_argument(
        "--ci",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
        help="exit after the summary (default: on when CI=true)",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: airflow standalone (SQLite, LocalExecutor); celery: the production engine as processes "
        "(Postgres, Redis, API server, scheduler, DAG processor, triggerer, two Celery workers)",
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="working folder, wiped at start")
    parser.add_argument("--large-file-rows", type=int, default=8000, help="rows of the file that is sharded")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the backfill")
    parser.add_argument(
        "--summary-json",
        type=Path,
        help="also write the per-file summary (with landing-to-verified latency) here",
    )
    return parser.parse_args(argv)


def _say(started: float, message: str, *args: object) -> None:
    print(f"[demo {time.monotonic() - started:6.1f} s] {message % args if args else message}", flush=True)


def demo_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The demo's ``CSV_IMPORT__`` settings, minus those the caller already set."""
    return {name: value for name, value in DEMO_SETTINGS.items() if name not in environ}


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        return run_demo(arguments)
    except (DemoFailed, AirflowStandaloneError, LocalEndpointError, StackError) as err:
        print(f"\ndemo failed: {err}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, _Stop):
        print("\nstopped", flush=True)
        return 130


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run_demo(arguments: argparse.Namespace) -> int:
    started = time.monotonic()
    home: Path = arguments.home.resolve()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    extra_env = demo_environment(os.environ)
    config = load_config(environ={**os.environ, **extra_env})
    endpoint = LocalEndpointProcess(log_path=home / "local_aws.log", extra_env=extra_env)
    stack_class = CeleryStack if arguments.executor == "celery" else AirflowStandalone
    standalone: AirflowStandalone | None = None
    try:
        _say(started, "starting the local AWS endpoint (log %s)", endpoint.log_path)
        endpoint.start()
        standalone = stack_class(
            airflow_home=home / "airflow_home",
            aws_connection=local_aws_connection(endpoint_url=endpoint.url, region_name=config.aws.region),
            # Paused until needed: the import DAG's latest scheduled run would otherwise start before the
            # bucket exists (a failed first try in the UI) and compete with provisioning for SQLite.
            extra_env={**extra_env, "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"},
            log_path=home / "airflow.log",
        )
        if isinstance(standalone, CeleryStack):
            _say(
                started,
                "local AWS endpoint at %s; starting the production engine: Postgres, Redis, API server, "
                "scheduler, DAG processor, triggerer, Celery workers %s (logs under %s)",
                endpoint.url,
                " and ".join(standalone.worker_names),
                standalone.log_dir,
            )
        else:
            _say(
                started,
                "local AWS endpoint at %s; starting airflow standalone (log %s)",
                endpoint.url,
                home / "airflow.log",
            )
        standalone.start()
        client = standalone.client()
        _say(started, "Airflow is up at %s; waiting for the DAGs to be parsed", standalone.url)
        for dag_id in (PROVISION_DAG_ID, *(feed.dag_id for feed in demo_feeds(config))):
            client.wait_for_dag(dag_id)
        provision(client, started)
        samples = land_week(config, endpoint.url, arguments.large_file_rows, started)
        drop_landing_events(config, endpoint.url, started)
        runs = backfill_week(client, config, samples, arguments.timeout, started)
        if isinstance(standalone, CeleryStack):
            counts = task_instances_by_host(client, runs)
            _say(
                started,
                "task instances per worker (their hostname in the REST API): %s",
                ", ".join(f"{host} {count}" for host, count in sorted(counts.items())) or "none",
            )
        land_for_today(client, config, endpoint.url, arguments.large_file_rows, started)
        outcomes = summarise(config, endpoint.url, samples)
        print("\n" + format_table(outcomes) + "\n", flush=True)
        if arguments.summary_json is not None:
            arguments.summary_json.write_text(json.dumps([o.as_record() for o in outcomes], indent=2) + "\n")
        failed_runs = [run["dag_run_id"] for run in runs if run["state"] != "success"]
        code = exit_code(outcomes, failed_runs)
        if failed_runs:
            print(
                f"runs not successful: {', '.join(failed_runs)} (task logs under {home / 'airflow_home' / 'logs'})"
            )
        _say(
            started,
            "%s",
            "every file imported and verified as expected"
            if code == 0
            else "NOT every file came out as expected",
        )
        if not arguments.ci:
            _serve_until_interrupted(standalone, endpoint.url, home)
        return code
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if standalone is not None:
            standalone.stop()
        endpoint.stop()
        _say(started, "stopped everything the demo started")


def provision(client: AirflowRestClient, started: float) -> None:
    _say(started, "running %s", PROVISION_DAG_ID)
    client.unpause(PROVISION_DAG_ID)
    run = client.trigger(PROVISION_DAG_ID, logical_date=None)
    (finished,) = client.wait_for_runs(PROVISION_DAG_ID, [run["dag_run_id"]], timeout=300)
    if finished["state"] != "success":
        raise DemoFailed(
            f"{PROVISION_DAG_ID} run {run['dag_run_id']} ended {finished['state']}: {_failed_tasks(client, finished)}"
        )
    _say(
        started,
        "provisioned (bucket, Batch compute environment and queue; per feed: table, job role, job definition, "
        "event queue and the bucket's notification to it)",
    )


def _failed_tasks(client: AirflowRestClient, run: Mapping[str, str]) -> str:
    instances = client.task_instances(run["dag_id"], run["dag_run_id"])
    failed = [
        f"{ti['task_id']}[{ti['map_index']}]={ti['state']}" for ti in instances if ti["state"] != "success"
    ]
    return ", ".join(failed) or "no failed task"


def _s3_client(config: PipelineConfig, endpoint_url: str) -> Any:
    return _client("s3", config, endpoint_url)


def _client(service_name: str, config: PipelineConfig, endpoint_url: str) -> Any:
    return boto3.client(
        service_name,
        endpoint_url=endpoint_url,
        region_name=config.aws.region,
        aws_access_key_id=LOCAL_CREDENTIALS,
        aws_secret_access_key=LOCAL_CREDENTIALS,
    )


def demo_feeds(config: PipelineConfig) -> list[FeedConfig]:
    """The configured feeds the demo has sample files for (the shipped ones)."""
    return [feed for feed in config.feeds if feed.name in GENERATORS]


def land_week(
    config: PipelineConfig, endpoint_url: str, large_file_rows: int, started: float
) -> list[SampleFile]:
    """Upload a generated week per feed, ending two days ago (yesterday's interval is the scheduler's own run)."""
    first_date = datetime.now(UTC).date() - timedelta(days=8)
    s3 = _s3_client(config, endpoint_url)
    samples: list[SampleFile] = []
    for feed in demo_feeds(config):
        week = GENERATORS[feed.name](
            first_date=first_date, landing_prefix=feed.landing_prefix, large_file_rows=large_file_rows
        )
        for sample in week:
            s3.put_object(Bucket=config.bucket.name, Key=sample.key, Body=sample.body)
        _say(
            started,
            "feed %s: landed %d files (%d bytes) under s3://%s/%s%s .. %s",
            feed.name,
            len(week),
            sum(len(s.body) for s in week),
            config.bucket.name,
            feed.landing_prefix,
            week[0].partition_date,
            week[-1].partition_date,
        )
        samples.extend(week)
    if not samples:
        raise DemoFailed(
            f"no configured feed has demo files (the demo has files for {', '.join(GENERATORS)})"
        )
    return samples


def drop_landing_events(config: PipelineConfig, endpoint_url: str, started: float) -> None:
    """Purge the feeds' event queues: the backfill imports the landed week; events are for files landing later.

    The import DAGs are paused until their backfill is created, so their watchers have not received the week's
    events yet; left in the queues, they would start runs racing the backfill for the same files.
    """
    sqs = _client("sqs", config, endpoint_url)
    for feed in demo_feeds(config):
        sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=feed.event_queue)["QueueUrl"])
    _say(started, "purged the landed week's events from the feeds' queues: the backfill imports that week")


def land_for_today(
    client: AirflowRestClient, config: PipelineConfig, endpoint_url: str, large_file_rows: int, started: float
) -> FileOutcome:
    """Land one more file for today, wait until its event's run has verified it, and say how long it took."""
    feed = demo_feeds(config)[0]
    today = datetime.now(UTC).date()
    week = GENERATORS[feed.name](
        first_date=today, landing_prefix=feed.landing_prefix, large_file_rows=large_file_rows
    )
    sample = next(each for each in week if each.partition_date == today and each.bad_rows == 0)
    s3 = _s3_client(config, endpoint_url)
    etag = s3.put_object(Bucket=config.bucket.name, Key=sample.key, Body=sample.body)["ETag"]
    import_id = derive_import_id(config.bucket.name, sample.key, etag)
    _say(
        started,
        "feed %s: landed s3://%s/%s for today; its event starts the import",
        feed.name,
        config.bucket.name,
        sample.key,
    )
    deadline = time.monotonic() + EVENT_FILE_TIMEOUT
    while not files.is_verified(
        s3, bucket_name=config.bucket.name, manifest_prefix=feed.manifest_prefix, import_id=import_id
    ):
        if time.monotonic() > deadline:
            raise DemoFailed(f"{sample.key} was not verified within {EVENT_FILE_TIMEOUT:.0f} s of landing")
        time.sleep(1)
    outcome = read_outcome(
        s3,
        sample,
        bucket_name=config.bucket.name,
        manifest_prefix=feed.manifest_prefix,
        expected_shards=expected_shards(feed, sample),
    )
    run_id = event_run_of(client, feed, sample.key)
    _say(
        started,
        "feed %s: %s imported by its event (run %s) and verified %s; landing to verified %s s",
        feed.name,
        sample.key,
        run_id or "not found",
        "as expected" if outcome.as_expected else f"NOT as expected ({'; '.join(outcome.problems)})",
        f"{outcome.latency_seconds:.0f}" if outcome.latency_seconds is not None else "?",
    )
    if run_id is None or not outcome.as_expected:
        raise DemoFailed(f"{sample.key}: no run started by its event imported it as expected")
    return outcome


def event_run_of(client: AirflowRestClient, feed: FeedConfig, key: str) -> str | None:
    """The run started by landing events whose ``list_files`` planned ``key``."""
    for run in client.dag_runs(feed.dag_id, run_type="asset_triggered"):
        plans = client.xcom(feed.dag_id, run["dag_run_id"], "list_files") or []
        if any(plan.get("s3_key") == key for plan in plans):
            return str(run["dag_run_id"])
    return None


def backfill_week(
    client: AirflowRestClient,
    config: PipelineConfig,
    samples: list[SampleFile],
    timeout: float,
    started: float,
) -> list[dict[str, Any]]:
    """One backfill per feed over the landed week, created while its DAG is paused; waits for all of them."""
    first: date = min(sample.partition_date for sample in samples)
    last: date = max(sample.partition_date for sample in samples)
    backfills = []
    for feed in demo_feeds(config):
        backfill = client.backfill_while_paused(
            feed.dag_id,
            from_date=f"{first.isoformat()}T00:00:00Z",
            to_date=f"{last.isoformat()}T00:00:00Z",
            # Four days at once: a run mostly waits (the deferred import's settle delay, the scheduler loop), so
            # two left the 2-core machine idle; seven were no faster than four.
            max_active_runs=4,
            dag_run_conf={"max_reject_ratio": DEMO_MAX_REJECT_RATIO},
        )
        _say(
            started,
            "backfill %s of %s created for %s .. %s; the scheduler runs it",
            backfill["id"],
            feed.dag_id,
            first,
            last,
        )
        backfills.append(backfill)
    runs: list[dict[str, Any]] = []
    for backfill in backfills:
        finished = client.wait_for_backfill(backfill, timeout=timeout)
        states = ", ".join(f"{run['logical_date'][:10]} {run['state']}" for run in finished)
        _say(started, "backfill of %s complete: %s", backfill["dag_id"], states)
        runs.extend(finished)
    return runs


def task_instances_by_host(client: AirflowRestClient, runs: list[dict[str, Any]]) -> dict[str, int]:
    """How many task instances of ``runs`` each host ran, from the REST API (``hostname`` of each try)."""
    counts: dict[str, int] = {}
    for run in runs:
        for instance in client.task_instances(run["dag_id"], run["dag_run_id"]):
            host = instance.get("hostname")
            if host:
                counts[host] = counts.get(host, 0) + 1
    return counts


def expected_shards(feed: FeedConfig, sample: SampleFile) -> int:
    """How many shards ``feed``'s import DAG makes of ``sample``."""
    return files.shard_count_for(
        len(sample.body),
        threshold_bytes=feed.import_.shard_threshold_bytes,
        target_bytes=feed.import_.shard_target_bytes,
        max_shards=feed.import_.max_shards,
    )


def summarise(config: PipelineConfig, endpoint_url: str, samples: list[SampleFile]) -> list[FileOutcome]:
    s3 = _s3_client(config, endpoint_url)
    return [
        read_outcome(
            s3,
            sample,
            bucket_name=config.bucket.name,
            manifest_prefix=config.feed(sample.feed).manifest_prefix,
            expected_shards=expected_shards(config.feed(sample.feed), sample),
        )
        for sample in samples
    ]


def _serve_until_interrupted(standalone: AirflowStandalone, endpoint_url: str, home: Path) -> None:
    login = standalone.login
    print(
        f"\nAirflow UI:   {standalone.url}   (login {login.username} / {login.password})\n"
        f"Local AWS:    {endpoint_url}\n"
        f"Logs:         {home}\n"
        "Everything keeps running: trigger an import_<feed> DAG from the UI with an s3_key, or backfill it.\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    try:
        while True:
            time.sleep(1)
    except (KeyboardInterrupt, _Stop):
        print("\nstopping", flush=True)
