"""Fails loudly, naming what changed, when the moto internals include.local_aws patches move (moto is pinned)."""

from __future__ import annotations

import pytest
from moto.batch import models as batch_models

from include.local_aws.moto_adapter import moto_internals_problems


def test_moto_internals_the_adapter_relies_on_are_unchanged() -> None:
    problems = moto_internals_problems()

    assert problems == [], "moto changed under include/local_aws/moto_adapter.py:\n" + "\n".join(problems)


def test_a_moved_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_job_by_id(self: object, job_id: str) -> None: ...

    def compute_environment_init(self: object, name: str) -> None:
        self.name = name

    monkeypatch.delattr(batch_models.JobDefinition, "_get_resource_requirement")
    monkeypatch.setattr(batch_models.BatchBackend, "get_job_by_id", get_job_by_id)
    monkeypatch.setattr(batch_models.ComputeEnvironment, "__init__", compute_environment_init)

    problems = "\n".join(moto_internals_problems())

    assert "moto.batch.models.JobDefinition._get_resource_requirement no longer exists" in problems
    assert "moto.batch.models.BatchBackend.get_job_by_id parameters changed" in problems
    assert (
        "moto.batch.models.ComputeEnvironment.__init__ no longer assigns self.compute_resources" in problems
    )
