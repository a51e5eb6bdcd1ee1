"""The README's performance summary, derived from docs/benchmarks.md so that it can never drift by hand.

``make bench`` rewrites the block between the README's markers after writing docs/benchmarks.md; a test checks
that the block is what this module derives from the committed docs/benchmarks.md.
"""

from __future__ import annotations

import re
from pathlib import Path

START = "<!-- bench-summary:start (written by make bench from docs/benchmarks.md) -->"
END = "<!-- bench-summary:end -->"


def summary_from_benchmarks(benchmarks_markdown: str) -> str:
    """One bullet per benchmark section: its title, and its goal verdict where the section states one."""
    date = re.search(r"(?m)^- Date: (.+)$", benchmarks_markdown)
    machine = re.search(r"(?m)^- Machine: (.+)$", benchmarks_markdown)
    when = date.group(1) if date else "date unknown"
    where = f"; {machine.group(1)}" if machine else ""
    lines = [f"Figures of the last full `make bench` run ({when}{where}):", ""]
    for section in re.split(r"(?m)^## ", benchmarks_markdown)[1:]:
        title, _, body = section.partition("\n")
        goals = re.findall(r"(?m)^Goal: (.+)$", body)
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        verdict = "; ".join(goals) if goals else "figures only, no goal"
        lines.append(f"- [{title}](docs/benchmarks.md#{anchor}): {verdict}")
    return "\n".join(lines)


def readme_block(readme_text: str) -> str:
    """The text between the README's markers."""
    start, end = readme_text.index(START) + len(START), readme_text.index(END)
    return readme_text[start:end].strip("\n")


def update_readme(readme: Path, benchmarks_markdown: str) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(START) + len(START), text.index(END)
    summary = summary_from_benchmarks(benchmarks_markdown)
    readme.write_text(text[:start] + "\n" + summary + "\n" + text[end:], encoding="utf-8")
