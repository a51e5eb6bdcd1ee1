"""Progress lines while importing (every ``interval`` seconds, whatever the job waits on) and the summary line.

A daemon thread logs a line each interval from the import's counters, so the lines keep coming while the
reader waits on a stalled S3 stream or the writer waits on DynamoDB (throttling back-off, slow requests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("csv_importer.progress")

PROGRESS_INTERVAL_SECONDS = 10.0


class ProgressLog:
    """Logs rows read, rows/s and percent of the object's bytes every ``interval`` seconds while running.

    ``rows_read`` and ``bytes_read`` are read from the ticker thread: plain counters the import keeps.
    Use ``with progress:`` around the import (starts and stops the ticker), then :meth:`summary`.
    """

    def __init__(
        self,
        *,
        uri: str,
        total_bytes: int,
        rows_read: Callable[[], int],
        bytes_read: Callable[[], int],
        interval: float = PROGRESS_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"progress interval must be positive, got {interval}")
        self._uri = uri
        self._total_bytes = total_bytes
        self._rows_read = rows_read
        self._bytes_read = bytes_read
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> ProgressLog:
        self._ticker = threading.Thread(target=self._tick_until_stopped, name="progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()

    def _tick_until_stopped(self) -> None:
        while not self._stopped.wait(self._interval):
            self.line()

    def line(self) -> None:
        """Log one progress line from the counters as they are now."""
        rows_read, bytes_read = self._rows_read(), self._bytes_read()
        elapsed = max(self._clock() - self._started, 1e-9)
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
