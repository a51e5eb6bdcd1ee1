"""A hook handing out one boto3 client per AWS service for a provisioning task."""

from __future__ import annotations

from typing import Any

import botocore.config
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from batch_import.provisioning.account import AwsAccount, describe_account

# Standard retry mode: throttling and transient errors are retried with backoff by botocore itself.
RETRY_CONFIG = botocore.config.Config(retries={"mode": "standard", "max_attempts": 8})


class ProvisioningHook(AwsBaseHook):
    """The provider's AWS hook, extended to serve several services from one connection.

    Provisioning touches S3, DynamoDB, IAM, STS, EC2, CloudWatch Logs and Batch in one task; the stock hooks
    serve one service each. Each client honours the connection's per-service ``endpoint_url``, region,
    ``verify`` and ``botocore_config`` (standard retry mode unless the connection sets its own), and is created
    once per hook from one boto3 session.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("client_type", "sts")
        super().__init__(*args, **kwargs)
        self._clients: dict[str, Any] = {}
        self._session: Any = None

    def client_for(self, service_name: str) -> Any:
        """The boto3 client for ``service_name`` (``s3``, ``iam``, ``batch``...), created once."""
        if service_name not in self._clients:
            if self._session is None:
                self._session = self.get_session(region_name=self.region_name)
            session = self._session
            config = RETRY_CONFIG.merge(self.config) if self.config else RETRY_CONFIG
            self._clients[service_name] = session.client(
                service_name,
                endpoint_url=self.conn_config.get_service_endpoint_url(service_name=service_name),
                config=self._get_config(config),
                verify=self.verify,
            )
        return self._clients[service_name]

    @property
    def effective_region(self) -> str:
        """The region the clients talk to (the hook's, else the connection's, else boto3's default)."""
        region = self.client_for("sts").meta.region_name
        if not region:
            raise ValueError(
                f"AWS connection {self.aws_conn_id!r}: no region configured (set region_name on the task or "
                "the connection)"
            )
        return region

    def describe_account(self) -> AwsAccount:
        """Account id and partition of the connection's credentials (STS GetCallerIdentity)."""
        return describe_account(self.client_for("sts"), self.effective_region)
