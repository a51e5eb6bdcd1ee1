"""Progress lines while importing (at least every ``interval`` seconds) and the final summary line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("csv_importer.progress")

PROGRESS_INTERVAL_SECONDS = 10.0


class ProgressLog:
    """Call :meth:`tick` per row: it logs rows, rows/s and percent of the object's bytes when due."""

    def __init__(
        self,
        *,
        uri: str,
        total_bytes: int,
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uri = uri
        self._total_bytes = total_bytes
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._next_due = self._started + interval

    def tick(self, rows_read: int, bytes_read: int) -> None:
        now = self._clock()
        if now < self._next_due:
            return
        self._next_due = now + self._interval
        elapsed = max(now - self._started, 1e-9)
        percent = 100.0 * bytes_read / self._total_bytes if self._total_bytes else 100.0
        log.info(
            "progress %s: %s rows read, %.0f rows/s, %.1f%% of %s bytes",
            self._uri,
            rows_read,
            rows_read / elapsed,
            min(percent, 100.0),
            self._total_bytes,
        )

    def summary(
        self, *, status: str, rows_read: int, rows_imported: int, rows_rejected: int, duplicates: int
    ) -> None:
        elapsed = max(self._clock() - self._started, 1e-9)
        log.info(
            "summary %s: status=%s rows_read=%s rows_imported=%s rows_rejected=%s duplicate_keys=%s "
            "in %.1f s (%.0f rows/s)",
            self._uri,
            status,
            rows_read,
            rows_imported,
            rows_rejected,
            duplicates,
            elapsed,
            rows_read / elapsed,
        )
