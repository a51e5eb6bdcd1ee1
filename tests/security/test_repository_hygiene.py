"""No secret, account id or personal address in the repository; the job image runs as a non-root user."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(aws_secret_access_key|secret_access_key|SecretAccessKey)\W{1,4}[\"']?([A-Za-z0-9/+=]{40})\b"
)
ACCOUNT_IN_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:(\d{12}):")
ACCOUNT_IN_ECR = re.compile(r"\b(\d{12})\.dkr\.ecr\.")
# Documentation placeholders (AWS docs and moto's default account), never a real account.
PLACEHOLDER_ACCOUNTS = ("000000000000", "123456789012")
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
ALLOWED_EMAIL_DOMAINS = ("example.com", "example.org", "users.noreply.github.com")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    files = []
    for name in out.decode().split("\0"):
        path = PROJECT_ROOT / name
        if not name or not path.is_file() or path.suffix in (".gz", ".png", ".jpg"):
            continue
        files.append(path)
    return files


def _scan(pattern: re.Pattern[str]) -> list[str]:
    hits = []
    this_file = Path(__file__).resolve()
    for path in _tracked_text_files():
        if path.resolve() == this_file:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in pattern.finditer(line):
                if match.groups() and match.group(1) in PLACEHOLDER_ACCOUNTS:
                    continue
                hits.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {match.group(0)}")
    return hits


def test_repository_is_scanned() -> None:
    names = {p.relative_to(PROJECT_ROOT).as_posix() for p in _tracked_text_files()}
    assert "README.md" in names or "Makefile" in names


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(ACCESS_KEY_ID, id="access-key-id"),
        pytest.param(SECRET_ASSIGNMENT, id="secret-access-key"),
        pytest.param(ACCOUNT_IN_ARN, id="account-id-in-arn"),
        pytest.param(ACCOUNT_IN_ECR, id="account-id-in-ecr-uri"),
    ],
)
def test_no_credentials_or_account_ids(pattern: re.Pattern[str]) -> None:
    assert _scan(pattern) == []


def test_no_personal_email_addresses() -> None:
    hits = [hit for hit in _scan(EMAIL) if not hit.rstrip().endswith(ALLOWED_EMAIL_DOMAINS)]
    assert hits == []


def test_scanner_catches_what_it_claims(tmp_path: Path) -> None:
    sample = "arn:aws:iam::210987654321:role/x AKIA" + "ABCDEFGHIJKLMNOP" + " 210987654321.dkr.ecr.x"
    assert ACCOUNT_IN_ARN.search(sample)
    assert ACCESS_KEY_ID.search(sample)
    assert ACCOUNT_IN_ECR.search(sample)


def test_job_image_runs_as_non_root_user() -> None:
    dockerfile = (PROJECT_ROOT / "include" / "job" / "Dockerfile").read_text()
    users = re.findall(r"(?im)^\s*USER\s+(\S+)", dockerfile)
    assert users, "include/job/Dockerfile sets no USER: the job would run as root"
    assert users[-1] not in ("root", "0", "0:0"), f"the job image's final USER is {users[-1]}"
