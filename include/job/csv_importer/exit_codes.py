"""Exit codes of ``csv-importer`` and which of them a retry can fix.

| code | name                  | retry can fix it? |
|------|-----------------------|-------------------|
| 0    | OK                    | -                 |
| 1    | UNEXPECTED            | yes (a bug or an unclassified error) |
| 2    | USAGE                 | no (bad arguments or settings) |
| 3    | BAD_INPUT             | no (missing bucket/object/table, empty object, header without a key column,
|      |                       |     reserved or duplicate column, content that is not UTF-8 or not gzip) |
| 4    | REJECT_RATIO_EXCEEDED | no (rows_rejected / rows_read > max_reject_ratio; valid rows stay imported) |
| 5    | OBJECT_CHANGED        | no (the object is no longer the version the import was planned for: its ETag
|      |                       |     differs from ``expected_etag``; the next run imports the new version under its own id) |
| 75   | TRANSIENT             | yes (an AWS error that survived the client's retries: throttling, network) |

The Batch job definition's ``retryStrategy.evaluateOnExit`` and the DAG use :data:`NON_RETRYABLE`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    BAD_INPUT = 3
    REJECT_RATIO_EXCEEDED = 4
    OBJECT_CHANGED = 5
    TRANSIENT = 75


NON_RETRYABLE: frozenset[ExitCode] = frozenset(
    {ExitCode.USAGE, ExitCode.BAD_INPUT, ExitCode.REJECT_RATIO_EXCEEDED, ExitCode.OBJECT_CHANGED}
)


def is_retryable(code: int) -> bool:
    """Whether running the job again unchanged may succeed after it exited with ``code``."""
    return code != ExitCode.OK and code not in NON_RETRYABLE


class JobFailure(Exception):
    """A fatal condition with a one-line message naming the object or table, and its exit code."""

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageProblem(JobFailure):
    exit_code = ExitCode.USAGE


class BadInput(JobFailure):
    exit_code = ExitCode.BAD_INPUT


class TransientFailure(JobFailure):
    exit_code = ExitCode.TRANSIENT


class ObjectChanged(JobFailure):
    exit_code = ExitCode.OBJECT_CHANGED
