"""The job's inputs, described once: name, environment variable, flag, scope, default.

Three rooms use this table and nothing else:

* the job parses it (:func:`csv_importer.settings.load_settings`: a flag wins over the environment);
* provisioning builds the job definition's environment from the ``deployment`` inputs
  (:func:`deployment_environment`), the same for every import;
* the import DAG builds each submit's container overrides (:func:`container_overrides`): the ``file`` inputs,
  plus a ``deployment`` input only where this run's value differs from the job definition's (the UI's
  ``max_reject_ratio``).

Values are written as text by :func:`format_value`, the one formatter, and read back by the job's parsers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["deployment", "file", "batch"]

DEFAULT_WRITER_CONCURRENCY = 4
EMPTY_CELLS_CHOICES = ("keep", "omit", "null")
LINEAGE_CHOICES = ("all", "import_id")
DEFAULT_MANIFEST_PREFIX = "manifests/"
DEFAULT_REJECTED_PREFIX = "rejected/"


@dataclass(frozen=True)
class JobInput:
    """One input of ``csv-importer``.

    :param name: the :class:`csv_importer.settings.ImportSettings` field it sets
    :param env: its environment variable (the names the reference article's ``submit_job`` overrides use)
    :param flag: its command-line flag (wins over the environment)
    :param scope: ``deployment`` (the job definition's environment), ``file`` (container overrides, per file)
        or ``batch`` (set by AWS Batch itself: the array index)
    :param default: its value when unset (``None``: no default; required inputs have none)
    """

    name: str
    env: str
    flag: str
    scope: Scope
    help: str
    default: str | None = None
    required: bool = False


JOB_INPUTS: tuple[JobInput, ...] = (
    JobInput("bucket", "bucket_name", "--bucket", "deployment", "bucket of the CSV object", required=True),
    JobInput("key", "key", "--key", "file", "object key, .csv or gzip .csv.gz", required=True),
    JobInput("table", "table_name", "--table", "deployment", "DynamoDB table", required=True),
    JobInput(
        "import_id",
        "import_id",
        "--import-id",
        "file",
        "stamped on every item; default derived from bucket, key, ETag",
    ),
    JobInput(
        "expected_etag",
        "expected_etag",
        "--expected-etag",
        "file",
        "the ETag the import was planned for; every GET is pinned to it (If-Match)",
    ),
    JobInput(
        "max_reject_ratio",
        "max_reject_ratio",
        "--max-reject-ratio",
        "deployment",
        "highest tolerated rejected/read",
        "0",
    ),
    JobInput(
        "column_types",
        "column_types",
        "--column-types",
        "deployment",
        "e.g. price:N,active:BOOL; types S (default), N, BOOL",
        "",
    ),
    JobInput(
        "empty_cells",
        "empty_cells",
        "--empty-cells",
        "deployment",
        'an empty non-key cell: keep ("" for string columns), omit (no attribute) or null (the NULL type)',
        "keep",
    ),
    JobInput(
        "lineage",
        "lineage",
        "--lineage",
        "deployment",
        "lineage attributes stamped on every item: all (importId, sourceKey, importedAt) or import_id (importId)",
        "all",
    ),
    JobInput(
        "manifest_prefix",
        "manifest_prefix",
        "--manifest-prefix",
        "deployment",
        "where the shard manifests go in the bucket",
        DEFAULT_MANIFEST_PREFIX,
    ),
    JobInput(
        "rejected_prefix",
        "rejected_prefix",
        "--rejected-prefix",
        "deployment",
        "where the rejected rows go in the bucket",
        DEFAULT_REJECTED_PREFIX,
    ),
    JobInput("shard_count", "shard_count", "--shard-count", "file", "number of shards of the object", "1"),
    JobInput(
        "shard_index",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        "--shard-index",
        "batch",
        "this shard's index, 0-based",
        "0",
    ),
    JobInput(
        "batch_job_id",
        "AWS_BATCH_JOB_ID",
        "--batch-job-id",
        "batch",
        "the AWS Batch job running this shard, recorded in its manifest (AWS Batch sets it)",
    ),
    JobInput(
        "writer_concurrency",
        "writer_concurrency",
        "--writer-concurrency",
        "deployment",
        "BatchWriteItem requests in flight",
        str(DEFAULT_WRITER_CONCURRENCY),
    ),
)
INPUTS_BY_NAME: Mapping[str, JobInput] = {job_input.name: job_input for job_input in JOB_INPUTS}


def format_value(value: Any) -> str:
    """An input value as the job reads it: floats exactly (``repr``), ``column_types`` maps as ``a:N,b:BOOL``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return ",".join(f"{name}:{kind}" for name, kind in value.items())
    return str(value)


def _environment(values: Mapping[str, Any], scopes: tuple[Scope, ...]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for name, value in values.items():
        job_input = INPUTS_BY_NAME.get(name)
        if job_input is None:
            raise KeyError(f"{name!r} is not an input of csv-importer (inputs: {', '.join(INPUTS_BY_NAME)})")
        if job_input.scope not in scopes:
            raise ValueError(f"input {name!r} is a {job_input.scope} input, not one of {scopes}")
        if value is None:
            continue
        text = format_value(value)
        if text != "":
            environment[job_input.env] = text
    return environment


def deployment_environment(values: Mapping[str, Any]) -> dict[str, str]:
    """The job definition's environment (variable -> text) from ``deployment`` input values by name.

    Empty values are left out (the job then applies the input's default).
    """
    return _environment(values, ("deployment",))


def container_overrides(
    per_file: Mapping[str, Any],
    *,
    run: Mapping[str, Any] | None = None,
    deployed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Batch ``containerOverrides`` of one submit: the ``file`` inputs, plus each ``deployment`` input of ``run``
    whose text differs from ``deployed`` (the job definition's value). Nothing the job definition holds is repeated.
    """
    environment = _environment(per_file, ("file",))
    run_environment = deployment_environment(run or {})
    deployed_environment = deployment_environment(deployed or {})
    environment |= {
        env: text for env, text in run_environment.items() if deployed_environment.get(env) != text
    }
    return {"environment": [{"name": name, "value": value} for name, value in environment.items()]}
