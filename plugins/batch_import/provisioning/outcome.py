"""What an ``ensure_*`` function reports, and the error it raises for a change it must not make."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["created", "updated", "unchanged"]


class ProvisioningError(RuntimeError):
    """A resource cannot be brought to the configured state without deleting or replacing something.

    The message names the resource and the reason; nothing has been changed for that resource.
    """


@dataclass(frozen=True)
class ProvisionResult:
    """The outcome of ensuring one resource.

    :param resource: the resource kind in the pipeline's words (``bucket``, ``table``, ``job_role``, ...)
    :param name: the resource's name
    :param action: ``created``, ``updated`` (``changes`` says what) or ``unchanged``
    :param changes: one human-readable line per difference applied
    :param arn: the resource's ARN (empty for S3 buckets' name-only identity is fine too)
    """

    resource: str
    name: str
    action: Action
    changes: tuple[str, ...] = field(default_factory=tuple)
    arn: str = ""

    @classmethod
    def from_changes(
        cls, resource: str, name: str, *, created: bool, changes: Iterable[str], arn: str = ""
    ) -> ProvisionResult:
        applied = tuple(changes)
        action: Action = "created" if created else ("updated" if applied else "unchanged")
        return cls(resource=resource, name=name, action=action, changes=applied, arn=arn)

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "name": self.name,
            "action": self.action,
            "changes": list(self.changes),
            "arn": self.arn,
        }

    def describe(self) -> str:
        """One log line: ``job_queue csv-import-queue: updated (priority: 1 -> 2)``."""
        suffix = f" ({'; '.join(self.changes)})" if self.changes else ""
        return f"{self.resource} {self.name}: {self.action}{suffix}"


def summary_key(resource: str, feed: str = "") -> str:
    """How a result is named in the summary: ``table`` for a shared resource, ``orders.table`` for a feed's."""
    return f"{feed}.{resource}" if feed else resource


def summarize(results: Iterable[Mapping[str, Any] | ProvisionResult]) -> dict[str, str]:
    """``{resource: created|updated|unchanged}`` from ensure results (dicts as they come out of XCom).

    A feed's resources (XCom ``feed`` set) are named ``<feed>.<resource>``, e.g. ``orders.job_role``.
    """
    summary: dict[str, str] = {}
    for result in results:
        as_mapping = result.as_dict() if isinstance(result, ProvisionResult) else result
        resource = summary_key(str(as_mapping["resource"]), str(as_mapping.get("feed") or ""))
        if resource in summary:
            raise ValueError(f"provisioning summary: resource {resource!r} reported twice")
        summary[resource] = str(as_mapping["action"])
    return summary
