"""The pipeline's declarative configuration, read from one TOML file, overridable by environment.

``include/config/pipeline.toml`` is the single source of names, sizes, schedule, image and key schemas.
Its shared sections (``aws``, ``bucket``, ``iam``, ``batch``, ``schedule``, ``import``) hold the defaults of
every feed; each ``[[feeds]]`` entry declares one feed (one kind of file: its landing prefix, table, key
schema and column types) and may override any ``schedule`` or ``import`` key for itself.

Every key can be overridden per deployment with ``CSV_IMPORT__<SECTION>__<KEY>`` (for example
``CSV_IMPORT__AWS__REGION=eu-west-1``), a feed's keys with ``CSV_IMPORT__FEEDS__<NAME>__<KEY>`` (for example
``CSV_IMPORT__FEEDS__ORDERS__TABLE=orders-prod``); ``CSV_IMPORT_CONFIG`` points at another file. Loading is
pure (file + environment, no AWS call), so DAG files may call :func:`load_config` at parse time.

``python -m batch_import.config`` prints the resolved configuration as JSON (exit 2 on an invalid one).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_type_hints

ENV_PREFIX = "CSV_IMPORT__"
CONFIG_PATH_ENV = "CSV_IMPORT_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "include" / "config" / "pipeline.toml"

COMPUTE_TYPES = ("FARGATE", "FARGATE_SPOT", "EC2", "SPOT")
KEY_TYPES = ("S", "N")
FEED_NAME = re.compile(r"[a-z][a-z0-9_]*")
IMPORT_DAG_PREFIX = "import_"
# IAM role names are at most 64 characters; a feed's job role is ``<iam.job_role>-<feed name>``.
MAX_ROLE_NAME = 64
# SQS queue names: 1 to 80 letters, digits, hyphens and underscores.
SQS_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
# SQS limits: ReceiveMessage WaitTimeSeconds 0-20, MaxNumberOfMessages 1-10.
MAX_LONG_POLL_SECONDS = 20
MAX_MESSAGES_PER_RECEIVE = 10


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
class EventsConfig:
    """S3 event notifications through one SQS queue per feed, watched by the feed's import DAG."""

    queue: str
    dead_letter_suffix: str
    max_receive_count: int
    dead_letter_retention_seconds: int
    long_poll_seconds: int
    empty_poll_delay_seconds: int
    max_messages: int


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
    deferrable: bool
    deferral_settle_seconds: float
    task_retries: int
    retry_delay_seconds: int


@dataclass(frozen=True)
class PricesConfig:
    """List prices the cost report multiplies by (README, "What an import costs")."""

    region: str
    read_on: str
    source: str
    dynamodb_write_per_million_units: float
    dynamodb_read_per_million_units: float
    fargate_vcpu_per_hour: float
    fargate_gib_per_hour: float
    s3_put_per_thousand: float
    s3_get_per_thousand: float


@dataclass(frozen=True)
class FeedConfig:
    """One feed: a kind of CSV file, where it lands, the table it goes to, and its own schedule and import.

    ``schedule`` and ``import_`` are the feed's effective settings (the shared sections with the feed's own
    overrides applied). The derived names (DAG id, bookkeeping prefixes, job role, job definition) are
    computed here once, from the feed's name and the shared sections.
    """

    name: str
    landing_prefix: str
    table: TableConfig
    schedule: ScheduleConfig
    import_: ImportConfig
    manifest_prefix: str
    rejected_prefix: str
    job_role: str
    job_definition: str
    event_queue: str
    event_dead_letter_queue: str

    @property
    def dag_id(self) -> str:
        return f"{IMPORT_DAG_PREFIX}{self.name}"

    @property
    def column_types(self) -> str:
        return self.import_.column_types

    def as_dict(self) -> dict[str, Any]:
        """The feed as ``python -m batch_import.config`` prints it (flat table keys, effective settings)."""
        return {
            "name": self.name,
            "dag_id": self.dag_id,
            "landing_prefix": self.landing_prefix,
            "table": self.table.name,
            "partition_key": self.table.partition_key,
            "partition_key_type": self.table.partition_key_type,
            "sort_key": self.table.sort_key,
            "sort_key_type": self.table.sort_key_type,
            "import_id_index": self.table.import_id_index,
            "column_types": self.column_types,
            "manifest_prefix": self.manifest_prefix,
            "rejected_prefix": self.rejected_prefix,
            "job_role": self.job_role,
            "job_definition": self.job_definition,
            "event_queue": self.event_queue,
            "event_dead_letter_queue": self.event_dead_letter_queue,
            "schedule": dataclasses.asdict(self.schedule),
            "import": dataclasses.asdict(self.import_),
        }


@dataclass(frozen=True)
class PipelineConfig:
    aws: AwsConfig
    bucket: BucketConfig
    iam: IamConfig
    batch: BatchConfig
    schedule: ScheduleConfig
    import_: ImportConfig
    events: EventsConfig
    prices: PricesConfig
    feeds: tuple[FeedConfig, ...]
    source: str = ""

    def feed(self, name: str) -> FeedConfig:
        """The feed called ``name``; :class:`KeyError` naming the configured feeds otherwise."""
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(f"no feed {name!r} in the pipeline config (feeds: {', '.join(self.feed_names)})")

    @property
    def feed_names(self) -> tuple[str, ...]:
        return tuple(feed.name for feed in self.feeds)

    def as_dict(self) -> dict[str, Any]:
        """The resolved configuration: shared sections under their file names, then ``feeds``."""
        resolved: dict[str, Any] = {"source": self.source}
        for section, (attr, _) in _SECTIONS.items():
            resolved[section] = dataclasses.asdict(getattr(self, attr))
        resolved["feeds"] = [feed.as_dict() for feed in self.feeds]
        return resolved


_SECTIONS: dict[str, tuple[str, type]] = {
    "aws": ("aws", AwsConfig),
    "bucket": ("bucket", BucketConfig),
    "iam": ("iam", IamConfig),
    "batch": ("batch", BatchConfig),
    "schedule": ("schedule", ScheduleConfig),
    "import": ("import_", ImportConfig),
    "events": ("events", EventsConfig),
    "prices": ("prices", PricesConfig),
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
    for key in ("landing_prefix", "rejected_prefix", "manifest_prefix"):
        _check_prefix_form(f"bucket.{key}", getattr(config.bucket, key))
    prefixes = [config.bucket.landing_prefix, config.bucket.rejected_prefix, config.bucket.manifest_prefix]
    for a in prefixes:
        for b in prefixes:
            if a is not b and a.startswith(b):
                raise ConfigError(f"pipeline config bucket: prefixes {a!r} and {b!r} overlap")
    if config.batch.attempts < 1 or config.batch.attempts > 10:
        raise ConfigError("pipeline config batch.attempts: AWS Batch allows 1 to 10 attempts")
    _validate_import("import", config.import_)
    _validate_schedule("schedule", config.schedule)
    _validate_events(config.events)
    if not config.feeds:
        raise ConfigError("pipeline config feeds: no [[feeds]] declared; declare at least one feed")
    for feed in config.feeds:
        _validate_feed(config, feed)
    _validate_feeds_apart(config.feeds)


def _check_prefix_form(where: str, prefix: str) -> None:
    if not prefix.endswith("/") or prefix.startswith("/"):
        raise ConfigError(f"pipeline config {where}: {prefix!r} must end with '/' and not start with '/'")
    if any(segment in ("", ".", "..") for segment in prefix[:-1].split("/")):
        raise ConfigError(f"pipeline config {where}: {prefix!r} has an empty, '.' or '..' path segment")


def _validate_feed(config: PipelineConfig, feed: FeedConfig) -> None:
    where = f"feeds.{feed.name}"
    _check_prefix_form(f"{where}.landing_prefix", feed.landing_prefix)
    if not feed.landing_prefix.startswith(config.bucket.landing_prefix):
        raise ConfigError(
            f"pipeline config {where}.landing_prefix: {feed.landing_prefix!r} is not under the bucket's landing "
            f"prefix {config.bucket.landing_prefix!r} (bucket.landing_prefix)"
        )
    if not feed.table.name:
        raise ConfigError(f"pipeline config {where}.table: must not be empty")
    if not feed.table.partition_key:
        raise ConfigError(f"pipeline config {where}.partition_key: must not be empty")
    if feed.table.partition_key_type not in KEY_TYPES:
        raise ConfigError(
            f"pipeline config {where}.partition_key_type: {feed.table.partition_key_type!r} is not one of "
            f"{KEY_TYPES}"
        )
    if feed.table.sort_key and feed.table.sort_key_type not in KEY_TYPES:
        raise ConfigError(
            f"pipeline config {where}.sort_key_type: {feed.table.sort_key_type!r} is not one of {KEY_TYPES}"
        )
    if feed.table.sort_key == feed.table.partition_key:
        raise ConfigError(f"pipeline config {where}.sort_key: must differ from the partition key")
    for queue in (feed.event_queue, feed.event_dead_letter_queue):
        if not SQS_QUEUE_NAME.fullmatch(queue):
            raise ConfigError(
                f"pipeline config {where}.event_queue: {queue!r} is not an SQS queue name (1 to 80 letters, "
                "digits, '-' or '_')"
            )
    if len(feed.job_role) > MAX_ROLE_NAME:
        raise ConfigError(
            f"pipeline config {where}.name: the feed's job role {feed.job_role!r} is longer than IAM's "
            f"{MAX_ROLE_NAME} characters; choose a shorter feed name or iam.job_role"
        )
    _validate_import(where, feed.import_)
    _validate_schedule(where, feed.schedule)


def _validate_events(events: EventsConfig) -> None:
    if not 1 <= events.long_poll_seconds <= MAX_LONG_POLL_SECONDS:
        raise ConfigError(
            f"pipeline config events.long_poll_seconds: SQS long polling waits 1 to {MAX_LONG_POLL_SECONDS} s"
        )
    if not 1 <= events.max_messages <= MAX_MESSAGES_PER_RECEIVE:
        raise ConfigError(
            f"pipeline config events.max_messages: SQS returns 1 to {MAX_MESSAGES_PER_RECEIVE} messages a receive"
        )
    if events.empty_poll_delay_seconds < 0:
        raise ConfigError("pipeline config events.empty_poll_delay_seconds: must not be negative")
    if not 1 <= events.max_receive_count <= 1000:
        raise ConfigError("pipeline config events.max_receive_count: SQS allows 1 to 1000 receives")
    if not 60 <= events.dead_letter_retention_seconds <= 1209600:
        raise ConfigError(
            "pipeline config events.dead_letter_retention_seconds: SQS keeps messages 60 s to 14 days"
        )


def _validate_feeds_apart(feeds: tuple[FeedConfig, ...]) -> None:
    """No two feeds share a name, a table or an event queue, and no landing prefix lies inside another feed's."""
    owned: tuple[tuple[str, str, Callable[[FeedConfig], str]], ...] = (
        ("table", "table", lambda feed: feed.table.name),
        ("event_queue", "event queue", lambda feed: feed.event_queue),
    )
    for attribute, what, value_of in owned:
        seen: dict[str, str] = {}
        for feed in feeds:
            value = value_of(feed)
            other = seen.setdefault(value, feed.name)
            if other != feed.name:
                raise ConfigError(
                    f"pipeline config feeds.{feed.name}.{attribute}: {value!r} is already the {what} of feed "
                    f"{other!r}; every feed has its own {what}"
                )
    for feed in feeds:
        for other in feeds:
            if other is not feed and feed.landing_prefix.startswith(other.landing_prefix):
                raise ConfigError(
                    f"pipeline config feeds.{feed.name}.landing_prefix: {feed.landing_prefix!r} overlaps feed "
                    f"{other.name!r}'s landing prefix {other.landing_prefix!r}; a file must belong to one feed"
                )


def _validate_import(where: str, settings: ImportConfig) -> None:
    from csv_importer.exit_codes import UsageProblem
    from csv_importer.inputs import EMPTY_CELLS_CHOICES
    from csv_importer.settings import parse_column_types

    if settings.empty_cells not in EMPTY_CELLS_CHOICES:
        raise ConfigError(
            f"pipeline config {where}.empty_cells: {settings.empty_cells!r} is not one of {EMPTY_CELLS_CHOICES}"
        )
    if not 0.0 <= settings.max_reject_ratio <= 1.0:
        raise ConfigError(f"pipeline config {where}.max_reject_ratio: must be between 0 and 1")
    if settings.max_shards < 1 or settings.max_shards > 10000:
        raise ConfigError(f"pipeline config {where}.max_shards: must be between 1 and 10000")
    try:
        parse_column_types(settings.column_types)
    except UsageProblem as err:
        raise ConfigError(f"pipeline config {where}.column_types: {err}") from err


def _validate_schedule(where: str, schedule: ScheduleConfig) -> None:
    """A run triggered for one ``s3_key`` must never queue behind scheduled runs that wait for files.

    With catchup off, a scheduled run's sensor gives up (skips the run) before the next tick creates the
    next scheduled run, so scheduled runs hold at most one active-run slot; ``max_active_runs >= 2`` then
    always leaves a slot for a UI run.
    """
    if schedule.max_active_runs < 2:
        raise ConfigError(
            f"pipeline config {where}.max_active_runs: must be at least 2, so that a run triggered for one "
            "s3_key never waits behind a scheduled run whose sensor is waiting for files"
        )
    if schedule.sensor_grace_seconds < 1 or schedule.sensor_poke_seconds < 1:
        raise ConfigError(
            f"pipeline config {where}.sensor_grace_seconds/sensor_poke_seconds: must be positive"
        )
    shortest = _shortest_interval(schedule.cron, where)
    if timedelta(seconds=schedule.sensor_grace_seconds) >= shortest:
        raise ConfigError(
            f"pipeline config {where}.sensor_grace_seconds: {schedule.sensor_grace_seconds} s must be shorter "
            f"than the schedule's shortest interval ({int(shortest.total_seconds())} s), or waiting runs pile up"
        )


@functools.cache
def _shortest_interval(cron: str, where: str) -> timedelta:
    from croniter import croniter  # an Airflow dependency; imported here so the job never needs it

    try:
        ticks = croniter(cron, datetime(2001, 1, 1))
    except (ValueError, KeyError) as err:
        raise ConfigError(f"pipeline config {where}.cron: {cron!r} is not a cron expression: {err}") from err
    times = [ticks.get_next(datetime) for _ in range(16)]
    return min(later - earlier for earlier, later in zip(times, times[1:], strict=False))


def _section_values(
    where: str, cls: type, values: Mapping[str, Any], env: Mapping[str, str], env_prefix: str
) -> dict[str, Any]:
    """Every field of ``cls``: its ``env_prefix<KEY>`` variable, else the file's value; typed."""
    kwargs: dict[str, Any] = {}
    for key, hint in get_type_hints(cls).items():
        env_name = f"{env_prefix}{key.upper()}"
        if env_name in env:
            value: Any = env[env_name]
        elif key in values:
            value = values[key]
        else:
            raise ConfigError(f"pipeline config {where} is missing {key!r}")
        kwargs[key] = _coerce(where, key, value, hint)
    return kwargs


# A feed's own keys, their types and defaults (None: required). ``landing_prefix`` defaults to
# ``<bucket.landing_prefix><name>/``; any key of ``schedule`` and ``import`` may be set too.
FEED_KEYS: dict[str, tuple[type, Any]] = {
    "name": (str, None),
    "landing_prefix": (str, ""),
    "table": (str, None),
    "partition_key": (str, None),
    "partition_key_type": (str, "S"),
    "sort_key": (str, ""),
    "sort_key_type": (str, ""),
    "import_id_index": (str, ""),
    "event_queue": (str, ""),
}


def _feed_env(env: Mapping[str, str], name: str) -> dict[str, str]:
    prefix = f"{ENV_PREFIX}FEEDS__{name.upper()}__"
    return {key[len(prefix) :].lower(): value for key, value in env.items() if key.startswith(prefix)}


def _build_feed(
    index: int,
    raw: Any,
    env: Mapping[str, str],
    *,
    bucket: BucketConfig,
    iam: IamConfig,
    batch: BatchConfig,
    schedule: ScheduleConfig,
    import_: ImportConfig,
    events: EventsConfig,
) -> FeedConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"pipeline config feeds[{index}]: expected a table ([[feeds]]), got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not FEED_NAME.fullmatch(name):
        raise ConfigError(f"pipeline config feeds[{index}].name: {name!r} must match {FEED_NAME.pattern}")
    if "__" in name or name.endswith("_"):
        raise ConfigError(
            f"pipeline config feeds[{index}].name: {name!r} must not contain '__' or end in '_' (its "
            "environment overrides CSV_IMPORT__FEEDS__<NAME>__<KEY> would be ambiguous)"
        )
    where = f"feeds.{name}"
    schedule_keys = set(get_type_hints(ScheduleConfig))
    import_keys = set(get_type_hints(ImportConfig))
    known = set(FEED_KEYS) | schedule_keys | import_keys
    overrides = _feed_env(env, name)
    for origin, keys in (("key", set(raw)), ("environment override", set(overrides))):
        unknown = keys - known
        if unknown:
            raise ConfigError(
                f"pipeline config {where}: unknown {origin} {sorted(unknown)} (a feed has "
                f"{', '.join(FEED_KEYS)} and the keys of [schedule] and [import])"
            )
    if "name" in overrides:
        raise ConfigError(f"pipeline config {where}.name: a feed's name cannot be overridden")
    values = {**raw, **overrides}
    own: dict[str, Any] = {}
    for key, (hint, default) in FEED_KEYS.items():
        if key not in values:
            if default is None:
                raise ConfigError(f"pipeline config {where} is missing {key!r}")
            own[key] = default
        else:
            own[key] = _coerce(where, key, values[key], hint)
    sort_key_type = own["sort_key_type"] or ("S" if own["sort_key"] else "")
    if not own["sort_key"]:
        sort_key_type = ""
    table = TableConfig(
        name=own["table"],
        partition_key=own["partition_key"],
        partition_key_type=own["partition_key_type"],
        sort_key=own["sort_key"],
        sort_key_type=sort_key_type,
        import_id_index=own["import_id_index"],
    )
    event_queue = own["event_queue"] or feed_resource_name(events.queue, name)
    return FeedConfig(
        name=name,
        landing_prefix=own["landing_prefix"] or f"{bucket.landing_prefix}{name}/",
        table=table,
        schedule=_with_overrides(where, schedule, values, schedule_keys),
        import_=_with_overrides(where, import_, values, import_keys),
        manifest_prefix=f"{bucket.manifest_prefix}{name}/",
        rejected_prefix=f"{bucket.rejected_prefix}{name}/",
        job_role=feed_resource_name(iam.job_role, name),
        job_definition=feed_resource_name(batch.job_definition, name),
        event_queue=event_queue,
        event_dead_letter_queue=f"{event_queue}{events.dead_letter_suffix}",
    )


def feed_resource_name(base: str, feed_name: str) -> str:
    """A feed's own job role or job definition: the shared name plus ``-<feed>`` (``csv-import-job-orders``)."""
    return f"{base}-{feed_name}"


def feed_name_of_resource(base: str, resource_name: str) -> str | None:
    """The feed a job role or job definition named by :func:`feed_resource_name` belongs to, else ``None``."""
    prefix = feed_resource_name(base, "")
    if not resource_name.startswith(prefix):
        return None
    name = resource_name[len(prefix) :]
    return name if FEED_NAME.fullmatch(name) else None


def _with_overrides(where: str, shared: Any, values: Mapping[str, Any], keys: set[str]) -> Any:
    hints = get_type_hints(type(shared))
    changes = {key: _coerce(where, key, values[key], hints[key]) for key in keys if key in values}
    return dataclasses.replace(shared, **changes)


def _refuse_retired_table_section(raw: Mapping[str, Any], env: Mapping[str, str], config_path: Path) -> None:
    retired = sorted(name for name in env if name.startswith(f"{ENV_PREFIX}TABLE__"))
    if "table" in raw or retired:
        where = f"file {config_path}" if "table" in raw else f"environment {', '.join(retired)}"
        raise ConfigError(
            f"pipeline config [table] ({where}): the table is a feed's now; move its keys into a [[feeds]] "
            "entry (table, partition_key, ...) and override them with CSV_IMPORT__FEEDS__<NAME>__<KEY>"
        )


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Read the pipeline config file and apply the ``CSV_IMPORT__...`` environment overrides."""
    env = os.environ if environ is None else environ
    config_path = Path(path or env.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"pipeline config file {config_path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"pipeline config file {config_path} is not valid TOML: {err}") from err

    _refuse_retired_table_section(raw, env, config_path)
    unknown_sections = set(raw) - set(_SECTIONS) - {"feeds"}
    if unknown_sections:
        raise ConfigError(f"pipeline config file {config_path}: unknown sections {sorted(unknown_sections)}")

    built: dict[str, Any] = {}
    for section, (attr, cls) in _SECTIONS.items():
        values = dict(raw.get(section, {}))
        unknown = set(values) - set(get_type_hints(cls))
        if unknown:
            raise ConfigError(f"pipeline config [{section}]: unknown keys {sorted(unknown)}")
        kwargs = _section_values(section, cls, values, env, f"{ENV_PREFIX}{section.upper()}__")
        built[attr] = cls(**kwargs)

    raw_feeds = raw.get("feeds", [])
    if not isinstance(raw_feeds, list):
        raise ConfigError(f"pipeline config file {config_path}: feeds must be an array of tables ([[feeds]])")
    feeds: list[FeedConfig] = []
    for index, raw_feed in enumerate(raw_feeds):
        feed = _build_feed(
            index,
            raw_feed,
            env,
            bucket=built["bucket"],
            iam=built["iam"],
            batch=built["batch"],
            schedule=built["schedule"],
            import_=built["import_"],
            events=built["events"],
        )
        if feed.name in (seen.name for seen in feeds):
            raise ConfigError(f"pipeline config feeds[{index}].name: feed {feed.name!r} is declared twice")
        feeds.append(feed)
    declared = {feed.name.upper() for feed in feeds}
    for name in sorted(env):
        if name.startswith(f"{ENV_PREFIX}FEEDS__"):
            feed_part = name[len(f"{ENV_PREFIX}FEEDS__") :].split("__", 1)[0]
            if feed_part not in declared:
                raise ConfigError(
                    f"pipeline config feeds.{feed_part.lower()}: environment override {name} names no declared "
                    f"feed (feeds: {', '.join(feed.name for feed in feeds)})"
                )

    config = PipelineConfig(**built, feeds=tuple(feeds), source=str(config_path))
    _validate(config)
    return config


def feed_for_dag_id(config: PipelineConfig, dag_id: str) -> FeedConfig | None:
    """The feed whose import DAG is ``dag_id``, or ``None``."""
    for feed in config.feeds:
        if feed.dag_id == dag_id:
            return feed
    return None


def main(argv: list[str] | None = None) -> int:
    """Print the resolved configuration as JSON; on an invalid config print the error and return 2."""
    import json
    import sys

    del argv
    try:
        config = load_config()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(config.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
