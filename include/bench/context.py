"""What every benchmark section gets: quick mode, a scratch directory, and the local endpoint in its own process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from include.airflow_standalone import free_port

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


class LocalEndpointProcess:
    """The project's local AWS endpoint (``python -m include.local_aws``: moto's server with this project's fixes)
    on a free loopback port in a separate process (its own GIL), stopped on exit. The same endpoint ``make demo``
    and the tests use, so the figures are those a user of the embedded default sees.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalEndpointProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "include.local_aws", "--port", str(self.port), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the local endpoint on {self.url} did not answer within 30 s")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    def env(self) -> dict[str, str]:
        """Environment for a job process talking to this server (fake credentials)."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        environment.update(
            AWS_ENDPOINT_URL=self.url,
            AWS_DEFAULT_REGION=REGION,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
        )
        return environment


@dataclass
class BenchContext:
    quick: bool
    scratch: Path
    endpoint: LocalEndpointProcess
    facts: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> object:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint.url,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    def fresh_sample(self, bucket: str, key: str, rows: int) -> None:
        """Clear the endpoint, then land ``rows`` rows of the sample CSV at ``s3://bucket/key``."""
        from include.bench.sample_files import sample_csv

        self.endpoint.reset()
        s3 = self.client("s3")
        s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
        s3.put_object(Bucket=bucket, Key=key, Body=sample_csv(rows))  # type: ignore[attr-defined]

    def create_table(self, name: str) -> None:
        """An empty on-demand table keyed by the sample's ``id`` column."""
        self.client("dynamodb").create_table(  # type: ignore[attr-defined]
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
