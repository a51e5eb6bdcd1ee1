"""The pipeline's declarative configuration, read from one TOML file, overridable by environment.

``include/config/pipeline.toml`` is the single source of names, sizes, schedule, image and key schema.
Every key can be overridden per deployment with ``CSV_IMPORT__<SECTION>__<KEY>`` (for example
``CSV_IMPORT__AWS__REGION=eu-west-1``); ``CSV_IMPORT_CONFIG`` points at another file. Loading is pure
(file + environment, no AWS call), so DAG files may call :func:`load_config` at parse time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "CSV_IMPORT__"
CONFIG_PATH_ENV = "CSV_IMPORT_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "include" / "config" / "pipeline.toml"

COMPUTE_TYPES = ("FARGATE", "FARGATE_SPOT", "EC2", "SPOT")
KEY_TYPES = ("S", "N")


class ConfigError(ValueError):
    """The pipeline configuration is invalid; the message names the key and the reason."""


@dataclass(frozen=True)
class AwsConfig:
    conn_id: str
    region: str


@dataclass(frozen=True)
class BucketConfig:
    name: str
    landing_prefix: str
    rejected_prefix: str
    manifest_prefix: str
    kms_key_id: str


@dataclass(frozen=True)
class TableConfig:
    name: str
    partition_key: str
    partition_key_type: str
    sort_key: str
    sort_key_type: str
    import_id_index: str

    @property
    def key_schema(self) -> list[tuple[str, str, str]]:
        """``[(attribute name, HASH|RANGE, S|N), ...]`` in DynamoDB order."""
        schema = [(self.partition_key, "HASH", self.partition_key_type)]
        if self.sort_key:
            schema.append((self.sort_key, "RANGE", self.sort_key_type))
        return schema


@dataclass(frozen=True)
class IamConfig:
    job_role: str
    execution_role: str
    instance_role: str
    path: str


@dataclass(frozen=True)
class BatchConfig:
    compute_type: str
    compute_environment: str
    job_queue: str
    job_definition: str
    max_vcpus: int
    subnets: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    instance_types: tuple[str, ...]
    image: str
    command: tuple[str, ...]
    vcpus: float
    memory_mib: int
    attempts: int
    attempt_timeout_seconds: int
    assign_public_ip: bool
    log_group: str
    job_environment: tuple[str, ...]
    queue_priority: int
    ready_timeout_seconds: int

    @property
    def is_fargate(self) -> bool:
        return self.compute_type.startswith("FARGATE")


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str
    start_date: str
    timezone: str
    catchup: bool
    max_active_runs: int
    sensor_grace_seconds: int
    sensor_poke_seconds: int


@dataclass(frozen=True)
class ImportConfig:
    max_reject_ratio: float
    column_types: str
    empty_cells: str
    shard_threshold_bytes: int
    shard_target_bytes: int
    max_shards: int
    writer_concurrency: int
    poll_interval_seconds: int
    task_retries: int
    retry_delay_seconds: int


@dataclass(frozen=True)
class PipelineConfig:
    aws: AwsConfig
    bucket: BucketConfig
    table: TableConfig
    iam: IamConfig
    batch: BatchConfig
    schedule: ScheduleConfig
    import_: ImportConfig
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS: dict[str, tuple[str, type]] = {
    "aws": ("aws", AwsConfig),
    "bucket": ("bucket", BucketConfig),
    "table": ("table", TableConfig),
    "iam": ("iam", IamConfig),
    "batch": ("batch", BatchConfig),
    "schedule": ("schedule", ScheduleConfig),
    "import": ("import_", ImportConfig),
}


def _coerce(section: str, key: str, value: Any, hint: Any) -> Any:
    """Convert a TOML or environment value to the field's declared type, naming the key on failure."""
    where = f"{section}.{key}"
    text_form = isinstance(value, str)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if hint is int:
            if isinstance(value, bool):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            return value
        if hint == tuple[str, ...]:
            if text_form:
                return tuple(part.strip() for part in value.split(",") if part.strip())
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {value!r}")
            return tuple(value)
    except ValueError as err:
        raise ConfigError(f"pipeline config {where}: {err}") from err
    raise ConfigError(f"pipeline config {where}: unsupported type {hint!r}")


def _validate(config: PipelineConfig) -> None:
    for entry in config.batch.job_environment:
        name, sep, _ = entry.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"pipeline config batch.job_environment: {entry!r} is not NAME=value")
    if config.batch.compute_type not in COMPUTE_TYPES:
        raise ConfigError(
            f"pipeline config batch.compute_type: {config.batch.compute_type!r} is not one of {COMPUTE_TYPES}"
        )
    for key in ("partition_key_type", "sort_key_type"):
        if getattr(config.table, key) not in KEY_TYPES:
            raise ConfigError(f"pipeline config table.{key}: must be one of {KEY_TYPES}")
    if not config.table.partition_key:
        raise ConfigError("pipeline config table.partition_key: must not be empty")
    for key in ("landing_prefix", "rejected_prefix", "manifest_prefix"):
        prefix = getattr(config.bucket, key)
        if not prefix.endswith("/") or prefix.startswith("/"):
            raise ConfigError(
                f"pipeline config bucket.{key}: {prefix!r} must end with '/' and not start with '/'"
            )
    prefixes = [config.bucket.landing_prefix, config.bucket.rejected_prefix, config.bucket.manifest_prefix]
    for a in prefixes:
        for b in prefixes:
            if a is not b and a.startswith(b):
                raise ConfigError(f"pipeline config bucket: prefixes {a!r} and {b!r} overlap")
    from csv_importer.inputs import EMPTY_CELLS_CHOICES

    if config.import_.empty_cells not in EMPTY_CELLS_CHOICES:
        raise ConfigError(
            f"pipeline config import.empty_cells: {config.import_.empty_cells!r} is not one of {EMPTY_CELLS_CHOICES}"
        )
    if not 0.0 <= config.import_.max_reject_ratio <= 1.0:
        raise ConfigError("pipeline config import.max_reject_ratio: must be between 0 and 1")
    if config.batch.attempts < 1 or config.batch.attempts > 10:
        raise ConfigError("pipeline config batch.attempts: AWS Batch allows 1 to 10 attempts")
    if config.import_.max_shards < 1 or config.import_.max_shards > 10000:
        raise ConfigError("pipeline config import.max_shards: must be between 1 and 10000")
    _validate_schedule(config.schedule)


def _validate_schedule(schedule: ScheduleConfig) -> None:
    """A run triggered for one ``s3_key`` must never queue behind scheduled runs that wait for files.

    With catchup off, a scheduled run's sensor gives up (skips the run) before the next tick creates the
    next scheduled run, so scheduled runs hold at most one active-run slot; ``max_active_runs >= 2`` then
    always leaves a slot for a UI run.
    """
    if schedule.max_active_runs < 2:
        raise ConfigError(
            "pipeline config schedule.max_active_runs: must be at least 2, so that a run triggered for one "
            "s3_key never waits behind a scheduled run whose sensor is waiting for files"
        )
    if schedule.sensor_grace_seconds < 1 or schedule.sensor_poke_seconds < 1:
        raise ConfigError(
            "pipeline config schedule.sensor_grace_seconds/sensor_poke_seconds: must be positive"
        )
    from datetime import datetime, timedelta

    from croniter import croniter  # an Airflow dependency; imported here so the job never needs it

    try:
        ticks = croniter(schedule.cron, datetime(2001, 1, 1))
    except (ValueError, KeyError) as err:
        raise ConfigError(
            f"pipeline config schedule.cron: {schedule.cron!r} is not a cron expression: {err}"
        ) from err
    times = [ticks.get_next(datetime) for _ in range(16)]
    shortest = min(later - earlier for earlier, later in zip(times, times[1:], strict=False))
    if timedelta(seconds=schedule.sensor_grace_seconds) >= shortest:
        raise ConfigError(
            f"pipeline config schedule.sensor_grace_seconds: {schedule.sensor_grace_seconds} s must be shorter "
            f"than the schedule's shortest interval ({int(shortest.total_seconds())} s), or waiting runs pile up"
        )


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Read the pipeline config file and apply ``CSV_IMPORT__SECTION__KEY`` environment overrides."""
    env = os.environ if environ is None else environ
    config_path = Path(path or env.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"pipeline config file {config_path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"pipeline config file {config_path} is not valid TOML: {err}") from err

    unknown_sections = set(raw) - set(_SECTIONS)
    if unknown_sections:
        raise ConfigError(f"pipeline config file {config_path}: unknown sections {sorted(unknown_sections)}")

    built: dict[str, Any] = {}
    for section, (attr, cls) in _SECTIONS.items():
        values = dict(raw.get(section, {}))
        hints = get_type_hints(cls)
        unknown = set(values) - set(hints)
        if unknown:
            raise ConfigError(f"pipeline config [{section}]: unknown keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, hint in hints.items():
            env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            if env_name in env:
                value: Any = env[env_name]
            elif key in values:
                value = values[key]
            else:
                raise ConfigError(f"pipeline config [{section}] is missing {key!r} (file {config_path})")
            kwargs[key] = _coerce(section, key, value, hint)
        built[attr] = cls(**kwargs)

    config = PipelineConfig(**built, source=str(config_path))
    _validate(config)
    return config
