"""
### Provision the Batch environment of the CSV import

Triggered by hand, safe to run at any time. It brings what every feed's `import_<feed>` DAG needs to the state
described in `include/config/pipeline.toml` (plus `CSV_IMPORT__...` environment overrides):

| task | resource |
|---|---|
| `ensure_bucket` | S3 bucket: public access blocked, default encryption |
| `ensure_execution_role` | IAM role for ECS task execution (shared) |
| `ensure_instance_role`, `ensure_instance_profile` | EC2 / SPOT compute environments only |
| `ensure_log_group` | CloudWatch log group of the job's awslogs driver |
| `ensure_compute_environment` → `ensure_job_queue` | Batch, shared by every feed, waited on until VALID and ENABLED |
| `<feed>.ensure_table` | the feed's DynamoDB table: on demand, its keys, PITR, the opt-in `importId` index (`import_id_index`) |
| `<feed>.ensure_job_role` | the feed's IAM role: only its landing prefix, its bookkeeping prefixes, its table |
| `<feed>.ensure_job_definition` | the feed's job definition, a new revision only when its content changed |
| `<feed>.ensure_event_queue` | the feed's SQS queue of landing events: dead-letter queue, redrive policy, only the bucket may send |
| `ensure_event_notifications` | the bucket's `s3:ObjectCreated:*` notification per feed (its landing prefix to its queue), merged with the bucket's other notifications |
| `report_unconfigured_feeds` | logs feeds provisioned before but no longer configured (left alone) |
| `summarize` | XCom `{resource: created / updated / unchanged}`, feed resources as `<feed>.<resource>` |

Every task describes first, creates what is missing, updates in place what differs, and makes no mutating
call when nothing differs. A change that cannot be made in place (another table key schema, another compute
type) fails the task with a message saying what to do; nothing is ever deleted. See `docs/provisioning.md`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, TaskGroup

from batch_import.config import load_config
from batch_import.provisioning.batch import FARGATE_TYPES, job_environment_from_config
from batch_import.provisioning_operators import (
    EnsureBucketOperator,
    EnsureComputeEnvironmentOperator,
    EnsureEventNotificationsOperator,
    EnsureEventQueueOperator,
    EnsureExecutionRoleOperator,
    EnsureInstanceProfileOperator,
    EnsureInstanceRoleOperator,
    EnsureJobDefinitionOperator,
    EnsureJobQueueOperator,
    EnsureJobRoleOperator,
    EnsureLogGroupOperator,
    EnsureTableOperator,
    ProvisioningSummaryOperator,
    ReportUnconfiguredFeedsOperator,
)

config = load_config()
aws = {"aws_conn_id": config.aws.conn_id, "region_name": config.aws.region}
uses_instances = config.batch.compute_type not in FARGATE_TYPES

with DAG(
    dag_id="provision_batch_environment",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["csv-import", "provisioning", "aws-batch"],
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
) as dag:
    bucket = EnsureBucketOperator(
        task_id="ensure_bucket", bucket_name=config.bucket.name, kms_key_id=config.bucket.kms_key_id, **aws
    )
    execution_role = EnsureExecutionRoleOperator(
        task_id="ensure_execution_role", role_name=config.iam.execution_role, path=config.iam.path, **aws
    )
    log_group = EnsureLogGroupOperator(
        task_id="ensure_log_group", log_group_name=config.batch.log_group, **aws
    )
    compute_environment = EnsureComputeEnvironmentOperator(
        task_id="ensure_compute_environment",
        compute_environment_name=config.batch.compute_environment,
        compute_type=config.batch.compute_type,
        max_vcpus=config.batch.max_vcpus,
        subnets=config.batch.subnets,
        security_group_ids=config.batch.security_group_ids,
        instance_types=config.batch.instance_types,
        instance_profile_name=config.iam.instance_role if uses_instances else "",
        ready_timeout_seconds=config.batch.ready_timeout_seconds,
        **aws,
    )
    job_queue = EnsureJobQueueOperator(
        task_id="ensure_job_queue",
        job_queue_name=config.batch.job_queue,
        compute_environment_name=config.batch.compute_environment,
        priority=config.batch.queue_priority,
        ready_timeout_seconds=config.batch.ready_timeout_seconds,
        **aws,
    )
    ensure_tasks = [bucket, execution_role, log_group, compute_environment, job_queue]

    event_queues = []
    for feed in config.feeds:
        with TaskGroup(
            group_id=feed.name, tooltip=f"feed {feed.name}: table, job role, job definition, event queue"
        ):
            table = EnsureTableOperator(
                task_id="ensure_table",
                feed=feed.name,
                table_name=feed.table.name,
                key_schema=feed.table.key_schema,
                import_id_index=feed.table.import_id_index,
                **aws,
            )
            job_role = EnsureJobRoleOperator(
                task_id="ensure_job_role",
                feed=feed.name,
                role_name=feed.job_role,
                path=config.iam.path,
                bucket_name=config.bucket.name,
                landing_prefix=feed.landing_prefix,
                rejected_prefix=feed.rejected_prefix,
                manifest_prefix=feed.manifest_prefix,
                table_name=feed.table.name,
                kms_key_id=config.bucket.kms_key_id,
                **aws,
            )
            job_definition = EnsureJobDefinitionOperator(
                task_id="ensure_job_definition",
                feed=feed.name,
                job_definition_name=feed.job_definition,
                image=config.batch.image,
                command=config.batch.command,
                vcpus=config.batch.vcpus,
                memory_mib=config.batch.memory_mib,
                environment=job_environment_from_config(config, feed),
                job_role_name=feed.job_role,
                execution_role_name=config.iam.execution_role,
                attempts=config.batch.attempts,
                attempt_timeout_seconds=config.batch.attempt_timeout_seconds,
                log_group=config.batch.log_group,
                compute_type=config.batch.compute_type,
                assign_public_ip=config.batch.assign_public_ip,
                **aws,
            )
            [job_role, execution_role, log_group] >> job_definition
            event_queue = EnsureEventQueueOperator(
                task_id="ensure_event_queue",
                feed=feed.name,
                queue_name=feed.event_queue,
                dead_letter_queue_name=feed.event_dead_letter_queue,
                bucket_name=config.bucket.name,
                max_receive_count=config.events.max_receive_count,
                dead_letter_retention_seconds=config.events.dead_letter_retention_seconds,
                **aws,
            )
        event_queues.append(event_queue)
        ensure_tasks += [table, job_role, job_definition, event_queue]

    event_notifications = EnsureEventNotificationsOperator(
        task_id="ensure_event_notifications",
        bucket_name=config.bucket.name,
        feed_queues=[(feed.event_queue, feed.landing_prefix) for feed in config.feeds],
        **aws,
    )
    [bucket, *event_queues] >> event_notifications
    ensure_tasks.append(event_notifications)

    if uses_instances:
        instance_role = EnsureInstanceRoleOperator(
            task_id="ensure_instance_role", role_name=config.iam.instance_role, path=config.iam.path, **aws
        )
        instance_profile = EnsureInstanceProfileOperator(
            task_id="ensure_instance_profile",
            profile_name=config.iam.instance_role,
            path=config.iam.path,
            role_name=config.iam.instance_role,
            **aws,
        )
        instance_role >> instance_profile >> compute_environment
        ensure_tasks += [instance_role, instance_profile]
    compute_environment >> job_queue

    ReportUnconfiguredFeedsOperator(
        task_id="report_unconfigured_feeds",
        role_base=config.iam.job_role,
        iam_path=config.iam.path,
        job_definition_base=config.batch.job_definition,
        configured_feeds=config.feed_names,
        **aws,
    )
    ProvisioningSummaryOperator(task_id="summarize", results=[task.output for task in ensure_tasks])
