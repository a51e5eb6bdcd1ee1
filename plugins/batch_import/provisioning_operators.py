"""Thin operators over :mod:`batch_import.provisioning`: one per resource kind, plus the run's summary.

Each ``Ensure*Operator`` builds the boto3 clients it needs from its AWS connection
(``aws_conn_id``/``region_name``/``verify``/``botocore_config``), calls one ``ensure_*`` function, logs the
outcome (created / updated / unchanged and what changed) and returns it as XCom::

    {"resource": "job_queue", "name": "csv-import-queue", "action": "unchanged", "changes": [], "arn": "..."}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from batch_import.provisioning import ProvisioningError, ProvisionResult, summarize
from batch_import.provisioning import batch as batch_resources
from batch_import.provisioning import dynamodb as dynamodb_resources
from batch_import.provisioning import iam as iam_resources
from batch_import.provisioning import logs as logs_resources
from batch_import.provisioning import s3 as s3_resources
from batch_import.provisioning import sqs as sqs_resources
from batch_import.provisioning.feeds import find_unconfigured_feeds
from batch_import.provisioning.hook import ProvisioningHook
from batch_import.provisioning.outcome import summary_key

if TYPE_CHECKING:
    from airflow.sdk import Context


class EnsureResourceOperator(AwsBaseOperator[ProvisioningHook]):
    """Base: ensure one resource, log the outcome, push it to XCom. Subclasses implement :meth:`ensure`.

    :param feed: the feed the resource belongs to (its table, job role, job definition); empty for a shared
        resource. The XCom then carries ``feed`` and the summary names the resource ``<feed>.<resource>``.
    """

    aws_hook_class = ProvisioningHook
    ui_color = "#e8f4ea"

    def __init__(self, *, feed: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feed = feed

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            result = self.ensure(self.hook)
        except ProvisioningError as err:
            # A change that cannot be made in place: a retry would only repeat the refusal.
            raise AirflowFailException(str(err)) from err
        if self.feed:
            self.log.info("Provisioning feed %s: %s", self.feed, result.describe())
            return {**result.as_dict(), "feed": self.feed}
        self.log.info("Provisioning: %s", result.describe())
        return result.as_dict()

    def summary_key(self, result: ProvisionResult) -> str:
        """The name of ``result`` in the run's summary (``job_queue``, ``orders.table``)."""
        return summary_key(result.resource, self.feed)

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        raise NotImplementedError


class EnsureBucketOperator(EnsureResourceOperator):
    """The landing bucket: public access blocked, default encryption (SSE-S3, or SSE-KMS with a key ARN)."""

    template_fields: Sequence[str] = aws_template_fields("bucket_name", "kms_key_id")

    def __init__(self, *, bucket_name: str, kms_key_id: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.kms_key_id = kms_key_id

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        return s3_resources.ensure_bucket(
            hook.client_for("s3"),
            bucket_name=self.bucket_name,
            region=hook.effective_region,
            kms_key_id=self.kms_key_id,
        )


class EnsureTableOperator(EnsureResourceOperator):
    """The items table: on demand, ``key_schema`` ``[(name, HASH|RANGE, S|N), ...]``, PITR, the opt-in GSI on importId."""

    template_fields: Sequence[str] = aws_template_fields("table_name", "import_id_index")

    def __init__(
        self,
        *,
        table_name: str,
        key_schema: Sequence[Sequence[str]],
        import_id_index: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table_name = table_name
        self.key_schema = key_schema
        self.import_id_index = import_id_index

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        return dynamodb_resources.ensure_table(
            hook.client_for("dynamodb"),
            table_name=self.table_name,
            key_schema=[(name, role, attr_type) for name, role, attr_type in self.key_schema],
            import_id_index=self.import_id_index,
        )


class EnsureJobRoleOperator(EnsureResourceOperator):
    """The job's role (trusted by ECS tasks) with its least-privilege inline policy."""

    template_fields: Sequence[str] = aws_template_fields(
        "role_name",
        "path",
        "bucket_name",
        "landing_prefix",
        "rejected_prefix",
        "manifest_prefix",
        "table_name",
    )

    def __init__(
        self,
        *,
        role_name: str,
        path: str,
        bucket_name: str,
        landing_prefix: str,
        rejected_prefix: str,
        manifest_prefix: str,
        table_name: str,
        kms_key_id: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role_name = role_name
        self.path = path
        self.bucket_name = bucket_name
        self.landing_prefix = landing_prefix
        self.rejected_prefix = rejected_prefix
        self.manifest_prefix = manifest_prefix
        self.table_name = table_name
        self.kms_key_id = kms_key_id

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        policy = iam_resources.job_role_policy(
            hook.describe_account(),
            bucket_name=self.bucket_name,
            landing_prefix=self.landing_prefix,
            rejected_prefix=self.rejected_prefix,
            manifest_prefix=self.manifest_prefix,
            table_name=self.table_name,
            kms_key_arn=self.kms_key_id,
        )
        return iam_resources.ensure_role(
            hook.client_for("iam"),
            resource="job_role",
            role_name=self.role_name,
            path=self.path,
            trusted_service=iam_resources.ECS_TASKS,
            inline_policy_name=iam_resources.JOB_POLICY_NAME,
            inline_policy=policy,
            description="CSV import job: read landing files, write rejects/manifests and table items",
        )


class _EnsureManagedPolicyRoleOperator(EnsureResourceOperator):
    """A role trusted by one AWS service with one AWS managed policy attached; subclasses name which."""

    template_fields: Sequence[str] = aws_template_fields("role_name", "path")
    resource: str
    trusted_service: str
    managed_policy: str
    role_description: str

    def __init__(self, *, role_name: str, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role_name = role_name
        self.path = path

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        account = hook.describe_account()
        return iam_resources.ensure_role(
            hook.client_for("iam"),
            resource=self.resource,
            role_name=self.role_name,
            path=self.path,
            trusted_service=self.trusted_service,
            managed_policy_arns=[account.aws_managed_policy_arn(self.managed_policy)],
            description=self.role_description,
        )


class EnsureExecutionRoleOperator(_EnsureManagedPolicyRoleOperator):
    """The ECS task execution role (pull the image, write the job's logs)."""

    resource = "execution_role"
    trusted_service = iam_resources.ECS_TASKS
    managed_policy = iam_resources.EXECUTION_ROLE_POLICY
    role_description = "CSV import job: ECS task execution (image pull, logs)"


class EnsureInstanceRoleOperator(_EnsureManagedPolicyRoleOperator):
    """EC2/SPOT compute environments only: the container instances' role."""

    resource = "instance_role"
    trusted_service = iam_resources.EC2
    managed_policy = iam_resources.INSTANCE_ROLE_POLICY
    role_description = "CSV import: ECS container instances of the Batch compute environment"


class EnsureInstanceProfileOperator(EnsureResourceOperator):
    """EC2/SPOT compute environments only: the instance profile holding the instance role (same name)."""

    template_fields: Sequence[str] = aws_template_fields("profile_name", "path", "role_name")

    def __init__(self, *, profile_name: str, path: str, role_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile_name = profile_name
        self.path = path
        self.role_name = role_name

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        return iam_resources.ensure_instance_profile(
            hook.client_for("iam"),
            resource="instance_profile",
            profile_name=self.profile_name,
            path=self.path,
            role_name=self.role_name,
        )


class EnsureLogGroupOperator(EnsureResourceOperator):
    """The CloudWatch log group of the job definition's awslogs driver."""

    template_fields: Sequence[str] = aws_template_fields("log_group_name")

    def __init__(self, *, log_group_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_group_name = log_group_name

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        return logs_resources.ensure_log_group(hook.client_for("logs"), log_group_name=self.log_group_name)


class EnsureComputeEnvironmentOperator(EnsureResourceOperator):
    """The managed compute environment; empty ``subnets``/``security_group_ids`` mean the default VPC's."""

    template_fields: Sequence[str] = aws_template_fields(
        "compute_environment_name", "subnets", "security_group_ids", "instance_profile_name"
    )

    def __init__(
        self,
        *,
        compute_environment_name: str,
        compute_type: str,
        max_vcpus: int,
        subnets: Sequence[str] = (),
        security_group_ids: Sequence[str] = (),
        instance_types: Sequence[str] = (),
        instance_profile_name: str = "",
        ready_timeout_seconds: float = 900,
        ready_poll_seconds: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.compute_environment_name = compute_environment_name
        self.compute_type = compute_type
        self.max_vcpus = max_vcpus
        self.subnets = subnets
        self.security_group_ids = security_group_ids
        self.instance_types = instance_types
        self.instance_profile_name = instance_profile_name
        self.ready_timeout_seconds = ready_timeout_seconds
        self.ready_poll_seconds = ready_poll_seconds

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        network = batch_resources.resolve_network(
            hook.client_for("ec2"), subnets=self.subnets, security_group_ids=self.security_group_ids
        )
        instance_profile_arn = ""
        if self.compute_type not in batch_resources.FARGATE_TYPES:
            instance_profile_arn = iam_resources.instance_profile_arn(
                hook.client_for("iam"), self.instance_profile_name
            )
        resources = batch_resources.compute_resources(
            compute_type=self.compute_type,
            max_vcpus=int(self.max_vcpus),
            network=network,
            instance_types=self.instance_types,
            instance_profile_arn=instance_profile_arn,
        )
        return batch_resources.ensure_compute_environment(
            hook.client_for("batch"),
            name=self.compute_environment_name,
            resources=resources,
            wait=batch_resources.ReadyWait(self.ready_timeout_seconds, self.ready_poll_seconds),
        )


class EnsureJobQueueOperator(EnsureResourceOperator):
    """The job queue, fed by the compute environment (referred to by ARN)."""

    template_fields: Sequence[str] = aws_template_fields("job_queue_name", "compute_environment_name")

    def __init__(
        self,
        *,
        job_queue_name: str,
        compute_environment_name: str,
        priority: int,
        ready_timeout_seconds: float = 900,
        ready_poll_seconds: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_queue_name = job_queue_name
        self.compute_environment_name = compute_environment_name
        self.priority = priority
        self.ready_timeout_seconds = ready_timeout_seconds
        self.ready_poll_seconds = ready_poll_seconds

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        batch_client = hook.client_for("batch")
        return batch_resources.ensure_job_queue(
            batch_client,
            name=self.job_queue_name,
            priority=int(self.priority),
            compute_environment_arns=[
                batch_resources.compute_environment_arn(batch_client, self.compute_environment_name)
            ],
            wait=batch_resources.ReadyWait(self.ready_timeout_seconds, self.ready_poll_seconds),
        )


class EnsureJobDefinitionOperator(EnsureResourceOperator):
    """The import job's definition; a new revision only when its content changed."""

    template_fields: Sequence[str] = aws_template_fields(
        "job_definition_name", "image", "command", "environment", "job_role_name", "execution_role_name"
    )

    def __init__(
        self,
        *,
        job_definition_name: str,
        image: str,
        command: Sequence[str],
        vcpus: float,
        memory_mib: int,
        environment: Mapping[str, str],
        job_role_name: str,
        execution_role_name: str,
        attempts: int,
        attempt_timeout_seconds: int,
        log_group: str,
        compute_type: str,
        assign_public_ip: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_definition_name = job_definition_name
        self.image = image
        self.command = command
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.environment = environment
        self.job_role_name = job_role_name
        self.execution_role_name = execution_role_name
        self.attempts = attempts
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self.log_group = log_group
        self.compute_type = compute_type
        self.assign_public_ip = assign_public_ip

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        iam_client = hook.client_for("iam")
        content = batch_resources.job_definition_content(
            image=self.image,
            command=self.command,
            vcpus=float(self.vcpus),
            memory_mib=int(self.memory_mib),
            environment={key: str(value) for key, value in self.environment.items()},
            job_role_arn=iam_resources.role_arn(iam_client, self.job_role_name),
            execution_role_arn=iam_resources.role_arn(iam_client, self.execution_role_name),
            attempts=int(self.attempts),
            attempt_timeout_seconds=int(self.attempt_timeout_seconds),
            log_group=self.log_group,
            log_region=hook.effective_region,
            fargate=self.compute_type in batch_resources.FARGATE_TYPES,
            assign_public_ip=bool(self.assign_public_ip),
        )
        return batch_resources.ensure_job_definition(
            hook.client_for("batch"), name=self.job_definition_name, content=content
        )


class EnsureEventQueueOperator(EnsureResourceOperator):
    """A feed's SQS event queue: dead-letter queue, redrive policy, a policy admitting only the bucket's S3 events."""

    template_fields: Sequence[str] = aws_template_fields(
        "queue_name", "dead_letter_queue_name", "bucket_name"
    )

    def __init__(
        self,
        *,
        queue_name: str,
        dead_letter_queue_name: str,
        bucket_name: str,
        max_receive_count: int,
        dead_letter_retention_seconds: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.queue_name = queue_name
        self.dead_letter_queue_name = dead_letter_queue_name
        self.bucket_name = bucket_name
        self.max_receive_count = max_receive_count
        self.dead_letter_retention_seconds = dead_letter_retention_seconds

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        return sqs_resources.ensure_event_queue(
            hook.client_for("sqs"),
            hook.describe_account(),
            queue_name=self.queue_name,
            dead_letter_queue_name=self.dead_letter_queue_name,
            bucket_name=self.bucket_name,
            max_receive_count=self.max_receive_count,
            dead_letter_retention_seconds=self.dead_letter_retention_seconds,
        )


class EnsureEventNotificationsOperator(EnsureResourceOperator):
    """The bucket's ObjectCreated notifications, each feed's landing prefix to its queue, merged in one task.

    One task for all feeds: S3 replaces the bucket's notification configuration as a whole, so per-feed tasks
    running side by side would overwrite each other's read-modify-write.

    :param feed_queues: ``[(queue name, landing prefix), ...]``, one per feed; the queue name is also the
        notification's configuration Id
    """

    template_fields: Sequence[str] = aws_template_fields("bucket_name")

    def __init__(self, *, bucket_name: str, feed_queues: Sequence[Sequence[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.feed_queues = feed_queues

    def ensure(self, hook: ProvisioningHook) -> ProvisionResult:
        account = hook.describe_account()
        notifications = [
            s3_resources.QueueNotification(
                configuration_id=queue_name,
                queue_arn=sqs_resources.queue_arn(account, queue_name),
                prefix=landing_prefix,
            )
            for queue_name, landing_prefix in self.feed_queues
        ]
        return s3_resources.ensure_event_notifications(
            hook.client_for("s3"), bucket_name=self.bucket_name, notifications=notifications
        )


class ReportUnconfiguredFeedsOperator(AwsBaseOperator[ProvisioningHook]):
    """Logs every feed that was provisioned but is no longer in the config; changes nothing, deletes nothing.

    Its XCom is the list of such feeds (name, job role, job definition, table).
    """

    aws_hook_class = ProvisioningHook
    template_fields: Sequence[str] = aws_template_fields("role_base", "iam_path", "job_definition_base")

    def __init__(
        self,
        *,
        role_base: str,
        iam_path: str,
        job_definition_base: str,
        configured_feeds: Sequence[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.role_base = role_base
        self.iam_path = iam_path
        self.job_definition_base = job_definition_base
        self.configured_feeds = configured_feeds

    def execute(self, context: Context) -> list[dict[str, str]]:
        leftovers = find_unconfigured_feeds(
            self.hook.client_for("iam"),
            self.hook.client_for("batch"),
            role_base=self.role_base,
            iam_path=self.iam_path,
            job_definition_base=self.job_definition_base,
            configured=self.configured_feeds,
        )
        for feed in leftovers:
            self.log.warning(
                "Feed %s is no longer configured: left alone, nothing is deleted (job role %s, job definition "
                "%s, table %s)",
                feed.name,
                feed.job_role or "-",
                feed.job_definition or "-",
                feed.table or "-",
            )
        if not leftovers:
            self.log.info("Every provisioned feed is configured (%s)", ", ".join(self.configured_feeds))
        return [feed.as_dict() for feed in leftovers]


class ProvisioningSummaryOperator(BaseOperator):
    """Collects the ensure tasks' results into ``{resource: created|updated|unchanged}`` (its XCom)."""

    template_fields: Sequence[str] = ("results",)

    def __init__(self, *, results: Sequence[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context: Context) -> dict[str, str]:
        summary = summarize(self.results)
        for result in self.results:
            self.log.info(
                "%s %s: %s %s",
                summary_key(result["resource"], result.get("feed") or ""),
                result["name"],
                result["action"],
                result.get("changes") or "",
            )
        changed = sorted(resource for resource, action in summary.items() if action != "unchanged")
        self.log.info("Provisioning summary: %s; changed: %s", summary, changed or "nothing")
        return summary
