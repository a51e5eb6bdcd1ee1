"""
### Import CSV files from S3 into DynamoDB, one AWS Batch job per file

The run for date **D** covers the data interval `[D, D+1)` and imports the landing partition
`s3://<bucket>/incoming/D/` once D is over. History: `airflow backfill create --dag-id import_csv_to_dynamodb
--from-date ... --to-date ...` (catchup is off, so a fresh deployment never queues months of runs).

1. `wait_for_files`: waits (reschedule mode, no worker slot held) for a `.csv`/`.csv.gz` in the partition, for
   the configured grace period; then the run is **skipped**, saying that no file landed for D.
   A run triggered with `s3_key` does not wait.
2. `list_files`: the partition's files (or the one `s3_key`, which must lie under the landing prefix),
   minus files already imported and verified unless `reprocess` is set.
3. `import_file` (mapped per file): the `csv-importer` job on AWS Batch, an array job when the file is large;
   a retry reattaches to the job already submitted. Bad input and an exceeded reject ratio fail at once.
4. `verify_file` (mapped per file): the import's items in DynamoDB against the job's manifests; it updates the
   table's Asset, so downstream DAGs can be scheduled on fresh data.

Configuration: `include/config/pipeline.toml` with `CSV_IMPORT__SECTION__KEY` environment overrides.
See `docs/import_dag.md`.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, task_group

from batch_import.config import load_config
from batch_import.files import s3_key_pattern
from batch_import.operators import (
    BatchSubmitOperator,
    LandingFileSensor,
    ListLandedFilesOperator,
    VerifyImportOperator,
)

config = load_config()
aws = {"aws_conn_id": config.aws.conn_id, "region_name": config.aws.region}
bucket = config.bucket
table_asset = Asset(name=config.table.name, uri=f"dynamodb://{config.table.name}")

with DAG(
    dag_id="import_csv_to_dynamodb",
    description="Import the CSV files landing in S3 into DynamoDB through AWS Batch, verified per file",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable(config.schedule.cron, timezone=config.schedule.timezone),
    start_date=pendulum.parse(config.schedule.start_date, tz=config.schedule.timezone),
    catchup=config.schedule.catchup,
    max_active_runs=config.schedule.max_active_runs,
    tags=["csv-import", "aws-batch", "dynamodb"],
    default_args={
        "owner": "data-engineering",
        "retries": config.import_.task_retries,
        "retry_delay": timedelta(seconds=config.import_.retry_delay_seconds),
    },
    params={
        "s3_key": Param(
            None,
            type=["null", "string"],
            pattern=s3_key_pattern(bucket.landing_prefix),
            title="S3 key to import",
            description=(
                f"Import just this object, e.g. {bucket.landing_prefix}2026-01-02/orders.csv; it must lie under "
                f"{bucket.landing_prefix} and end in .csv or .csv.gz. Empty: the run's partition "
                f"{bucket.landing_prefix}<date>/."
            ),
        ),
        "reprocess": Param(
            False,
            type="boolean",
            title="Reprocess verified files",
            description="Import again files whose import was already verified (off: they are skipped).",
        ),
        "max_reject_ratio": Param(
            config.import_.max_reject_ratio,
            type="number",
            minimum=0,
            maximum=1,
            title="Maximum reject ratio",
            description="Fail a file when more than this share of its rows is rejected (0 to 1).",
        ),
    },
) as dag:
    wait_for_files = LandingFileSensor(
        task_id="wait_for_files",
        bucket_name=bucket.name,
        landing_prefix=bucket.landing_prefix,
        mode="reschedule",
        poke_interval=config.schedule.sensor_poke_seconds,
        timeout=config.schedule.sensor_grace_seconds,
        **aws,
    )

    list_files = ListLandedFilesOperator(
        task_id="list_files",
        bucket_name=bucket.name,
        landing_prefix=bucket.landing_prefix,
        manifest_prefix=bucket.manifest_prefix,
        shard_threshold_bytes=config.import_.shard_threshold_bytes,
        shard_target_bytes=config.import_.shard_target_bytes,
        max_shards=config.import_.max_shards,
        default_max_reject_ratio=config.import_.max_reject_ratio,
        **aws,
    )

    @task_group(group_id="import_files", prefix_group_id=False)
    def import_files(
        s3_key: str,
        import_id: str,
        etag: str,
        shard_count: int,
        size_bytes: int,
        job_name: str,
        container_overrides: dict,
        array_properties: dict | None,
    ) -> None:
        """One landed file: its Batch import, then its verification."""
        import_file = BatchSubmitOperator(
            task_id="import_file",
            job_name=job_name,
            job_queue=config.batch.job_queue,
            job_definition=config.batch.job_definition,
            container_overrides=container_overrides,
            array_properties=array_properties,
            import_id=import_id,
            s3_key=s3_key,
            shard_count=shard_count,
            bucket_name=bucket.name,
            manifest_prefix=bucket.manifest_prefix,
            rejected_prefix=bucket.rejected_prefix,
            awslogs_enabled=True,
            awslogs_fetch_interval=timedelta(seconds=config.import_.poll_interval_seconds),
            poll_interval=config.import_.poll_interval_seconds,
            **aws,
        )
        verify_file = VerifyImportOperator(
            task_id="verify_file",
            import_id=import_id,
            s3_key=s3_key,
            expected_etag=etag,
            shard_count=shard_count,
            bucket_name=bucket.name,
            manifest_prefix=bucket.manifest_prefix,
            rejected_prefix=bucket.rejected_prefix,
            table_name=config.table.name,
            key_schema=[(name, key_type) for name, _, key_type in config.table.key_schema],
            vcpus=config.batch.vcpus,
            memory_mib=config.batch.memory_mib,
            prices=dataclasses.asdict(config.prices),
            outlets=[table_asset],
            **aws,
        )
        import_file >> verify_file

    wait_for_files >> list_files >> import_files.expand_kwargs(list_files.output)
