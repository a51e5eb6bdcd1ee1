"""The README stays true to the project: two quick-start commands, every config key, real targets and links,
and every command of its ```bash blocks run by a named test (or a documented exception)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")

# Each command of the README's ```bash blocks (matched by prefix) -> the files that run it, each with the text
# in that file that runs it. A command added to a bash block fails test_every_readme_command_is_run until it
# gets an entry here whose files really contain that text.
RUN_BY: dict[str, list[tuple[str, str]]] = {
    "make demo": [
        (
            "Makefile",
            "demo: $(STAMP)\n\t$(BIN)/python -m include.demo$(if $(EXECUTOR), --executor $(EXECUTOR))\n",
        ),
        ("tests/demo/test_make_demo.py", '[sys.executable, "-m", "include.demo"'),
    ],
    "make demo EXECUTOR=celery": [
        ("Makefile", "$(BIN)/python -m include.demo$(if $(EXECUTOR), --executor $(EXECUTOR))"),
        ("tests/celery/test_demo_on_celery.py", '"--executor", "celery"'),
    ],
    "make test": [(".ci/run", "\nmake test\n")],  # CI's entry point runs exactly this, then make test-load
    "make config": [
        ("Makefile", "config: $(STAMP)\n\t@PYTHONPATH=plugins $(BIN)/python -m batch_import.config\n"),
        ("tests/readme/test_make_targets.py", 'make_command("config")'),
    ],
    "make push-image": [
        ("Makefile", "push-image: $(STAMP)"),
        ("tests/deploy/test_push_image.py", 'run_make("push-image", "TAG=v1")'),
    ],
    "sudo apt-get install postgresql redis-server": [(".ci/run", "postgresql redis-server")],
    "sudo apt-get install chromium chromium-driver docker-compose": [
        (".ci/run", "apt-get install -y -qq chromium chromium-driver docker-compose"),
    ],
}
# Commands no test runs here, with the file that checks them instead and the text showing how.
NOT_RUN: dict[str, tuple[str, str]] = {
    # no Docker engine here: the compose file is parsed and checked (also by Compose's own `config`), the stack
    # is not started
    "docker compose up --build": ("tests/compose/test_docker_compose.py", '"config"'),
}


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
    from batch_import.config import FEED_KEYS

    table = _section("Configuration")
    missing = [
        f"{section}.{key}"
        for section, values in config.items()
        if section != "feeds"
        for key in values
        if f"`{section}.{key}`" not in table or f"`CSV_IMPORT__{section.upper()}__{key.upper()}`" not in table
    ]
    # A feed's own keys (those the shipped feeds use and every key a feed may have), documented once.
    feed_keys = set(FEED_KEYS) | {key for feed in config["feeds"] for key in feed}
    shared = {key for section in ("schedule", "import") for key in config[section]}
    missing += [
        f"feeds.{key}"
        for key in sorted(feed_keys - shared - {"name"})
        if f"| `{key}` |" not in table or f"`CSV_IMPORT__FEEDS__<NAME>__{key.upper()}`" not in table
    ]
    assert "| `name` |" in table, "README's feed table lacks name"
    assert missing == [], f"README's Configuration lacks {missing}"


# make target -> the file that runs it (tests/readme/test_make_targets.py runs those no other test does)
MAKE_TARGETS_RUN_BY = {
    "demo": "tests/demo/test_make_demo.py",
    "test": ".ci/run",
    "test-load": ".ci/run",
    "lint": "Makefile",  # `test: $(STAMP) lint`: every `make test` runs it
    "push-image": "tests/deploy/test_push_image.py",
    "format": "tests/readme/test_make_targets.py",
    "test-fast": "tests/readme/test_make_targets.py",
    "local-aws": "tests/readme/test_make_targets.py",
    "bench": "tests/readme/test_make_targets.py",
    "config": "tests/readme/test_make_targets.py",
}


def _make_targets_named(readme: str) -> set[str]:
    """Every ``make <target>`` in the README: in backticks (with or without arguments) or at a line's start."""
    return set(re.findall(r"`make ([a-z-]+)", readme)) | set(re.findall(r"(?m)^\s*make ([a-z-]+)", readme))


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"(?m)^([a-z][a-z-]*):", makefile))
    named = _make_targets_named(README)
    assert named, "README names no make target"
    assert named <= targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_make_lint_is_part_of_make_test() -> None:
    assert re.search(r"(?m)^test: .*\blint\b", (PROJECT_ROOT / "Makefile").read_text())


def test_every_make_target_the_readme_names_is_run_somewhere() -> None:
    named = _make_targets_named(README)
    assert named - set(MAKE_TARGETS_RUN_BY) == set(), "README names make targets no test runs: add them"
    for target, runner in MAKE_TARGETS_RUN_BY.items():
        text = (PROJECT_ROOT / runner).read_text(encoding="utf-8")
        assert target in text, f"{runner} does not mention {target}"


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


def test_performance_summary_is_derived_from_the_benchmark_report() -> None:
    from include.bench.readme_summary import readme_block, summary_from_benchmarks

    report = (PROJECT_ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "Generated by `make bench`" in report
    assert readme_block(README) == summary_from_benchmarks(report), (
        "README's performance summary differs from docs/benchmarks.md: run `make bench` (it rewrites both)"
    )


def _bash_commands(readme: str) -> list[str]:
    """Every command line of the ```bash blocks, without trailing comments."""
    commands = []
    for block in re.findall(r"(?ms)^[ \t]*```bash\n(.*?)^[ \t]*```", readme):
        for line in block.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _entry_for(command: str) -> str | None:
    matches = [p for p in (*RUN_BY, *NOT_RUN) if command == p or command.startswith(p + " ")]
    return max(matches, key=len) if matches else None


def _unaccounted(readme: str) -> list[str]:
    return [command for command in _bash_commands(readme) if _entry_for(command) is None]


def test_every_readme_command_is_run_by_a_test_or_a_documented_exception() -> None:
    commands = _bash_commands(README)
    assert "make push-image TAG=v1" in commands, commands
    assert _unaccounted(README) == [], "README commands no test runs: add a test and an entry in RUN_BY"
    missing = [
        f"{path} lacks {text!r} (for `{prefix}`)"
        for prefix, evidence in RUN_BY.items()
        for path, text in evidence
        if text not in (PROJECT_ROOT / path).read_text(encoding="utf-8")
    ]
    missing += [
        f"{path} lacks {text!r} (for `{prefix}`)"
        for prefix, (path, text) in NOT_RUN.items()
        if text not in (PROJECT_ROOT / path).read_text(encoding="utf-8")
    ]
    assert missing == []
    used = {_entry_for(command) for command in commands}
    assert set(RUN_BY) | set(NOT_RUN) <= used, "entries for commands the README no longer has"


def test_a_new_readme_command_without_a_test_is_caught() -> None:
    added = README + "\n```bash\naws s3 ls   # list buckets\nmake demos\n```\n"
    assert _unaccounted(added) == ["aws s3 ls", "make demos"]
