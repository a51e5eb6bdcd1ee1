"""Idempotent provisioning against moto in-process: the real DAG's operators, their real hook, recorded calls.

The operators are taken from ``dags/provision_batch_environment.py`` (loaded with the test's config
overrides) and run in the DAG's order through :meth:`EnsureResourceOperator.ensure` with a real
:class:`ProvisioningHook` whose boto3 clients record every AWS operation (botocore ``before-call``).
The full Airflow run against the local endpoint is in tests/dags/test_provision_dag.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.batch import models as moto_batch

from batch_import.config import load_config
from batch_import.provisioning import ProvisioningError, ProvisionResult, summarize
from batch_import.provisioning.documents import normalise_policy
from batch_import.provisioning.feeds import find_unconfigured_feeds
from batch_import.provisioning.hook import ProvisioningHook
from batch_import.provisioning_operators import EnsureResourceOperator
from tests.fixtures.feeds import THREE_FEEDS, first_feed, write_feeds_config
from tests.fixtures.provisioning import FEED_RESOURCES
from tests.fixtures.provisioning import SHARED_RESOURCES as SHARED_RESOURCE_NAMES
from tests.plugins.test_import_verification import create_table_with_the_old_import_slot_index

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "provision_batch_environment.py"
REGION = "us-east-1"
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Head")
_module_counter = itertools.count()


class RecordingHook(ProvisioningHook):
    """The real hook (no Airflow connection: boto3's default chain, i.e. moto), recording each AWS call.

    ``before-parameter-build`` fires once per API call (paginator pages and waiter polls included) with the
    call's parameters as the caller passed them.
    """

    # One boto3 session for the module, so service models are parsed once (each task is its own process in
    # Airflow; here dozens of hooks would each parse the EC2 model again).
    shared_session: boto3.session.Session | None = None

    def __init__(self) -> None:
        super().__init__(aws_conn_id=None, region_name=REGION)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def get_session(self, region_name: str | None = None, deferrable: bool = False) -> boto3.session.Session:
        if RecordingHook.shared_session is None:
            RecordingHook.shared_session = super().get_session(region_name=region_name)
        return RecordingHook.shared_session

    def client_for(self, service_name: str) -> Any:
        is_new = service_name not in self._clients
        client = super().client_for(service_name)
        if is_new:
            client.meta.events.register("before-parameter-build", self._record)
        return client

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.service_model.service_name, model.name, params))

    def mutating_calls(self) -> list[tuple[str, str]]:
        return [(service, name) for service, name, _ in self.calls if not name.startswith(READ_ONLY_PREFIXES)]

    def params_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for _, name, params in self.calls if name == operation]


def _patch_moto_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.5 gaps the local endpoint (include/local_aws) also fixes: only what these tests trip over.

    CreateComputeEnvironment refuses a call without serviceRole (AWS uses its service-linked role), and
    UpdateComputeEnvironment ignores computeResources.
    """
    original_create = moto_batch.BatchBackend.create_compute_environment
    original_update = moto_batch.BatchBackend.update_compute_environment

    def create(self: Any, **kwargs: Any) -> Any:
        if not kwargs.get("service_role"):
            role = self.iam_backend.create_role(
                role_name=f"AWSServiceRoleForBatch-{next(_module_counter)}",
                assume_role_policy_document="{}",
                path="/aws-service-role/batch.amazonaws.com/",
                permissions_boundary=None,
                description="",
                tags=[],
                max_session_duration=None,
            )
            kwargs["service_role"] = role.arn
        return original_create(self, **kwargs)

    def update(self: Any, **kwargs: Any) -> Any:
        result = original_update(self, **kwargs)
        if kwargs.get("compute_resources"):
            environment = self.get_compute_environment(kwargs["compute_environment_name"])
            environment.compute_resources.update(kwargs["compute_resources"])
        return result

    monkeypatch.setattr(moto_batch.BatchBackend, "create_compute_environment", create)
    monkeypatch.setattr(moto_batch.BatchBackend, "update_compute_environment", update)


@pytest.fixture(scope="module")
def moto_aws() -> Iterator[None]:
    """One moto for the module (loading AWS managed IAM policies takes seconds per reset)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        _patch_moto_gaps(patch)
        with mock_aws():
            yield


@pytest.fixture
def aws(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unique resource names per test (through the config's env overrides), so tests share one moto."""
    for name in list(os.environ):
        if name.startswith("CSV_IMPORT__"):
            monkeypatch.delenv(name)
    suffix = next(_module_counter)
    for feed in load_config(environ={}).feeds:
        monkeypatch.setenv(
            f"CSV_IMPORT__FEEDS__{feed.name.upper()}__TABLE", f"csv-import-test-{suffix}-{feed.name}"
        )
    for key in (
        "BUCKET__NAME",
        "IAM__JOB_ROLE",
        "IAM__EXECUTION_ROLE",
        "IAM__INSTANCE_ROLE",
        "BATCH__COMPUTE_ENVIRONMENT",
        "BATCH__JOB_QUEUE",
        "BATCH__JOB_DEFINITION",
        "EVENTS__QUEUE",
    ):
        monkeypatch.setenv(
            f"CSV_IMPORT__{key}", f"csv-import-test-{suffix}-{key.split('__')[1].lower()}".replace("_", "-")
        )
    monkeypatch.setenv("CSV_IMPORT__BATCH__LOG_GROUP", f"/csv-import-test/{suffix}")


def load_dag(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> Any:
    """The provisioning DAG as its file builds it, with ``CSV_IMPORT__...`` overrides applied."""
    for key, value in overrides.items():
        monkeypatch.setenv(f"CSV_IMPORT__{key}", value)
    name = f"provision_dag_under_test_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def provision(module: Any) -> tuple[dict[str, ProvisionResult], RecordingHook]:
    """Run every ensure task of the DAG in dependency order, through one recording hook."""
    hook = RecordingHook()
    results: dict[str, ProvisionResult] = {}
    for task in module.dag.topological_sort():
        if isinstance(task, EnsureResourceOperator):
            result = task.ensure(hook)
            results[task.summary_key(result)] = result
    return results, hook


def use_feeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, feeds: Any) -> None:
    """Point the config at a generated file declaring ``feeds`` (their tables unique to this test)."""
    for name in list(os.environ):
        if name.startswith("CSV_IMPORT__FEEDS__"):
            monkeypatch.delenv(name)
    suffix = next(_module_counter)
    unique = [{**feed, "table": f"{feed['table']}-{suffix}"} for feed in feeds]
    monkeypatch.setenv(
        "CSV_IMPORT_CONFIG", str(write_feeds_config(tmp_path / f"pipeline-{suffix}.toml", unique))
    )


def actions(results: Mapping[str, ProvisionResult]) -> dict[str, str]:
    """The summary's view of ``results`` (keyed as :func:`provision` keys them, feed resources by feed)."""
    return {key: result.action for key, result in results.items()}


SHARED_RESOURCES = set(SHARED_RESOURCE_NAMES)


def feed_resources(*feed_names: str) -> set[str]:
    return {f"{name}.{resource}" for name in feed_names for resource in FEED_RESOURCES}


FARGATE_RESOURCES = SHARED_RESOURCES | feed_resources(*load_config(environ={}).feed_names)


def test_first_run_creates_everything_as_configured(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_dag(monkeypatch)
    config = module.config
    feed = first_feed(config)
    results, _ = provision(module)

    assert actions(results) == dict.fromkeys(FARGATE_RESOURCES, "created")
    s3 = boto3.client("s3", region_name=REGION)
    block = s3.get_public_access_block(Bucket=config.bucket.name)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    assert len(block) == 4
    rule = s3.get_bucket_encryption(Bucket=config.bucket.name)["ServerSideEncryptionConfiguration"]["Rules"][
        0
    ]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for each in config.feeds:
        table = dynamodb.describe_table(TableName=each.table.name)["Table"]
        assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
            (name, role) for name, role, _ in each.table.key_schema
        ]
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        assert all(types[name] == kind for name, _, kind in each.table.key_schema)
    table = dynamodb.describe_table(TableName=feed.table.name)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        (feed.table.partition_key, "HASH")
    ]
    for each in config.feeds:
        each_table = dynamodb.describe_table(TableName=each.table.name)["Table"]
        # verification needs no index: nothing is written for it
        assert each_table.get("GlobalSecondaryIndexes", []) == []
        assert sorted(a["AttributeName"] for a in each_table["AttributeDefinitions"]) == sorted(
            name for name, _, _ in each.table.key_schema
        )
        backups = dynamodb.describe_continuous_backups(TableName=each.table.name)[
            "ContinuousBackupsDescription"
        ]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    batch = boto3.client("batch", region_name=REGION)
    (environment,) = batch.describe_compute_environments(
        computeEnvironments=[config.batch.compute_environment]
    )["computeEnvironments"]
    assert environment["computeResources"]["type"] == "FARGATE"
    assert environment["computeResources"]["maxvCpus"] == config.batch.max_vcpus
    default_subnets = boto3.client("ec2", region_name=REGION).describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    assert sorted(environment["computeResources"]["subnets"]) == sorted(
        s["SubnetId"] for s in default_subnets
    )
    (queue,) = batch.describe_job_queues(jobQueues=[config.batch.job_queue])["jobQueues"]
    assert (queue["state"], queue["status"]) == ("ENABLED", "VALID")
    assert queue["computeEnvironmentOrder"][0]["computeEnvironment"] == environment["computeEnvironmentArn"]

    (definition,) = batch.describe_job_definitions(jobDefinitionName=feed.job_definition)["jobDefinitions"]
    container = definition["containerProperties"]
    assert container["image"] == config.batch.image
    assert container["jobRoleArn"] == results[f"{feed.name}.job_role"].arn
    for each in config.feeds:
        (other,) = batch.describe_job_definitions(jobDefinitionName=each.job_definition)["jobDefinitions"]
        other_env = {e["name"]: e["value"] for e in other["containerProperties"]["environment"]}
        assert other["containerProperties"]["jobRoleArn"] == results[f"{each.name}.job_role"].arn
        assert (other_env["table_name"], other_env["manifest_prefix"], other_env["rejected_prefix"]) == (
            each.table.name,
            each.manifest_prefix,
            each.rejected_prefix,
        )
        assert other_env.get("column_types", "") == each.column_types
    assert container["executionRoleArn"] == results["execution_role"].arn
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {
        "VCPU": f"{config.batch.vcpus:g}",
        "MEMORY": str(config.batch.memory_mib),
    }
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "bucket_name": config.bucket.name,
        "table_name": feed.table.name,
        "writer_concurrency": str(feed.import_.writer_concurrency),
        "max_reject_ratio": repr(feed.import_.max_reject_ratio),
        "column_types": feed.column_types,
        "empty_cells": feed.import_.empty_cells,
        "manifest_prefix": feed.manifest_prefix,
        "rejected_prefix": feed.rejected_prefix,
    }
    assert container["logConfiguration"]["options"]["awslogs-group"] == config.batch.log_group
    assert definition["platformCapabilities"] == ["FARGATE"]
    exits = {c["onExitCode"]: c["action"].upper() for c in definition["retryStrategy"]["evaluateOnExit"]}
    assert exits == {"2": "EXIT", "3": "EXIT", "4": "EXIT", "5": "EXIT", "*": "RETRY"}
    assert definition["retryStrategy"]["attempts"] == config.batch.attempts
    assert definition["timeout"]["attemptDurationSeconds"] == config.batch.attempt_timeout_seconds


def test_job_role_is_least_privilege_and_execution_role_has_the_managed_policy(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_dag(monkeypatch)
    config = module.config
    provision(module)
    iam = boto3.client("iam", region_name=REGION)
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]

    assert len({feed.job_role for feed in config.feeds}) == len(config.feeds) >= 2
    for feed in config.feeds:
        job_role = iam.get_role(RoleName=feed.job_role)["Role"]
        assert job_role["Path"] == config.iam.path
        trust = normalise_policy(job_role["AssumeRolePolicyDocument"])
        assert trust["Statement"][0]["Principal"] == {"Service": ["ecs-tasks.amazonaws.com"]}
        assert iam.list_attached_role_policies(RoleName=feed.job_role)["AttachedPolicies"] == []
        (policy_name,) = iam.list_role_policies(RoleName=feed.job_role)["PolicyNames"]
        policy = iam.get_role_policy(RoleName=feed.job_role, PolicyName=policy_name)["PolicyDocument"]
        statements = normalise_policy(policy)["Statement"]
        granted = {
            (action, resource)
            for statement in statements
            for action in statement["Action"]
            for resource in statement["Resource"]
        }
        bucket_arn = f"arn:aws:s3:::{config.bucket.name}"
        table_arn = f"arn:aws:dynamodb:{REGION}:{account}:table/{feed.table.name}"
        assert granted == {
            ("s3:GetObject", f"{bucket_arn}/{feed.landing_prefix}*"),
            ("s3:ListBucket", bucket_arn),
            ("s3:PutObject", f"{bucket_arn}/{feed.rejected_prefix}*"),
            ("s3:PutObject", f"{bucket_arn}/{feed.manifest_prefix}*"),
            ("dynamodb:DescribeTable", table_arn),
            ("dynamodb:BatchWriteItem", table_arn),
            ("dynamodb:PutItem", table_arn),
            ("dynamodb:GetItem", table_arn),
        }
        (listing,) = [s for s in statements if s["Action"] == ["s3:ListBucket"]]
        assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{feed.landing_prefix}*"]}}
        assert feed.name in feed.landing_prefix
        assert feed.name in feed.manifest_prefix
        assert not any("*" == action.split(":")[-1] or action.endswith("*") for action, _ in granted)

    attached = iam.list_attached_role_policies(RoleName=config.iam.execution_role)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [
        "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    ]


def test_second_run_makes_no_mutating_call_and_reports_unchanged(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_dag(monkeypatch)
    provision(module)

    results, hook = provision(load_dag(monkeypatch))

    assert actions(results) == dict.fromkeys(FARGATE_RESOURCES, "unchanged")
    assert all(not result.changes for result in results.values())
    assert hook.calls, "the second run must still describe every resource"
    assert hook.mutating_calls() == []


def test_config_change_gives_exactly_the_expected_updates(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dag(monkeypatch)
    provision(first)
    new_vcpus = first.config.batch.max_vcpus * 2
    new_memory = first.config.batch.memory_mib * 2
    new_image = f"{first.config.batch.image}-next"

    changed = load_dag(
        monkeypatch,
        BATCH__MAX_VCPUS=str(new_vcpus),
        BATCH__MEMORY_MIB=str(new_memory),
        BATCH__IMAGE=new_image,
    )
    results, hook = provision(changed)

    expected = dict.fromkeys(FARGATE_RESOURCES, "unchanged")
    expected.update(compute_environment="updated")
    expected.update(
        dict.fromkeys((f"{name}.job_definition" for name in changed.config.feed_names), "updated")
    )
    assert actions(results) == expected
    assert sorted(hook.mutating_calls()) == sorted(
        [("batch", "UpdateComputeEnvironment")]
        + [("batch", "RegisterJobDefinition")] * len(changed.config.feeds)
    )
    (update,) = hook.params_of("UpdateComputeEnvironment")
    assert update == {
        "computeEnvironment": changed.config.batch.compute_environment,
        "computeResources": {"maxvCpus": new_vcpus},
    }
    registered = hook.params_of("RegisterJobDefinition")
    assert sorted(r["jobDefinitionName"] for r in registered) == sorted(
        f.job_definition for f in changed.config.feeds
    )
    assert all(r["containerProperties"]["image"] == new_image for r in registered)
    for name in changed.config.feed_names:
        assert results[f"{name}.job_definition"].arn.endswith(":2")
        changed_fields = {line.split(":")[0] for line in results[f"{name}.job_definition"].changes[1:]}
        assert changed_fields == {"containerProperties.image", "containerProperties.resourceRequirements"}

    again, hook = provision(load_dag(monkeypatch))
    assert actions(again) == dict.fromkeys(FARGATE_RESOURCES, "unchanged")
    assert hook.mutating_calls() == []


def test_drifted_settings_are_put_back_and_equal_policies_are_left_alone(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_dag(monkeypatch)
    config = module.config
    job_role = first_feed(config).job_role
    provision(module)
    iam = boto3.client("iam", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    batch = boto3.client("batch", region_name=REGION)
    # Same meaning, other spelling: statements reversed, single actions as lists -> no rewrite.
    (policy_name,) = iam.list_role_policies(RoleName=job_role)["PolicyNames"]
    policy = iam.get_role_policy(RoleName=job_role, PolicyName=policy_name)["PolicyDocument"]
    respelled = {
        "Version": policy["Version"],
        "Statement": [
            {**s, "Action": s["Action"] if isinstance(s["Action"], list) else [s["Action"]]}
            for s in reversed(policy["Statement"])
        ],
    }
    iam.put_role_policy(RoleName=job_role, PolicyName=policy_name, PolicyDocument=json.dumps(respelled))
    # Real drift: public access partly opened, queue disabled.
    s3.put_public_access_block(
        Bucket=config.bucket.name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    batch.update_job_queue(jobQueue=config.batch.job_queue, state="DISABLED")

    results, hook = provision(load_dag(monkeypatch))

    expected = dict.fromkeys(FARGATE_RESOURCES, "unchanged")
    expected.update(bucket="updated", job_queue="updated")
    assert actions(results) == expected
    assert hook.mutating_calls() == [("s3", "PutPublicAccessBlock"), ("batch", "UpdateJobQueue")]
    assert hook.params_of("UpdateJobQueue")[0] == {"jobQueue": config.batch.job_queue, "state": "ENABLED"}
    assert all(
        s3.get_public_access_block(Bucket=config.bucket.name)["PublicAccessBlockConfiguration"].values()
    )


def test_the_opt_in_import_id_index_is_added_in_place(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    name = first_feed(load_config(environ={})).name
    module = load_dag(monkeypatch, **{f"FEEDS__{name.upper()}__IMPORT_ID_INDEX": "importId-index"})
    feed = first_feed(module.config)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=feed.table.name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": feed.table.partition_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": feed.table.partition_key, "AttributeType": "S"}],
    )
    dynamodb.put_item(TableName=feed.table.name, Item={feed.table.partition_key: {"S": "kept"}})

    results, hook = provision(module)

    assert results[f"{feed.name}.table"].action == "updated"
    (update,) = hook.params_of("UpdateTable")
    assert update["TableName"] == feed.table.name
    created = update["GlobalSecondaryIndexUpdates"][0]["Create"]
    assert created["IndexName"] == "importId-index"
    assert created["KeySchema"] == [{"AttributeName": "importId", "KeyType": "HASH"}]
    assert created["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert ("dynamodb", "DeleteTable") not in hook.mutating_calls()
    table = dynamodb.describe_table(TableName=feed.table.name)["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["importId-index"]
    assert dynamodb.get_item(TableName=feed.table.name, Key={feed.table.partition_key: {"S": "kept"}})["Item"]


def test_a_table_with_the_old_import_slot_index_keeps_it_and_is_told_it_is_no_longer_needed(
    aws: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = load_dag(monkeypatch)
    feed = first_feed(module.config)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_table_with_the_old_import_slot_index(dynamodb, feed.table.name, feed.table.partition_key)
    caplog.set_level("INFO", logger="batch_import.provisioning.dynamodb")

    results, hook = provision(module)

    # Only point-in-time recovery is switched on; the index is neither deleted nor replaced.
    assert [
        (service, operation)
        for service, operation, params in hook.calls
        if service == "dynamodb"
        and params.get("TableName") == feed.table.name
        and not operation.startswith(READ_ONLY_PREFIXES)
    ] == [("dynamodb", "UpdateContinuousBackups")]
    table = dynamodb.describe_table(TableName=feed.table.name)["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["importSlot-index"]
    assert "index importSlot-index (on importSlot) is no longer needed" in caplog.text


def test_other_key_schema_fails_clearly_and_touches_nothing(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dag(monkeypatch)
    feed = first_feed(first.config)
    provision(first)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.put_item(TableName=feed.table.name, Item={feed.table.partition_key: {"S": "kept"}})
    changed = load_dag(monkeypatch, **{f"FEEDS__{feed.name.upper()}__SORT_KEY": "ts"})
    table_task = changed.dag.get_task(f"{feed.name}.ensure_table")
    hook = RecordingHook()

    with pytest.raises(ProvisioningError) as raised:
        table_task.ensure(hook)

    message = str(raised.value)
    assert feed.table.name in message
    assert "ts RANGE S" in message
    assert "cannot be changed in place" in message
    assert hook.mutating_calls() == []
    assert dynamodb.scan(TableName=feed.table.name, Select="COUNT")["Count"] == 1


def test_other_compute_type_on_an_existing_environment_fails_clearly(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision(load_dag(monkeypatch))
    changed = load_dag(monkeypatch, BATCH__COMPUTE_TYPE="FARGATE_SPOT")
    hook = RecordingHook()

    with pytest.raises(ProvisioningError, match="FARGATE_SPOT; the type cannot change in place"):
        changed.dag.get_task("ensure_compute_environment").ensure(hook)
    assert hook.mutating_calls() == []


def test_ec2_environment_gets_instance_role_profile_and_is_idempotent(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_dag(monkeypatch, BATCH__COMPUTE_TYPE="EC2", BATCH__VCPUS="1")
    config = module.config

    results, _ = provision(module)

    assert {"instance_role", "instance_profile"} <= set(results)
    assert results["instance_profile"].action == "created"
    iam = boto3.client("iam", region_name=REGION)
    profile = iam.get_instance_profile(InstanceProfileName=config.iam.instance_role)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [config.iam.instance_role]
    attached = iam.list_attached_role_policies(RoleName=config.iam.instance_role)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [
        "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
    ]
    batch = boto3.client("batch", region_name=REGION)
    (environment,) = batch.describe_compute_environments(
        computeEnvironments=[config.batch.compute_environment]
    )["computeEnvironments"]
    assert environment["computeResources"]["instanceRole"] == profile["Arn"]
    for feed in config.feeds:
        (definition,) = batch.describe_job_definitions(jobDefinitionName=feed.job_definition)[
            "jobDefinitions"
        ]
        assert definition["platformCapabilities"] == ["EC2"]

    again, hook = provision(load_dag(monkeypatch, BATCH__COMPUTE_TYPE="EC2", BATCH__VCPUS="1"))
    assert set(actions(again).values()) == {"unchanged"}
    assert hook.mutating_calls() == []


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        pytest.param(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "a"},
            },
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["a"]}],
            },
            True,
            id="string-vs-list",
        ),
        pytest.param(
            {"Statement": [{"Action": ["b", "a"], "Condition": {"StringLike": {"s3:prefix": "x*"}}}]},
            {"Statement": [{"Action": ["a", "b"], "Condition": {"StringLike": {"s3:prefix": ["x*"]}}}]},
            True,
            id="order-and-condition-values",
        ),
        pytest.param(
            "%7B%22Statement%22%3A%20%5B%7B%22Action%22%3A%20%22a%22%7D%5D%7D",
            {"Statement": [{"Action": ["a"]}]},
            True,
            id="url-encoded-text",
        ),
        pytest.param(
            {"Statement": [{"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/incoming/*"}]},
            {"Statement": [{"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]},
            False,
            id="wider-resource",
        ),
    ],
)
def test_policy_normalisation(left: Any, right: Any, equal: bool) -> None:
    assert (normalise_policy(left) == normalise_policy(right)) is equal


def test_summary_refuses_a_resource_reported_twice() -> None:
    result = {"resource": "bucket", "name": "b", "action": "unchanged"}
    with pytest.raises(ValueError, match="'bucket' reported twice"):
        summarize([result, result])


def test_summary_names_feed_resources_by_feed() -> None:
    shared = {"resource": "bucket", "name": "b", "action": "unchanged"}
    orders = {"resource": "table", "name": "t1", "action": "created", "feed": "orders"}
    readings = {"resource": "table", "name": "t2", "action": "unchanged", "feed": "readings"}
    assert summarize([shared, orders, readings]) == {
        "bucket": "unchanged",
        "orders.table": "created",
        "readings.table": "unchanged",
    }
    with pytest.raises(ValueError, match="'orders.table' reported twice"):
        summarize([orders, orders])


def _environment(status: str, *, reason: str = "") -> dict[str, Any]:
    return {
        "computeEnvironmentName": "ce-under-test",
        "computeEnvironmentArn": "arn:aws:batch:us-east-1:000000000000:compute-environment/ce-under-test",
        "type": "MANAGED",
        "state": "ENABLED",
        "status": status,
        "statusReason": reason,
        "computeResources": {
            "type": "FARGATE",
            "maxvCpus": 4,
            "subnets": ["subnet-1"],
            "securityGroupIds": ["sg-1"],
        },
    }


def _stubbed_batch(*responses: dict[str, Any]) -> tuple[Any, Any]:
    """A Batch client answering DescribeComputeEnvironments with ``responses`` (states moto never reports)."""
    from botocore.stub import Stubber

    client = boto3.client("batch", region_name=REGION)
    stubber = Stubber(client)
    for environment in responses:
        stubber.add_response(
            "describe_compute_environments",
            {"computeEnvironments": [environment]},
            {"computeEnvironments": ["ce-under-test"]},
        )
    stubber.activate()
    return client, stubber


WANTED = {"type": "FARGATE", "maxvCpus": 4, "subnets": ["subnet-1"], "securityGroupIds": ["sg-1"]}


def test_compute_environment_being_updated_is_waited_for() -> None:
    from batch_import.provisioning.batch import ReadyWait, ensure_compute_environment

    client, stubber = _stubbed_batch(
        _environment("UPDATING"), _environment("UPDATING"), _environment("VALID")
    )

    result = ensure_compute_environment(
        client, name="ce-under-test", resources=WANTED, wait=ReadyWait(timeout_seconds=5, poll_seconds=0)
    )

    assert result.action == "unchanged"
    stubber.assert_no_pending_responses()


def test_invalid_compute_environment_fails_with_its_reason() -> None:
    from batch_import.provisioning.batch import ReadyWait, ensure_compute_environment

    client, _ = _stubbed_batch(_environment("INVALID", reason="CLIENT_ERROR - subnet-1 does not exist"))

    with pytest.raises(
        ProvisioningError, match="ce-under-test is INVALID: CLIENT_ERROR - subnet-1 does not exist"
    ):
        ensure_compute_environment(
            client, name="ce-under-test", resources=WANTED, wait=ReadyWait(timeout_seconds=5, poll_seconds=0)
        )


def test_waiting_is_bounded() -> None:
    from batch_import.provisioning.batch import ReadyWait, ensure_compute_environment

    client, _ = _stubbed_batch(*[_environment("CREATING")] * 3)

    with pytest.raises(TimeoutError, match="ce-under-test to be VALID and ENABLED was not ready"):
        ensure_compute_environment(
            client, name="ce-under-test", resources=WANTED, wait=ReadyWait(timeout_seconds=0, poll_seconds=0)
        )


def test_configured_subnets_replace_the_default_vpc_ones_in_place(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    provision(load_dag(monkeypatch))
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnet_ids = sorted(
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    )
    chosen = subnet_ids[:2]

    results, hook = provision(load_dag(monkeypatch, BATCH__SUBNETS=",".join(chosen)))

    assert results["compute_environment"].action == "updated"
    assert hook.mutating_calls() == [("batch", "UpdateComputeEnvironment")]
    (update,) = hook.params_of("UpdateComputeEnvironment")
    assert update["computeResources"] == {"subnets": chosen}


def test_kms_key_gives_sse_kms_and_key_use_in_the_job_policy(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    module = load_dag(monkeypatch, BUCKET__KMS_KEY_ID=key_arn)
    config = module.config

    provision(module)

    rule = boto3.client("s3", region_name=REGION).get_bucket_encryption(Bucket=config.bucket.name)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key_arn,
    }
    iam = boto3.client("iam", region_name=REGION)
    policy = iam.get_role_policy(RoleName=first_feed(config).job_role, PolicyName="csv-import-job-access")[
        "PolicyDocument"
    ]
    kms = [s for s in normalise_policy(policy)["Statement"] if s["Action"][0].startswith("kms:")]
    assert kms == [
        {
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Effect": "Allow",
            "Resource": [key_arn],
            "Sid": "UseBucketKey",
        }
    ]
    again, hook = provision(load_dag(monkeypatch, BUCKET__KMS_KEY_ID=key_arn))
    assert again["bucket"].action == "unchanged"
    assert hook.mutating_calls() == []


def test_no_subnets_configured_and_no_default_vpc_is_a_clear_error() -> None:
    from botocore.stub import Stubber

    from batch_import.provisioning.batch import resolve_network

    ec2 = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(ec2)
    stubber.add_response(
        "describe_vpcs", {"Vpcs": []}, {"Filters": [{"Name": "isDefault", "Values": ["true"]}]}
    )
    stubber.activate()

    with pytest.raises(ProvisioningError, match="no default VPC.*CSV_IMPORT__BATCH__SUBNETS"):
        resolve_network(ec2, subnets=(), security_group_ids=())


def test_a_feed_added_to_the_config_is_provisioned_without_touching_the_others(
    aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_feeds(monkeypatch, tmp_path, THREE_FEEDS[:2])
    before = load_dag(monkeypatch)
    provision(before)
    existing = before.config.feeds
    use_feeds(monkeypatch, tmp_path, THREE_FEEDS)
    # use_feeds gave the tables a new suffix; keep the two existing feeds' tables as provisioned.
    for feed in existing:
        monkeypatch.setenv(f"CSV_IMPORT__FEEDS__{feed.name.upper()}__TABLE", feed.table.name)
    after = load_dag(monkeypatch)
    added = after.config.feed("readings")

    results, hook = provision(after)

    expected = dict.fromkeys(SHARED_RESOURCES | feed_resources(*(f.name for f in existing)), "unchanged")
    expected.update(dict.fromkeys(feed_resources(added.name), "created"))
    expected.update(event_notifications="updated")
    assert actions(results) == expected
    mutating = hook.mutating_calls()
    assert mutating, "the added feed must be created"
    # Every mutating call names the added feed's table, role, job definition or queues (or the bucket's
    # notifications, which gain the added feed's), and nothing of the others.
    own_names = {
        added.table.name,
        added.job_role,
        added.job_definition,
        added.event_queue,
        added.event_dead_letter_queue,
        after.config.bucket.name,
    }
    for service, operation, params in hook.calls:
        if operation.startswith(READ_ONLY_PREFIXES):
            continue
        keys = ("TableName", "RoleName", "jobDefinitionName", "QueueName", "Bucket")
        named = {params.get(key) for key in keys} - {None}
        assert named, (service, operation, params)
        assert named <= own_names, (service, operation, params)
    assert {
        "CreateTable",
        "CreateRole",
        "PutRolePolicy",
        "RegisterJobDefinition",
        "CreateQueue",
        "PutBucketNotificationConfiguration",
    } <= {op for _, op in mutating}

    again, hook = provision(load_dag(monkeypatch))
    assert set(actions(again).values()) == {"unchanged"}
    assert hook.mutating_calls() == []


def test_a_feed_removed_from_the_config_is_left_alone_and_reported(
    aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_feeds(monkeypatch, tmp_path, THREE_FEEDS)
    before = load_dag(monkeypatch)
    provision(before)
    removed = before.config.feed("readings")
    kept = [feed for feed in before.config.feeds if feed.name != "readings"]
    use_feeds(monkeypatch, tmp_path, THREE_FEEDS[:2])
    for feed in kept:
        monkeypatch.setenv(f"CSV_IMPORT__FEEDS__{feed.name.upper()}__TABLE", feed.table.name)
    after = load_dag(monkeypatch)

    results, hook = provision(after)
    assert set(actions(results)) == SHARED_RESOURCES | feed_resources(*(f.name for f in kept))
    assert set(actions(results).values()) == {"unchanged"}
    leftovers = find_unconfigured_feeds(
        hook.client_for("iam"),
        hook.client_for("batch"),
        role_base=after.config.iam.job_role,
        iam_path=after.config.iam.path,
        job_definition_base=after.config.batch.job_definition,
        configured=after.config.feed_names,
    )
    assert [leftover.as_dict() for leftover in leftovers] == [
        {
            "name": "readings",
            "job_role": removed.job_role,
            "job_definition": removed.job_definition,
            "table": removed.table.name,
        }
    ]
    assert hook.mutating_calls() == []
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    assert dynamodb.describe_table(TableName=removed.table.name)["Table"]["TableStatus"] == "ACTIVE"
    assert boto3.client("iam", region_name=REGION).get_role(RoleName=removed.job_role)["Role"]
    report = after.dag.get_task("report_unconfigured_feeds")
    assert report.configured_feeds == ("orders", "customers")
