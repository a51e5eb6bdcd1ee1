"""Deterministic sample CSV content for the benchmarks (no randomness: every run measures the same bytes)."""

from __future__ import annotations

from collections.abc import Iterator

SAMPLE_HEADER = "id,name,price,qty,active,note\n"
SAMPLE_COLUMN_TYPES = "price:N,qty:N,active:BOOL"


def sample_row(index: int) -> str:
    """About 100 bytes: a key, a name, two numbers, a boolean and a short note."""
    return (
        f"item-{index:08d},Product number {index},{(index % 9973) / 100:.2f},{index % 500},"
        f"{'true' if index % 3 else 'false'},note for row {index} with some text\n"
    )


def sample_csv(rows: int) -> bytes:
    return (SAMPLE_HEADER + "".join(sample_row(i) for i in range(rows))).encode("utf-8")


def padded_rows(rows: int, row_bytes: int) -> Iterator[bytes]:
    """A header then ``rows`` rows of ``row_bytes`` bytes each (key + padding), in ~1 MiB chunks."""
    yield b"id,payload\n"
    pad = "x" * max(row_bytes - 16, 1)
    batch: list[str] = []
    size = 0
    for index in range(rows):
        line = f"{index:014d},{pad}\n"
        batch.append(line)
        size += len(line)
        if size >= 1024 * 1024:
            yield "".join(batch).encode("ascii")
            batch, size = [], 0
    if batch:
        yield "".join(batch).encode("ascii")


def padded_size(rows: int, row_bytes: int) -> int:
    return len(b"id,payload\n") + rows * (16 + max(row_bytes - 16, 1))
