"""The two pin files: requirements.txt is the runtime (what the Airflow image installs), requirements-dev.txt adds
the test and development tools. Both pin exactly, neither repeats the other, the runtime file is exactly the
runtime closure of its top-level packages, and together they are exactly this environment."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNTIME = PROJECT_ROOT / "requirements.txt"
DEV = PROJECT_ROOT / "requirements-dev.txt"
# The runtime's top level, with the extras the stack uses (celery's Redis transport).
RUNTIME_TOP_LEVEL = (
    "apache-airflow",
    "apache-airflow-providers-amazon[aiobotocore]",
    "apache-airflow-providers-common-messaging",
    "apache-airflow-providers-standard",
    "apache-airflow-providers-celery[redis]",
    "psycopg2-binary",
    "asyncpg",
    "boto3",
    "csv-importer",
)
DEV_TOOLS = ("moto", "pytest", "pytest-timeout", "hypothesis", "ruff", "selenium")
# Installed by venv itself or editable from this repository (`-e ./include/job`), so not pinned by name.
NOT_PINNED = frozenset({"pip", "setuptools", "wheel", "csv-importer"})


def _pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """name -> version of every exact pin, and the option lines (``-e``, ``-r``); anything else fails."""
    pins: dict[str, str] = {}
    options: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        name, separator, version = line.partition("==")
        assert separator, f"{path.name}: {line!r} is not an exact pin"
        assert re.fullmatch(r"[\w.+-]+", version.strip()), f"{path.name}: {line!r} is not an exact pin"
        key = canonicalize_name(name.split("[")[0])
        assert key not in pins, f"{path.name} pins {key} twice"
        pins[key] = version.strip()
    return pins, options


def _closure(top_level: tuple[str, ...]) -> set[str]:
    """Every installed distribution the given requirements need at run time, extras followed."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in map(Requirement, top_level)]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in seen}


def test_both_files_pin_exactly_and_dev_extends_runtime_without_repeating_it() -> None:
    runtime, runtime_options = _pins(RUNTIME)
    dev, dev_options = _pins(DEV)
    assert runtime_options == ["-e ./include/job"]
    assert dev_options == ["-r requirements.txt"]
    assert set(runtime) & set(dev) == set(), "a package is pinned in both files"


def test_the_runtime_file_is_exactly_the_runtime_closure_and_has_no_test_tools() -> None:
    runtime, _ = _pins(RUNTIME)
    closure = _closure(RUNTIME_TOP_LEVEL) - NOT_PINNED
    assert set(runtime) - closure == set(), "requirements.txt pins packages the runtime does not need"
    assert closure - set(runtime) == set(), "the runtime needs packages requirements.txt does not pin"
    assert [tool for tool in DEV_TOOLS if tool in runtime] == []
    dev, _ = _pins(DEV)
    assert set(DEV_TOOLS) <= set(dev)


def test_the_two_files_are_exactly_this_environment() -> None:
    pins = _pins(RUNTIME)[0] | _pins(DEV)[0]
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if canonicalize_name(d.metadata["Name"]) not in NOT_PINNED
    }
    assert {name: pins.get(name) for name in installed} == installed, "installed but not pinned (or not so)"
    assert set(pins) - set(installed) == set(), "pinned but not installed"


def test_the_airflow_image_installs_the_runtime_file_only() -> None:
    dockerfile = (PROJECT_ROOT / "docker" / "airflow" / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    installs = [line for line in instructions if line.startswith("RUN pip install")]
    assert len(installs) == 1, installs
    assert "-r requirements.txt" in installs[0]
    assert [line for line in instructions if "requirements-dev" in line] == []


def test_make_installs_both_files_and_rebuilds_when_either_changes() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"(?m)^\$\(STAMP\):(.*)$", makefile)
    assert stamp, "the Makefile has no venv stamp rule"
    assert {"requirements.txt", "requirements-dev.txt"} <= set(stamp.group(1).split())
    assert "pip install --quiet -r requirements-dev.txt" in makefile
