"""What a process started, read from ``/proc``: its descendants, their process groups and listening TCP ports.

A process is identified by its pid and start time (field 22 of ``/proc/<pid>/stat``), so a pid reused by an
unrelated process after the original ended never counts as "still running". Zombies (ended, not yet reaped by
their new parent) run nothing and hold no file or port: they do not count as running either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    pgid: int
    start_time: int
    state: str
    cmdline: str

    @property
    def running(self) -> bool:
        return self.state != "Z"


def _read_process(pid: int) -> Process | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        cmdline = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None  # ended meanwhile
    # "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime
    # cstime priority nice num_threads itrealvalue starttime ..."; comm may hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return Process(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        start_time=int(fields[19]),
        state=fields[0],
        cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
    )


def all_processes() -> list[Process]:
    found = (_read_process(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit())
    return [process for process in found if process is not None]


def descendants(root_pid: int) -> list[Process]:
    """Every process below ``root_pid`` (children, their children, ...) at this moment."""
    processes = all_processes()
    children: dict[int, list[Process]] = {}
    for process in processes:
        children.setdefault(process.ppid, []).append(process)
    found: list[Process] = []
    pending = [root_pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child.pid)
    return found


def still_running(recorded: list[Process]) -> list[Process]:
    """Those of ``recorded`` that run now (same pid and start time, not a zombie)."""
    now = {(p.pid, p.start_time): p for p in all_processes() if p.running}
    return [now[(p.pid, p.start_time)] for p in recorded if (p.pid, p.start_time) in now]


def running_in_groups(pgids: set[int]) -> list[Process]:
    return [p for p in all_processes() if p.pgid in pgids and p.running]


def environment_of(pid: int) -> dict[str, str]:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def processes_with_files_under(folder: Path) -> list[str]:
    """Processes holding a file under ``folder`` open (children inherit their parent's output files)."""
    holders = []
    for process in all_processes():
        for target in _open_files(process.pid):
            if target.startswith(str(folder)):
                holders.append(f"{process.pid} ({process.cmdline}): {target}")
                break
    return holders


def _open_files(pid: int) -> list[str]:
    try:
        descriptors = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return []  # gone meanwhile, or not ours to read
    targets = []
    for descriptor in descriptors:
        try:
            targets.append(os.readlink(descriptor))
        except OSError:
            continue  # closed meanwhile
    return targets


def _listening_sockets() -> dict[str, int]:
    """Socket inode -> local port of every listening TCP socket (IPv4 and IPv6) in this network namespace."""
    sockets: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN:
                sockets[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return sockets


def listening_ports(processes: list[Process]) -> dict[int, str]:
    """Port -> the command line of the process listening on it, for every listening socket these hold open."""
    sockets = _listening_sockets()
    ports: dict[int, str] = {}
    for process in processes:
        for target in _open_files(process.pid):
            if target.startswith("socket:[") and target[8:-1] in sockets:
                ports[sockets[target[8:-1]]] = process.cmdline
    return ports


def listened_ports() -> set[int]:
    """Every TCP port something listens on now, whoever holds the socket."""
    return set(_listening_sockets().values())
