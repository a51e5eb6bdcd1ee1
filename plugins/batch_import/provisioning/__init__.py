"""Idempotent provisioning of what the import needs: describe -> diff -> create / update in place -> wait.

One module per resource kind (:mod:`.s3`, :mod:`.dynamodb`, :mod:`.iam`, :mod:`.logs`, :mod:`.batch`). Every
``ensure_*`` function takes the boto3 client(s) it needs, makes only Describe/List/Get calls when the resource
already matches, and returns a :class:`~batch_import.provisioning.outcome.ProvisionResult` saying
created / updated / unchanged with the differences it applied. Nothing here deletes anything.
"""

from __future__ import annotations

from batch_import.provisioning.outcome import ProvisioningError, ProvisionResult, summarize

__all__ = ["ProvisionResult", "ProvisioningError", "summarize"]
