"""Extra links (the buttons on a task in the UI) to one import's manifests and rejected rows in the S3 console.

The provider's own Batch links (job, definition, queue, CloudWatch log) are used as they are; these add the two S3
places an engineer opens when an import looks wrong. Persisted per task instance with the provider's
``BaseAwsLink.persist`` (an XCom), so they point at the import the task really handled.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink

S3_CONSOLE_PREFIX = "https://s3.console.{aws_domain}/s3/buckets/{bucket}?region={region_name}&prefix={prefix}"


class _S3PrefixLink(BaseAwsLink):
    format_str = S3_CONSOLE_PREFIX

    def format_link(self, **kwargs: Any) -> str:
        if "prefix" not in kwargs:
            return ""
        return super().format_link(**{**kwargs, "prefix": quote(str(kwargs["prefix"]), safe="")})


class ImportManifestsLink(_S3PrefixLink):
    """The import's shard manifests and ``verified.json`` (``<manifest_prefix><import_id>/``)."""

    name = "Import manifests (S3)"
    key = "csv_import_manifests"


class RejectedRowsLink(_S3PrefixLink):
    """The import's rejected rows (``<rejected_prefix><import_id>/``)."""

    name = "Rejected rows (S3)"
    key = "csv_import_rejected_rows"
