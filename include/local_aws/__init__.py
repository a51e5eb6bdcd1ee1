"""Local AWS endpoint: moto's server, with AWS Batch jobs run as host processes (see docs/local_aws.md)."""

from __future__ import annotations

from include.local_aws.server import LocalAws

__all__ = ["LocalAws"]
