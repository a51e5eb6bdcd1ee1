"""Peak resident memory of every process a test starts, read from the kernel while they run.

A background thread walks ``/proc`` every ``interval`` seconds, finds the descendants of the test process (the
local endpoint, Airflow, and the endpoint's job processes) and keeps each one's ``VmHWM``: the kernel's own
high-water mark of its resident set, so a sample misses nothing but growth in a process's last ``interval``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")


@dataclass
class ProcessPeak:
    pid: int
    parent_pid: int
    command: str
    shard_index: str | None
    peak_kib: int = 0

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def _command(pid: int) -> str:
    return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def _shard_index(pid: int) -> str | None:
    for entry in (PROC / str(pid) / "environ").read_bytes().split(b"\0"):
        if entry.startswith(b"AWS_BATCH_JOB_ARRAY_INDEX="):
            return entry.split(b"=", 1)[1].decode()
    return None


class PeakMemorySampler:
    """``with PeakMemorySampler() as sampler: ...`` then ``sampler.peaks``: one entry per process seen."""

    def __init__(self, *, root_pid: int | None = None, interval: float = 0.25) -> None:
        self.root_pid = root_pid or os.getpid()
        self.interval = interval
        self.peaks: dict[int, ProcessPeak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory-sampler", daemon=True)

    def __enter__(self) -> PeakMemorySampler:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        for entry in PROC.iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue  # gone meanwhile
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        tree = {self.root_pid}
        grew = True
        while grew:
            added = {pid for pid, parent in parents.items() if parent in tree and pid not in tree}
            tree |= added
            grew = bool(added)
        for pid in tree:
            try:
                status = _status(pid)
                if "VmHWM" not in status:
                    continue  # a zombie: its memory is gone
                peak_kib = int(status["VmHWM"].split()[0])
                command = _command(pid)
                known = self.peaks.get(pid)
                if known is None or known.command != command:
                    # First sight, or the process exec'd since (a fresh child still shows its parent's image).
                    known = self.peaks[pid] = ProcessPeak(
                        pid=pid,
                        parent_pid=parents.get(pid, 0),
                        command=command,
                        shard_index=_shard_index(pid),
                    )
                known.peak_kib = max(known.peak_kib, peak_kib)
            except (OSError, ValueError):
                continue  # exited between the listing and the read
