"""Fixtures shared by the fast plugin tests."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws


@pytest.fixture(scope="session")
def shared_botocore_loader() -> Iterator[None]:
    """One botocore data loader for every boto3 session of the tests that use it.

    Each Airflow AWS hook builds its own boto3 session, and each new session parses the service models
    (JSON) again: about 0.3 s per hook. Sharing botocore's loader (and so its cache of parsed models)
    changes nothing else: credentials, region and endpoint stay per session.
    """
    shared = functools.cache(botocore.loaders.create_loader)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 client with the landing bucket (moto in-process for the whole test)."""
    from tests.plugins.test_hooks import REGION
    from tests.plugins.test_import_files import BUCKET

    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client
