"""evaluateOnExit matching as AWS documents it: every given condition must match, first rule wins, no match retries."""

from __future__ import annotations

import pytest

from include.local_aws.job_runtime import CONTAINER_EXITED, TASK_FAILED_TO_START, AttemptOutcome, retry_action

EXITED_3 = AttemptOutcome(3, CONTAINER_EXITED)
CANNOT_START = AttemptOutcome(
    None, TASK_FAILED_TO_START, "CannotStartContainerError: 'csv-importer': not found"
)


@pytest.mark.parametrize(
    ("rules", "outcome", "action"),
    [
        pytest.param([], EXITED_3, "RETRY", id="no-rules-retry"),
        pytest.param([{"onExitCode": "4", "action": "EXIT"}], EXITED_3, "RETRY", id="no-match-retry"),
        pytest.param([{"onExitCode": "3", "action": "exit"}], EXITED_3, "EXIT", id="case-insensitive-action"),
        pytest.param(
            [{"onExitCode": "3*", "action": "EXIT"}],
            AttemptOutcome(37, CONTAINER_EXITED),
            "EXIT",
            id="prefix",
        ),
        pytest.param(
            [{"onExitCode": "3", "onStatusReason": "Host EC2*", "action": "EXIT"}],
            EXITED_3,
            "RETRY",
            id="all-must-match",
        ),
        pytest.param(
            [{"onExitCode": "*", "action": "RETRY"}, {"onExitCode": "3", "action": "EXIT"}],
            EXITED_3,
            "RETRY",
            id="first-match-wins",
        ),
        pytest.param(
            [{"onReason": "CannotStartContainerError*", "action": "EXIT"}], CANNOT_START, "EXIT", id="reason"
        ),
        pytest.param(
            [{"onExitCode": "*", "action": "EXIT"}], CANNOT_START, "RETRY", id="no-exit-code-matches-nothing"
        ),
        pytest.param(
            [{"onExitCode": "0", "action": "EXIT"}], CANNOT_START, "RETRY", id="no-exit-code-is-not-zero"
        ),
    ],
)
def test_retry_action(rules: list[dict[str, str]], outcome: AttemptOutcome, action: str) -> None:
    assert retry_action(rules, outcome) == action
