"""moto 5.2.5 defects the pipeline would trip over, corrected by include.local_aws.moto_adapter: one test each."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from include.local_aws import LocalAws
from tests.local_aws.batch_jobs import (
    client,
    create_queue,
    describe,
    register_python_job,
    unique,
    wait_for_status,
)


def test_describe_jobs_does_not_append_aws_batch_job_id_on_every_call(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, "pass")
    job_id = client(local_aws, "batch").submit_job(
        jobName="described",
        jobQueue=queue,
        jobDefinition=definition,
        containerOverrides={"environment": [{"name": "key", "value": "a.csv"}]},
    )["jobId"]
    wait_for_status(local_aws, job_id)

    environments = [describe(local_aws, job_id)["container"]["environment"] for _ in range(3)]

    assert environments[0] == environments[2]
    assert sorted(item["name"] for item in environments[2]) == ["AWS_BATCH_JOB_ID", "key"]


def test_describe_jobs_reports_the_exit_code(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, "raise SystemExit(4)")
    job_id = client(local_aws, "batch").submit_job(
        jobName="exit-four", jobQueue=queue, jobDefinition=definition
    )["jobId"]

    assert wait_for_status(local_aws, job_id)["container"]["exitCode"] == 4


def test_update_job_queue_accepts_compute_environment_names(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    other, _ = create_queue(local_aws)
    batch = client(local_aws, "batch")

    batch.update_job_queue(
        jobQueue=queue, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": other}]
    )

    [described] = batch.describe_job_queues(jobQueues=[queue])["jobQueues"]
    [order] = described["computeEnvironmentOrder"]
    other_arn = batch.describe_compute_environments(computeEnvironments=[other])["computeEnvironments"][0]
    assert order["computeEnvironment"] == other_arn["computeEnvironmentArn"]
    with pytest.raises(ClientError) as refused:
        batch.update_job_queue(
            jobQueue=queue,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "no-such-environment"}],
        )
    assert "no-such-environment" in refused.value.response["Error"]["Message"]


def test_update_compute_environment_applies_compute_resources(local_aws: LocalAws) -> None:
    environment, _ = create_queue(local_aws, max_vcpus=4)
    batch = client(local_aws, "batch")

    batch.update_compute_environment(computeEnvironment=environment, computeResources={"maxvCpus": 8})

    [described] = batch.describe_compute_environments(computeEnvironments=[environment])[
        "computeEnvironments"
    ]
    assert described["computeResources"]["maxvCpus"] == 8
    assert described["computeResources"]["type"] == "FARGATE"
    with pytest.raises(ClientError) as refused:
        batch.update_compute_environment(computeEnvironment="no-such-environment", state="DISABLED")
    assert "no-such-environment" in refused.value.response["Error"]["Message"]


def test_create_compute_environment_without_service_role_uses_the_batch_service_linked_role(
    local_aws: LocalAws,
) -> None:
    batch, iam = client(local_aws, "batch"), client(local_aws, "iam")
    names = [unique("unmanaged"), unique("unmanaged")]

    for name in names:
        batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED")

    roles = [item["serviceRole"] for item in batch.describe_compute_environments()["computeEnvironments"]]
    linked = iam.get_role(RoleName="AWSServiceRoleForBatch")["Role"]
    assert roles == [linked["Arn"], linked["Arn"]]
    assert linked["Path"] == "/aws-service-role/batch.amazonaws.com/"


def test_aws_managed_policies_can_be_attached(local_aws: LocalAws) -> None:
    iam = client(local_aws, "iam")
    role = unique("execution-role")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"

    iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)

    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert [policy["PolicyArn"] for policy in attached] == [policy_arn]


def test_one_character_job_names_are_accepted_as_on_aws(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, "pass")
    batch = client(local_aws, "batch")

    job_id = batch.submit_job(jobName="j", jobQueue=queue, jobDefinition=definition)["jobId"]

    assert wait_for_status(local_aws, job_id)["status"] == "SUCCEEDED"
    with pytest.raises(ClientError):
        batch.submit_job(jobName="-starts-with-a-dash", jobQueue=queue, jobDefinition=definition)


def test_list_jobs_defaults_to_running_and_lists_array_parents_not_children(local_aws: LocalAws) -> None:
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, "pass")
    batch = client(local_aws, "batch")
    parent_id = batch.submit_job(
        jobName="import-big", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 2}
    )["jobId"]
    wait_for_status(local_aws, parent_id)

    by_name = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["import-big"]}])
    children = batch.list_jobs(arrayJobId=parent_id, jobStatus="SUCCEEDED")["jobSummaryList"]

    assert batch.list_jobs(jobQueue=queue)["jobSummaryList"] == []  # AWS lists only RUNNING jobs by default
    assert [(job["jobId"], job["arrayProperties"]) for job in by_name["jobSummaryList"]] == [
        (parent_id, {"size": 2})
    ]
    assert sorted((job["jobId"], job["arrayProperties"]["index"]) for job in children) == [
        (f"{parent_id}:0", 0),
        (f"{parent_id}:1", 1),
    ]
