"""Command-line entry point (placeholder until the job lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    return 0
