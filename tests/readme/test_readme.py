"""The README stays true to the project: two quick-start commands, every config key, real targets and links."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"(?ms)^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_quick_start_is_exactly_make_demo_and_make_test() -> None:
    blocks = re.findall(r"(?ms)^```bash\n(.*?)^```", _section("Quick start"))
    assert blocks, "the Quick start has no command block"
    assert blocks[0].split("\n")[:-1] == ["make demo", "make test"]


def test_every_config_key_and_its_override_is_documented() -> None:
    config = tomllib.loads(
        (PROJECT_ROOT / "include" / "config" / "pipeline.toml").read_text(encoding="utf-8")
    )
    table = _section("Configuration")
    missing = [
        f"{section}.{key}"
        for section, values in config.items()
        for key in values
        if f"`{section}.{key}`" not in table or f"`CSV_IMPORT__{section.upper()}__{key.upper()}`" not in table
    ]
    assert missing == [], f"README's Configuration lacks {missing}"


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"(?m)^([a-z][a-z-]*):", makefile))
    named = set(re.findall(r"`make ([a-z-]+)`", README)) | set(re.findall(r"(?m)^make ([a-z-]+)$", README))
    assert named, "README names no make target"
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_relative_links_and_paths_resolve() -> None:
    broken = []
    for line in README.splitlines():
        if "TODO" in line:
            continue  # a TODO may name a page that does not exist yet
        for target in re.findall(r"\]\(([^)#]+)\)", line):
            if not target.startswith(("http://", "https://")) and not (PROJECT_ROOT / target).exists():
                broken.append(target)
    assert broken == [], f"README links to missing files: {broken}"


def test_every_project_path_in_the_layout_exists() -> None:
    paths = re.findall(r"(?m)^\| `([^`]+)`(?:, `([^`]+)`)? \|", _section("Layout"))
    names = [name for pair in paths for name in pair if name]
    assert names, "README's Layout table is empty"
    assert [name for name in names if not (PROJECT_ROOT / name).exists()] == []
