"""The deterministic import id: the same object (bucket, key, ETag) always gets the same id."""

from __future__ import annotations

import hashlib


def derive_import_id(bucket: str, key: str, etag: str) -> str:
    """Return a 24-hex-character id for one version of one object.

    Pure and deterministic: the DAG computes it before submitting the job, the job computes it again when no
    ``import_id`` is given. The ETag's surrounding quotes (as S3 returns them) do not matter. The id is
    lowercase hex, so it is safe in DynamoDB values and S3 keys.
    """
    material = "\x00".join((bucket, key, etag.strip().strip('"')))
    return hashlib.blake2b(material.encode("utf-8"), digest_size=12).hexdigest()
