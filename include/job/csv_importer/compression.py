"""Is this object gzip? Decided by its content (gzip's magic bytes), the key's suffix only a hint.

The job's reader and the DAG's verification both ask :func:`is_gzip`, so a ``.CSV.GZ`` key, a ``.csv.gz`` key and a
gzip body under a plain ``.csv`` key are treated alike everywhere.
"""

from __future__ import annotations

GZIP_MAGIC = b"\x1f\x8b"
GZIP_SUFFIX = ".gz"


def has_gzip_suffix(key: str) -> bool:
    """The hint: the key ends in ``.gz``, in any case."""
    return key.lower().endswith(GZIP_SUFFIX)


def is_gzip(head: bytes, key: str) -> bool:
    """Whether an object starting with ``head`` is gzip.

    The content decides once it has the two magic bytes' worth; only a shorter object (which cannot be a
    whole gzip stream) falls back to the suffix, so that an empty or one-byte ``.gz`` object is reported as a
    truncated gzip stream rather than read as text.
    """
    if len(head) >= len(GZIP_MAGIC):
        return head.startswith(GZIP_MAGIC)
    return has_gzip_suffix(key)
