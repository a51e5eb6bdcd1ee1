"""A running, provisioned pipeline: the local AWS endpoint, ``airflow standalone`` (its DAGs unpaused), one
provisioning run. For the end-to-end tests and the benchmarks that land files and watch them get imported."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from batch_import.config import PipelineConfig, load_config
from include.airflow_standalone import AirflowRestClient, AirflowStandalone, local_aws_connection
from include.demo import PROVISION_DAG_ID
from include.demo.local_endpoint import LocalEndpointProcess
from include.demo.run import LOCAL_CREDENTIALS

PROVISIONING_TIMEOUT = 300.0


class StackError(RuntimeError):
    """The stack did not come up provisioned; the message says where its logs are."""


@dataclass(frozen=True)
class ProvisionedStack:
    standalone: AirflowStandalone
    client: AirflowRestClient
    endpoint: LocalEndpointProcess
    config: PipelineConfig

    @property
    def endpoint_url(self) -> str:
        return self.endpoint.url

    def aws(self, service_name: str) -> Any:
        """A boto3 client of the local endpoint."""
        return local_client(service_name, self.endpoint_url, self.config.aws.region)

    def land_without_event(self, key: str, body: bytes) -> str:
        """:func:`put_without_event` into the pipeline's bucket; returns the object's ETag."""
        return put_without_event(self.aws("s3"), bucket_name=self.config.bucket.name, key=key, body=body)


def local_client(service: str, endpoint_url: str, region_name: str) -> Any:
    """A boto3 client of the local endpoint (it accepts any credentials)."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=LOCAL_CREDENTIALS,
        aws_secret_access_key=LOCAL_CREDENTIALS,
    )


def put_without_event(s3_client: Any, *, bucket_name: str, key: str, body: bytes) -> str:
    """Put ``s3://<bucket>/<key>`` with the bucket's notifications off meanwhile, so no event is sent for it (as
    when an event is lost, or for a test that starts the file's run itself); returns the object's ETag.
    Restoring the notifications sends S3's test events, which the import DAGs ignore."""
    saved = s3_client.get_bucket_notification_configuration(Bucket=bucket_name)
    saved.pop("ResponseMetadata", None)
    s3_client.put_bucket_notification_configuration(Bucket=bucket_name, NotificationConfiguration={})
    try:
        return str(s3_client.put_object(Bucket=bucket_name, Key=key, Body=body)["ETag"])
    finally:
        s3_client.put_bucket_notification_configuration(Bucket=bucket_name, NotificationConfiguration=saved)


@contextmanager
def provisioned_stack(home: Path, settings: Mapping[str, str]) -> Iterator[ProvisionedStack]:
    """Start everything under ``home`` with ``settings`` (``CSV_IMPORT__...``), provision, stop it all on exit."""
    config = load_config(environ={**os.environ, **settings})
    endpoint = LocalEndpointProcess(log_path=home / "local_aws.log", extra_env=dict(settings))
    standalone: AirflowStandalone | None = None
    try:
        endpoint.start()
        standalone = AirflowStandalone(
            airflow_home=home / "airflow_home",
            aws_connection=local_aws_connection(endpoint_url=endpoint.url, region_name=config.aws.region),
            extra_env=dict(settings),
            log_path=home / "airflow.log",
        )
        standalone.start()
        client = standalone.client()
        for dag_id in (PROVISION_DAG_ID, *(feed.dag_id for feed in config.feeds)):
            client.wait_for_dag(dag_id)
        run = client.trigger(PROVISION_DAG_ID, logical_date=None)
        (provisioned,) = client.wait_for_runs(
            PROVISION_DAG_ID, [run["dag_run_id"]], timeout=PROVISIONING_TIMEOUT
        )
        if provisioned["state"] != "success":
            raise StackError(f"{PROVISION_DAG_ID} ended {provisioned['state']}; logs under {home}")
        yield ProvisionedStack(standalone=standalone, client=client, endpoint=endpoint, config=config)
    finally:
        if standalone is not None:
            standalone.stop()
        endpoint.stop()
