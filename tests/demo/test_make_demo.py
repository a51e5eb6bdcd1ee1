"""``make demo`` as CI runs it (``CI=true``): the whole pipeline, and every file comes out as expected."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from include.demo.sample_files import sample_week

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}  ")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _processes_with_files_under(folder: Path) -> list[str]:
    """Processes holding a file under ``folder`` open (children inherit their parent's output files)."""
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            descriptors = list((proc / "fd").iterdir())
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
            except OSError:
                continue  # closed meanwhile
            if target.startswith(str(folder)):
                holders.append(f"{proc.name}: {target}")
                break
    return holders


def test_demo_imports_and_verifies_every_file_then_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    finished = subprocess.run(
        [sys.executable, "-m", "include.demo", "--home", str(home)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-6000:]

    generated = sample_week(first_date=date(2026, 1, 1), landing_prefix="incoming/", large_file_rows=1)
    summary = [line for line in finished.stdout.splitlines() if SUMMARY_LINE.match(line)]
    assert len(summary) == len(generated), finished.stdout
    assert all(line.endswith("as expected") for line in summary), finished.stdout
    # columns: date key shards rows imported rejected verified duration "s" result
    (sharded,) = [line for line in summary if "orders-bulk" in line]
    assert int(sharded.split()[2]) > 1, f"the large file was not sharded: {sharded}"
    with_rejects = [line for line in summary if int(line.split()[5]) > 0]
    assert len(with_rejects) == 1, f"expected exactly one file with rejected rows: {with_rejects}"
    assert "stopped everything the demo started" in finished.stdout
    assert _processes_with_files_under(home) == []
