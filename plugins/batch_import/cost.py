"""What one import cost: request units, Batch compute and S3 requests, priced from the config's ``[prices]``.

Plain arithmetic over what the pipeline recorded (the job's manifests, the verification's own reads), so that
``verify_file``, the demo and the benchmark report the same figures the same way:

* DynamoDB writes: ``write_request_units`` of the shard manifests (DynamoDB's ConsumedCapacity where it reports
  it, else the job's item-size arithmetic), index writes included;
* DynamoDB reads: the verification's own reads (its BatchGetItem ConsumedCapacity);
* Batch: each shard's run time (manifest ``started_at`` to ``finished_at``) times the job definition's vCPUs and
  memory, at Fargate's per-second prices (Fargate bills at least a minute per task: short jobs cost more than
  this says, stated in the README);
* S3: the job's requests per shard (its GET of the object, the PUTs of its rejected rows and manifest) plus the
  verification's own, counted as they were made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# What one shard of the job sends to S3 besides resumes: GetObject of the file, PutObject of rejected rows and
# of the manifest (csv_importer.importer).
JOB_S3_GETS_PER_SHARD = 1
JOB_S3_PUTS_PER_SHARD = 2
S3_PUT_OPERATIONS = frozenset(
    {"PutObject", "CopyObject", "ListObjectsV2", "ListObjects", "CreateMultipartUpload"}
)


@dataclass(frozen=True)
class ImportCost:
    """The billable quantities of one import and their price."""

    write_request_units: float
    read_request_units: float
    index_write_request_units: Mapping[str, float]
    batch_vcpu_seconds: float
    batch_memory_gib_seconds: float
    s3_put_requests: int
    s3_get_requests: int
    prices: Mapping[str, Any]

    @property
    def s3_requests(self) -> int:
        return self.s3_put_requests + self.s3_get_requests

    @property
    def all_write_request_units(self) -> float:
        """The table's writes and every index's."""
        return self.write_request_units + sum(self.index_write_request_units.values())

    def parts_usd(self) -> dict[str, float]:
        p = self.prices
        return {
            "dynamodb_writes": self.all_write_request_units / 1e6 * p["dynamodb_write_per_million_units"],
            "dynamodb_reads": self.read_request_units / 1e6 * p["dynamodb_read_per_million_units"],
            "batch_vcpu": self.batch_vcpu_seconds / 3600 * p["fargate_vcpu_per_hour"],
            "batch_memory": self.batch_memory_gib_seconds / 3600 * p["fargate_gib_per_hour"],
            "s3_requests": self.s3_put_requests / 1000 * p["s3_put_per_thousand"]
            + self.s3_get_requests / 1000 * p["s3_get_per_thousand"],
        }

    @property
    def estimated_cost_usd(self) -> float:
        return sum(self.parts_usd().values())

    def as_report(self) -> dict[str, Any]:
        """The ``verified.json`` / XCom fields: quantities, ``estimated_cost_usd`` and its parts, the prices used."""
        return {
            "write_request_units": self.all_write_request_units,
            "index_write_request_units": dict(self.index_write_request_units),
            "read_request_units": self.read_request_units,
            "batch_vcpu_seconds": round(self.batch_vcpu_seconds, 3),
            "batch_memory_gib_seconds": round(self.batch_memory_gib_seconds, 3),
            "s3_requests": self.s3_requests,
            "estimated_cost_usd": round(self.estimated_cost_usd, 8),
            "estimated_cost_parts_usd": {name: round(value, 8) for name, value in self.parts_usd().items()},
            "prices": dict(self.prices),
        }

    def describe(self) -> str:
        return (
            f"{self.all_write_request_units:g} write ({sum(self.index_write_request_units.values()):g} of them "
            f"index writes) and {self.read_request_units:g} read request units, "
            f"{self.batch_vcpu_seconds:.1f} vCPU-s and {self.batch_memory_gib_seconds:.1f} GiB-s of Batch, "
            f"{self.s3_requests} S3 requests: about ${self.estimated_cost_usd:.6f} "
            f"at {self.prices.get('region', '?')} prices read {self.prices.get('read_on', '?')}"
        )


def import_cost(
    *,
    write_request_units: float,
    read_request_units: float,
    run_seconds: float,
    index_write_request_units: Mapping[str, float] | None = None,
    shard_count: int,
    vcpus: float,
    memory_mib: int,
    verification_s3_calls: Mapping[str, int],
    prices: Any,
) -> ImportCost:
    """The cost of one import from its recorded quantities.

    :param write_request_units: the table's own write units (``ManifestTotals.write_request_units``)
    :param index_write_request_units: each index's write units (``ManifestTotals.index_write_request_units``)
    :param run_seconds: the shards' run times added up (``ManifestTotals.run_seconds``)
    :param verification_s3_calls: S3 operation name -> count, as the verification made them
    :param prices: the config's ``[prices]`` (a :class:`batch_import.config.PricesConfig`) or a mapping
    """
    price_map = prices if isinstance(prices, Mapping) else asdict(prices)
    puts = shard_count * JOB_S3_PUTS_PER_SHARD + sum(
        count for name, count in verification_s3_calls.items() if name in S3_PUT_OPERATIONS
    )
    gets = shard_count * JOB_S3_GETS_PER_SHARD + sum(
        count for name, count in verification_s3_calls.items() if name not in S3_PUT_OPERATIONS
    )
    return ImportCost(
        write_request_units=write_request_units,
        read_request_units=read_request_units,
        index_write_request_units=dict(index_write_request_units or {}),
        batch_vcpu_seconds=run_seconds * vcpus,
        batch_memory_gib_seconds=run_seconds * memory_mib / 1024,
        s3_put_requests=puts,
        s3_get_requests=gets,
        prices=price_map,
    )


class S3CallCounter:
    """Counts the S3 API calls a client makes while active (botocore's ``before-call`` event)."""

    def __init__(self, s3_client: Any) -> None:
        self._events = s3_client.meta.events
        self.calls: dict[str, int] = {}

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] = self.calls.get(model.name, 0) + 1

    def __enter__(self) -> S3CallCounter:
        self._events.register("before-call.s3", self._count, unique_id=f"s3-call-counter-{id(self)}")
        return self

    def __exit__(self, *_: object) -> None:
        self._events.unregister("before-call.s3", unique_id=f"s3-call-counter-{id(self)}")
