"""Landing to verified when files are imported by their S3 events (AssetWatcher on the feed's SQS queue).

Starts its own provisioned stack (:func:`include.demo.stack.provisioned_stack`: local endpoint, ``airflow
standalone`` with its triggerer) with the shipped ``[events]`` and ``[import]`` polling settings, lands small
files one by one (each once the previous one is verified) and then one file large enough to be sharded, and
reads each file's S3 LastModified and its ``verified.json``'s LastModified.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from batch_import import files
from batch_import.config import FeedConfig, load_config
from csv_importer.import_id import derive_import_id
from include.bench.context import BenchContext
from include.bench.sample_files import SAMPLE_COLUMN_TYPES, sample_csv
from include.demo.stack import ProvisionedStack, provisioned_stack

TITLE = "Landing to verified, imported by the file's S3 event"
SHARD_BYTES = 1024 * 1024  # the bench's shard threshold and target: the large file runs as an array job
VERIFIED_WITHIN = 300.0
GOAL_P50_SECONDS = 30.0
GOAL_MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Landed:
    key: str
    size: int
    shards: int
    seconds: float


def _settings(feed_name: str) -> dict[str, str]:
    """Shipped polling (events, Batch); only the sample's columns and a small shard threshold differ."""
    return {
        f"CSV_IMPORT__FEEDS__{feed_name.upper()}__COLUMN_TYPES": SAMPLE_COLUMN_TYPES,
        "CSV_IMPORT__IMPORT__SHARD_THRESHOLD_BYTES": str(SHARD_BYTES),
        "CSV_IMPORT__IMPORT__SHARD_TARGET_BYTES": str(SHARD_BYTES),
    }


def _land_and_wait(stack: ProvisionedStack, feed: FeedConfig, key: str, rows: int) -> Landed:
    s3 = stack.aws("s3")
    bucket = stack.config.bucket.name
    body = sample_csv(rows)
    etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
    import_id = derive_import_id(bucket, key, etag)
    deadline = time.monotonic() + VERIFIED_WITHIN
    while not files.is_verified(
        s3, bucket_name=bucket, manifest_prefix=feed.manifest_prefix, import_id=import_id
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key} was not verified within {VERIFIED_WITHIN:.0f} s of landing")
        time.sleep(0.5)
    landed_at = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    verified_at = s3.head_object(
        Bucket=bucket, Key=files.verified_marker_key(feed.manifest_prefix, import_id)
    )["LastModified"]
    shards = files.shard_count_for(
        len(body),
        threshold_bytes=feed.import_.shard_threshold_bytes,
        target_bytes=feed.import_.shard_target_bytes,
        max_shards=feed.import_.max_shards,
    )
    return Landed(key=key, size=len(body), shards=shards, seconds=(verified_at - landed_at).total_seconds())


def run(context: BenchContext) -> str:
    feed_name = load_config(environ={}).feeds[0].name  # the shipped config's first feed
    small_count = 3 if context.quick else 8
    large_rows = 30_000 if context.quick else 120_000
    day = (datetime.now(UTC) - timedelta(days=30)).date()  # no scheduled run covers it: only events import it
    with provisioned_stack(context.scratch / "event-latency", _settings(feed_name)) as stack:
        feed = stack.config.feed(feed_name)
        prefix = f"{feed.landing_prefix}{day.isoformat()}/"
        small = [_land_and_wait(stack, feed, f"{prefix}small-{n}.csv", 200) for n in range(small_count)]
        large = _land_and_wait(stack, feed, f"{prefix}large.csv", large_rows)
        events = stack.config.events
        poll_interval = feed.import_.poll_interval_seconds
        settle = feed.import_.deferral_settle_seconds if feed.import_.deferrable else 0
    seconds = [each.seconds for each in small]
    p50, worst = statistics.median(seconds), max(seconds)
    lines = [
        (
            f"Its own stack (local endpoint, `airflow standalone` with scheduler and triggerer, LocalExecutor) with "
            f"the shipped polling: the trigger long-polls the feed's queue {events.long_poll_seconds} s "
            f"(`events.long_poll_seconds`) and pauses {events.empty_poll_delay_seconds} s after an empty receive "
            f"(`events.empty_poll_delay_seconds`); `import_file` polls Batch every {poll_interval} s "
            f"(`import.poll_interval_seconds`). {small_count} small files landed one by one (each after the previous "
            f"was verified), then one large file (shard threshold {SHARD_BYTES // 1024} KiB for this section). "
            "Latency = the `verified.json` marker's S3 LastModified minus the file's (whole seconds)."
        ),
        "",
        "| key | bytes | shards | landing to verified (s) |",
        "|---|---:|---:|---:|",
        *(
            f"| `{each.key}` | {each.size:,} | {each.shards} | {each.seconds:.0f} |"
            for each in [*small, large]
        ),
        "",
        f"The large file ({large.shards} shards): {large.seconds:.0f} s.",
        "",
        (
            f"Goal: small files landing to verified p50 at most {GOAL_P50_SECONDS:.0f} s and max at most "
            f"{GOAL_MAX_SECONDS:.0f} s with the shipped polling. Measured p50 {p50:.0f} s, max {worst:.0f} s: "
            f"{'meets' if p50 <= GOAL_P50_SECONDS and worst <= GOAL_MAX_SECONDS else 'misses'} the goal."
        ),
        "",
        (
            "What bounds it: a message that arrives during a long poll is received at once, one that arrives during "
            f"the pause after an empty receive waits up to {events.empty_poll_delay_seconds} s; then the triggerer "
            "records the asset event, the scheduler's next loop creates the run, and four tasks start one after "
            "another on the LocalExecutor (a few seconds each on 2 cores); `import_file`, deferred, polls Batch "
            f"first after {settle:g} s (`import.deferral_settle_seconds`) and then every {poll_interval} s, so it sees "
            "its job finish up to one poll late; `verify_file` counts and writes the marker. Lower "
            "`events.empty_poll_delay_seconds` and `import.poll_interval_seconds` for lower latency (the demo uses "
            "1 s and 2 s), at the cost of more SQS receives and Batch DescribeJobs calls."
        ),
    ]
    return "\n".join(lines)
