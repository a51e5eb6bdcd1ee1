"""Benchmarks run by ``make bench`` (``python -m include.bench``); they write docs/benchmarks.md.

One module per section; each exposes ``TITLE`` and ``run(context) -> str`` (Markdown) and is listed in
:data:`include.bench.__main__.SECTIONS`. Add a section by adding a module and one registry line.
"""

from __future__ import annotations
