"""``csv-importer``: settings -> clients -> one shard's import -> exit code (see :mod:`csv_importer.exit_codes`).

Every fatal condition ends with one line on stderr, ``csv-importer: <CODE NAME>: <object or table>: <reason>``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from csv_importer.exit_codes import ExitCode, JobFailure, UsageProblem, is_retryable
from csv_importer.importer import run_import
from csv_importer.settings import ImportSettings, load_settings
from csv_importer.writer import THROTTLING_CODES

log = logging.getLogger("csv_importer")

DEFAULT_MAX_ATTEMPTS = 10  # botocore's total attempts per call (AWS_MAX_ATTEMPTS overrides)
# AWS_RETRY_MODE may pick either; "legacy" (or anything else) is ignored with a warning.
RETRY_MODES = ("standard", "adaptive")
_TRANSIENT_BOTOCORE = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ResponseStreamingError,
)


def retry_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """botocore's ``retries`` for both clients: mode ``standard`` (or ``adaptive`` when ``AWS_RETRY_MODE`` says
    so), :data:`DEFAULT_MAX_ATTEMPTS` attempts unless ``AWS_MAX_ATTEMPTS`` says otherwise.

    Both are always passed explicitly, so neither a ``legacy`` mode nor the AWS config file's retry settings
    take effect. :raises UsageProblem: ``AWS_MAX_ATTEMPTS`` is not a positive integer.
    """
    requested = environ.get("AWS_RETRY_MODE", "").strip()
    mode = requested.lower() if requested.lower() in RETRY_MODES else "standard"
    if requested and requested.lower() != mode:
        log.warning(
            "AWS_RETRY_MODE=%s ignored: the job retries throttling in botocore's standard or adaptive mode; "
            "using %s",
            requested,
            mode,
        )
    attempts_text = environ.get("AWS_MAX_ATTEMPTS", "").strip() or str(DEFAULT_MAX_ATTEMPTS)
    try:
        attempts = int(attempts_text)
    except ValueError:
        attempts = 0
    if attempts < 1:
        raise UsageProblem(f"AWS_MAX_ATTEMPTS must be a positive integer, got {attempts_text!r}")
    return {"mode": mode, "total_max_attempts": attempts}


def make_clients(settings: ImportSettings) -> tuple[Any, Any]:
    """One S3 and one DynamoDB client for the whole process (the writer threads share the DynamoDB one).

    Endpoints, region and credentials come from the environment as boto3 reads them
    (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_DYNAMODB``, ...). Throttling and
    network errors are retried by botocore as :func:`retry_config` says (standard mode, 10 attempts).
    """
    session = boto3.session.Session()
    retries: Any = retry_config(os.environ)
    s3 = session.client("s3", config=Config(retries=retries, connect_timeout=10, read_timeout=60))
    dynamodb = session.client(
        "dynamodb",
        config=Config(
            retries=retries,
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=settings.writer_concurrency + 2,
            # Items are built as well-formed AttributeValues by csv_importer.rows; skip re-validating them.
            parameter_validation=False,
        ),
    )
    return s3, dynamodb


def _fail(code: ExitCode, message: str) -> int:
    retry = "a retry may succeed" if is_retryable(code) else "a retry cannot fix this"
    print(f"csv-importer: {code.name}: {message} ({retry})", file=sys.stderr, flush=True)
    return int(code)


def _classify_aws_error(error: Exception, settings: ImportSettings) -> tuple[ExitCode, str]:
    where = f"{settings.source_uri} -> table {settings.table!r}"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in THROTTLING_CODES or code in {"SlowDown", "RequestTimeout", "InternalError"}:
            return ExitCode.TRANSIENT, f"{where}: {code} after the client's retries"
        return ExitCode.UNEXPECTED, f"{where}: {code}: {error}"
    if isinstance(error, NoCredentialsError):
        return ExitCode.USAGE, f"{where}: no AWS credentials found"
    if isinstance(error, NoRegionError):
        return ExitCode.USAGE, f"{where}: no AWS region configured (AWS_REGION / AWS_DEFAULT_REGION)"
    if isinstance(error, _TRANSIENT_BOTOCORE):
        return ExitCode.TRANSIENT, f"{where}: {error}"
    return ExitCode.UNEXPECTED, f"{where}: {type(error).__name__}: {error}"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        settings = load_settings(argv, os.environ)
    except JobFailure as failure:
        return _fail(failure.exit_code, failure.message)
    try:
        s3, dynamodb = make_clients(settings)
        manifest = run_import(settings, s3=s3, dynamodb=dynamodb)
    except JobFailure as failure:
        return _fail(failure.exit_code, failure.message)
    except (ClientError, BotoCoreError) as error:
        code, message = _classify_aws_error(error, settings)
        if code == ExitCode.UNEXPECTED:
            log.exception("unexpected AWS error")
        return _fail(code, message)
    except Exception as error:
        log.exception("unexpected error")
        return _fail(ExitCode.UNEXPECTED, f"{settings.source_uri}: {type(error).__name__}: {error}")
    if manifest.status == "reject_ratio_exceeded":
        return _fail(
            ExitCode.REJECT_RATIO_EXCEEDED,
            f"{settings.source_uri}: {manifest.error}; valid rows are imported, rejected rows are in "
            f"s3://{manifest.bucket}/{manifest.rejected_key}",
        )
    return int(ExitCode.OK)
