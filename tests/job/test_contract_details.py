"""Details of the job's contract (issue 2) an audit found untested: DynamoDB's number syntax, N keys, every
manifest field, botocore's retry mode, the job's dependencies (boto3 only, never Airflow) and its image."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from csv_importer.cli import DEFAULT_MAX_ATTEMPTS, make_clients, retry_config
from csv_importer.exit_codes import ExitCode, UsageProblem
from csv_importer.import_id import derive_import_id
from csv_importer.rows import parse_number
from csv_importer.settings import ImportSettings
from tests.job.conftest import BUCKET, TABLE, create_table, csv_text, put_object, rejected_rows, scan_items

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JOB_DIR = PROJECT_ROOT / "include" / "job"
PACKAGE_DIR = JOB_DIR / "csv_importer"
COMMAND = str(Path(sys.executable).with_name("csv-importer"))
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without AWS or job settings, plus ``extra``."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "bucket", "table", "key", "PYTHON"))
    }
    environment.update(extra)
    return environment


# --- numbers: DynamoDB's syntax, precision and range; nothing rounded, nothing non-ASCII ---------------------

DYNAMODB_REFUSES = {
    "underscores": "1_000",
    "arabic-indic-digits": "\u0661\u0662",
    "mixed-digits": "12\u0663",
    "fullwidth-digits": "\uff11\uff12",
    "inner-newline-padding": "12\n",
    "no-break-space-padding": "\u00a012",
    "nan": "NaN",
    "infinity": "-Infinity",
    "inf": "inf",
    "hex": "0x10",
    "bare-exponent": "e5",
    "bare-dot": ".",
    "huge-exponent": "1e999999999999",
    "huge-exponent-beyond-decimal": "1e" + "9" * 30,
    "tiny-exponent": "1e-999999999999",
    "39-digits": "9" * 39,
    "digit-beyond-rounding": "1." + "0" * 250 + "1",
    "over-max": "1e126",
    "under-min": "1e-131",
}


@pytest.mark.parametrize("text", DYNAMODB_REFUSES.values(), ids=DYNAMODB_REFUSES.keys())
def test_numbers_outside_dynamodb_syntax_precision_or_range_are_refused(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"is not a (finite )?number|outside DynamoDB's range|significant digits"
    ):
        parse_number(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (" 12\t", "12"),
        ("+7", "7"),
        (".5", "0.5"),
        ("5.", "5"),
        ("-0", "0"),
        ("007", "7"),
        ("1." + "0" * 250, "1"),  # trailing zeros are not significant digits
        ("9" * 38, "9" * 38),
        ("9.9e125", "9.9E+125"),
        ("100e-132", "1E-130"),
    ],
)
def test_numbers_dynamodb_stores_are_canonical(text: str, canonical: str) -> None:
    assert parse_number(text)[0] == canonical


def test_a_long_cell_is_cut_short_in_the_reason() -> None:
    with pytest.raises(ValueError, match=r"\(100000 characters\)") as refused:
        parse_number("x" * 100_000)
    assert len(str(refused.value)) < 200


def test_n_attributes_dynamodb_would_not_take_are_rejected_and_the_rest_imported(s3, dynamodb, table, run):
    bad = {
        "u": "1_000",
        "a": "\u0661\u0662",
        "n": "NaN",
        "i": "Infinity",
        "h": "1e999999999999",
        "r": "1e-999",
    }
    rows = [["id", "n"], ["ok-1", "12"], ["ok-2", " 3.50 "], *([f"bad-{k}", v] for k, v in bad.items())]
    put_object(s3, "numbers.csv", csv_text(rows))
    manifest = run("numbers.csv", column_types={"n": "N"}, max_reject_ratio=1.0)

    assert {i["id"]["S"]: i["n"]["N"] for i in scan_items(dynamodb)} == {"ok-1": "12", "ok-2": "3.5"}
    rejected = {r["raw_row"].split(",")[0]: r["reason"] for r in rejected_rows(s3, manifest)}
    assert set(rejected) == {f"bad-{k}" for k in bad}
    for name, text in bad.items():
        assert rejected[f"bad-{name}"].startswith("column 'n': ")
        assert repr(text) in rejected[f"bad-{name}"]
    assert (manifest.status, manifest.rows_read, manifest.rows_imported, manifest.rows_rejected) == (
        "succeeded", len(rows) - 1, 2, len(bad),
    )  # fmt: skip


def test_a_non_numeric_n_key_is_rejected_with_its_reason_and_the_other_rows_imported(s3, dynamodb, run):
    create_table(dynamodb, "numbered", pk="id", pk_type="N")
    rows = [["id", "name"], ["1", "one"], ["abc", "letters"], ["1_000", "underscores"], ["2", "two"]]
    rows += [["\u0661\u0662", "arabic-indic"], ["NaN", "nan"], ["1.0", "one again"]]
    put_object(s3, "keys.csv", csv_text(rows))
    manifest = run("keys.csv", table="numbered", max_reject_ratio=1.0)

    items = {item["id"]["N"]: item["name"]["S"] for item in scan_items(dynamodb, "numbered")}
    assert items == {"1": "one again", "2": "two"}  # "1.0" is the same key as "1": the last row wins
    reasons = {r["raw_row"]: r["reason"] for r in rejected_rows(s3, manifest)}
    assert reasons["abc,letters"].startswith("key 'id': 'abc' is not a number")
    assert reasons["1_000,underscores"].startswith("key 'id': '1_000' is not a number")
    assert reasons["\u0661\u0662,arabic-indic"].startswith("key 'id': '\u0661\u0662' is not a number")
    assert reasons["NaN,nan"].startswith("key 'id': 'NaN' is not a finite number")
    assert (manifest.rows_read, manifest.rows_imported, manifest.rows_rejected, manifest.duplicate_keys) == (
        len(rows) - 1, 3, 4, 1,
    )  # fmt: skip


# --- the manifest: every field the issue lists, from a real import ------------------------------------------


LISTED_FIELDS = (
    "import_id", "bucket", "key", "etag", "shard_index", "shard_count", "rows_read", "rows_imported",
    "rows_rejected", "duplicate_keys", "started_at", "finished_at", "status",
)  # fmt: skip


def test_each_shard_manifest_has_every_listed_field_with_real_values(s3, table, run):
    rows = [["id", "n"], *([f"k{i}", str(i)] for i in range(40)), ["k3", "33"], ["bad", "x"]]
    put_object(s3, "incoming/m.csv", csv_text(rows))
    etag = s3.head_object(Bucket=BUCKET, Key="incoming/m.csv")["ETag"]
    before = datetime.now(UTC)
    for shard in range(2):
        run("incoming/m.csv", column_types={"n": "N"}, max_reject_ratio=0.5, shard_count=2, shard_index=shard)
    after = datetime.now(UTC)

    import_id = derive_import_id(BUCKET, "incoming/m.csv", etag)
    manifests = []
    for shard in range(2):
        body = s3.get_object(Bucket=BUCKET, Key=f"manifests/{import_id}/shard-{shard}-of-2.json")[
            "Body"
        ].read()
        manifest = json.loads(body)
        manifests.append(manifest)
        assert {
            field: manifest[field]
            for field in ("import_id", "bucket", "key", "etag", "shard_index", "shard_count", "status")
        } == {
            "import_id": import_id,
            "bucket": BUCKET,
            "key": "incoming/m.csv",
            "etag": etag,
            "shard_index": shard,
            "shard_count": 2,
            "status": "succeeded",
        }
        assert set(LISTED_FIELDS) <= set(manifest)
        counts = [manifest[f] for f in ("rows_read", "rows_imported", "rows_rejected", "duplicate_keys")]
        assert all(type(count) is int for count in counts)
        assert min(counts) >= 0
        assert manifest["rows_read"] == manifest["rows_imported"] + manifest["rows_rejected"]
        assert ISO_UTC.fullmatch(manifest["started_at"])
        assert ISO_UTC.fullmatch(manifest["finished_at"])
        started, finished = (
            datetime.fromisoformat(manifest[f].replace("Z", "+00:00")) for f in ("started_at", "finished_at")
        )
        # The manifest keeps milliseconds: compare at that resolution.
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= started <= finished <= after

    def total(field: str) -> int:
        return sum(manifest[field] for manifest in manifests)

    data_rows = len(rows) - 1
    assert (total("rows_read"), total("rows_rejected"), total("duplicate_keys")) == (data_rows, 1, 1)
    assert total("rows_imported") == data_rows - 1


# --- botocore's retry mode: standard or adaptive, never legacy ----------------------------------------------


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return monkeypatch


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        pytest.param({}, {"mode": "standard", "total_max_attempts": DEFAULT_MAX_ATTEMPTS}, id="default"),
        pytest.param(
            {"AWS_RETRY_MODE": "adaptive"},
            {"mode": "adaptive", "total_max_attempts": DEFAULT_MAX_ATTEMPTS},
            id="adaptive",
        ),
        pytest.param(
            {"AWS_RETRY_MODE": "legacy"},
            {"mode": "standard", "total_max_attempts": DEFAULT_MAX_ATTEMPTS},
            id="legacy-ignored",
        ),
        pytest.param({"AWS_MAX_ATTEMPTS": "3"}, {"mode": "standard", "total_max_attempts": 3}, id="attempts"),
    ],
)
def test_the_clients_retry_in_standard_or_adaptive_mode(aws_environment, environment, expected):
    for name, value in environment.items():
        aws_environment.setenv(name, value)
    s3, dynamodb = make_clients(ImportSettings(bucket="b", key="k.csv", table="t"))
    assert s3.meta.config.retries == expected
    assert dynamodb.meta.config.retries == expected


def test_the_aws_config_file_cannot_switch_to_legacy(aws_environment, tmp_path: Path):
    config = tmp_path / "config"
    config.write_text("[default]\nretry_mode = legacy\nmax_attempts = 2\n")
    aws_environment.setenv("AWS_CONFIG_FILE", str(config))
    _, dynamodb = make_clients(ImportSettings(bucket="b", key="k.csv", table="t"))
    assert dynamodb.meta.config.retries == {"mode": "standard", "total_max_attempts": DEFAULT_MAX_ATTEMPTS}


def test_an_ignored_retry_mode_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="csv_importer"):
        assert retry_config({"AWS_RETRY_MODE": "legacy"})["mode"] == "standard"
    assert "AWS_RETRY_MODE=legacy ignored" in caplog.text


@pytest.mark.parametrize("attempts", ["abc", "0", "-1"])
def test_a_malformed_max_attempts_is_a_usage_error(attempts: str) -> None:
    with pytest.raises(UsageProblem, match="AWS_MAX_ATTEMPTS must be a positive integer"):
        retry_config({"AWS_MAX_ATTEMPTS": attempts})


def test_a_malformed_max_attempts_exits_2_through_the_command() -> None:
    environment = clean_environment(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_MAX_ATTEMPTS="many",
    )
    result = subprocess.run(
        [COMMAND, "--bucket", BUCKET, "--key", "a.csv", "--table", TABLE],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "csv-importer: USAGE: AWS_MAX_ATTEMPTS must be a positive integer, got 'many' (a retry cannot fix this)"
    )


# --- dependencies: boto3 only, never Airflow ----------------------------------------------------------------

IMPORT_EVERYTHING_AND_ASK_FOR_HELP = """
import importlib, json, pkgutil, sys
import csv_importer
modules = [m.name for m in pkgutil.walk_packages(csv_importer.__path__, "csv_importer.")]
for name in modules:
    if name != "csv_importer.__main__":  # runs the command on import; the console command below covers it
        importlib.import_module(name)
from csv_importer.cli import main
try:
    main(["--help"])
except SystemExit as stop:
    assert stop.code == 0, stop.code
print(json.dumps({"walked": modules, "loaded": sorted(sys.modules)}))
"""


def _airflow(modules: list[str]) -> list[str]:
    return [name for name in modules if name == "airflow" or name.startswith("airflow.")]


def test_importing_every_module_and_running_help_never_imports_airflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING_AND_ASK_FOR_HELP],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    on_disk = {f"csv_importer.{path.stem}" for path in PACKAGE_DIR.glob("*.py") if path.stem != "__init__"}
    assert set(report["walked"]) == on_disk
    assert on_disk - {"csv_importer.__main__"} <= set(report["loaded"])
    assert metadata.version("apache-airflow"), "Airflow is installed here, so an import of it would succeed"
    assert _airflow(report["loaded"]) == []


def test_the_console_command_never_imports_airflow() -> None:
    # PYTHONPROFILEIMPORTTIME makes the interpreter list every module it imports, the console script's included.
    result = subprocess.run(
        [COMMAND, "--help"],
        env=clean_environment(PYTHONPROFILEIMPORTTIME="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "import time:" in line
    ]
    assert "csv_importer.writer" in imported
    assert "boto3" in imported
    assert _airflow(imported) == []


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top-level package) of every import that runs: all but those under ``if TYPE_CHECKING:``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "csv_importer" if node.level else (node.module or "").split(".")[0]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_the_package_imports_only_the_standard_library_boto3_and_botocore() -> None:
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore", "csv_importer"}
    sources = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(sources) > 5
    imports = {path.name: _runtime_imports(ast.parse(path.read_text(), str(path))) for path in sources}
    assert any(package == "botocore" for found in imports.values() for _, package in found)
    outside = [
        f"{name}:{line} imports {package}"
        for name, found in imports.items()
        for line, package in found
        if package not in allowed
    ]
    assert outside == []


def test_the_scan_sees_what_it_must_refuse() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_boto3_s3\n"
        "def f():\n    import urllib3.exceptions\n    from airflow.models import DAG\nfrom . import rows\n"
    )
    assert [package for _, package in _runtime_imports(tree)] == [
        "typing",
        "urllib3",
        "airflow",
        "csv_importer",
    ]


def test_the_package_declares_boto3_as_its_only_dependency() -> None:
    project = tomllib.loads((JOB_DIR / "pyproject.toml").read_text())["project"]
    assert [Requirement(text).name for text in project["dependencies"]] == ["boto3"]
    assert not project.get("optional-dependencies")
    installed = metadata.distribution("csv-importer").requires or []
    assert [Requirement(text).name for text in installed] == ["boto3"]


# --- the image: slim Python, non-root (tests/security), csv-importer as the command, the tested pins -------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (JOB_DIR / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
        for line in (raw.strip() for raw in logical.splitlines())
        if line and not line.startswith("#")
    ]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, separator, version = line.partition("==")
        assert separator, f"{path.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def _runtime_closure(distribution: str) -> dict[str, str]:
    """Every distribution ``distribution`` needs at run time (no extras), with the installed version."""
    closure: dict[str, str] = {}
    todo = [canonicalize_name(distribution)]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        found = metadata.distribution(name)
        closure[name] = found.version
        for text in found.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    del closure[canonicalize_name(distribution)]
    return closure


def test_the_job_image_is_slim_python_and_runs_csv_importer() -> None:
    instructions = _dockerfile_instructions()
    bases = [argument for name, argument in instructions if name == "FROM"]
    assert len(bases) == 1, bases
    base = re.fullmatch(r"python:(\d+)\.(\d+)(?:\.\d+)?-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?", bases[0])
    assert base, f"the job image's base {bases[0]!r} is not a slim Python"
    requires = tomllib.loads((JOB_DIR / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert minimum
    assert tuple(map(int, base.groups())) >= tuple(map(int, minimum.groups()))
    assert [name for name, _ in instructions if name == "ENTRYPOINT"] == []
    commands = [argument for name, argument in instructions if name == "CMD"]
    assert commands
    assert json.loads(commands[-1]) == ["csv-importer"]
    assert metadata.distribution("csv-importer").entry_points.select(
        group="console_scripts", name="csv-importer"
    )


def test_the_job_image_installs_with_the_pins_the_project_tests() -> None:
    installs = [
        argument
        for name, argument in _dockerfile_instructions()
        if name == "RUN" and "pip install" in argument
    ]
    assert len(installs) == 1, installs
    assert re.search(r"pip install (--constraint|-c) constraints\.txt \.(\s|$)", installs[0]), installs[0]
    assert "==" not in installs[0], "pins belong in include/job/constraints.txt, not inline"
    copied = " ".join(argument for name, argument in _dockerfile_instructions() if name == "COPY")
    assert "constraints.txt" in copied.split()

    image_pins = _pins(JOB_DIR / "constraints.txt")
    project_pins = _pins(PROJECT_ROOT / "requirements.txt")
    assert {name: project_pins.get(name) for name in image_pins} == image_pins
    # The whole runtime closure is pinned, so nothing in the image floats; and it is what this suite runs.
    assert image_pins == _runtime_closure("csv-importer")
