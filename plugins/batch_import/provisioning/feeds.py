"""Feeds provisioned earlier but no longer in the config: found, reported, left alone (nothing is deleted).

A feed's job role and job definition are named after it (:func:`batch_import.config.feed_resource_name`), so
the roles under the pipeline's IAM path and the ACTIVE job definitions tell which feeds were provisioned; the
latest job definition's environment names the feed's table.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from batch_import.config import feed_name_of_resource, feed_resource_name
from batch_import.provisioning.batch import active_job_definitions, job_definition_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnconfiguredFeed:
    """What is left of a feed that the config no longer declares (empty: that resource was not found)."""

    name: str
    job_role: str
    job_definition: str
    table: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def find_unconfigured_feeds(
    iam_client: Any,
    batch_client: Any,
    *,
    role_base: str,
    iam_path: str,
    job_definition_base: str,
    configured: Collection[str],
) -> list[UnconfiguredFeed]:
    """Feeds whose job role or job definition exists but which ``configured`` does not name (List calls only)."""
    roles: dict[str, str] = {}
    for page in iam_client.get_paginator("list_roles").paginate(PathPrefix=iam_path):
        for role in page["Roles"]:
            name = feed_name_of_resource(role_base, role["RoleName"])
            if name is not None:
                roles[name] = role["RoleName"]
    definitions: dict[str, dict[str, Any]] = {}
    for definition_name, definition in active_job_definitions(
        batch_client, name_prefix=feed_resource_name(job_definition_base, "")
    ).items():
        name = feed_name_of_resource(job_definition_base, definition_name)
        if name is not None:
            definitions[name] = definition
    leftovers = []
    for name in sorted((set(roles) | set(definitions)) - set(configured)):
        definition = definitions.get(name, {})
        leftovers.append(
            UnconfiguredFeed(
                name=name,
                job_role=roles.get(name, ""),
                job_definition=str(definition.get("jobDefinitionName", "")),
                table=job_definition_table(definition) if definition else "",
            )
        )
    return leftovers
