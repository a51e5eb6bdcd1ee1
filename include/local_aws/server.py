"""The local AWS endpoint: moto's server on loopback, with Batch jobs run as host processes."""

from __future__ import annotations

import logging
import os
import urllib.request
from types import TracebackType

from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from include.local_aws.dynamodb_consumed_capacity import install_consumed_capacity_patch
from include.local_aws.dynamodb_index_query import install_index_query_patch
from include.local_aws.dynamodb_item_size import install_item_size_patch
from include.local_aws.job_runtime import ProcessRuntime
from include.local_aws.moto_adapter import install_patches

log = logging.getLogger(__name__)

# One runtime per process: moto's backends (and so its jobs) are process-global too.
PROCESS_RUNTIME = ProcessRuntime()


class LocalAws:
    """moto's server (S3, DynamoDB, Batch, IAM, EC2, ECS, CloudWatch Logs, ...) on ``host:port``.

    ``port=0`` picks a free port. Starting patches moto once per process. Use as a context manager::

        with LocalAws(host="127.0.0.1", port=0) as aws:
            boto3.client("s3", endpoint_url=aws.url)
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: ThreadedMotoServer | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("LocalAws is not started: use `with LocalAws(...) as aws` or call start()")
        return self._url

    def start(self) -> LocalAws:
        if self._server is not None:
            return self
        # Read by moto whenever an IAM backend is (re)created, e.g. on /moto-api/reset.
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        install_patches(PROCESS_RUNTIME)
        install_index_query_patch()
        install_item_size_patch()
        install_consumed_capacity_patch()
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)  # otherwise werkzeug prints every request
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        bound_host, bound_port = server.get_host_and_port()
        self._server = server
        self._url = f"http://{bound_host}:{bound_port}"
        PROCESS_RUNTIME.attach_endpoint(self._url)
        log.info("Local AWS endpoint serving on %s", self._url)
        return self

    def stop_jobs(self, reason: str = "Stopped by the local AWS endpoint") -> int:
        """Fail every job still waiting or running and kill its processes; returns how many jobs."""
        return PROCESS_RUNTIME.stop_all_jobs(reason)

    def reset(self) -> None:
        """Kill every job, then clear all of moto's state (``POST /moto-api/reset``)."""
        self.stop_jobs("Local AWS endpoint reset")
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def stop(self) -> None:
        """Stop serving; the last server of the process also ends every job process."""
        if self._server is None:
            return
        server, url = self._server, self.url
        self._server = None
        if PROCESS_RUNTIME.detach_endpoint(url):
            self.stop_jobs("Local AWS endpoint stopped")
        server.stop()
        log.info("Local AWS endpoint on %s stopped", url)

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
