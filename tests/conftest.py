"""Test session set-up shared by every layer.

Airflow reads its configuration at import time, so the environment is fixed here, before any test module
imports airflow: a throw-away AIRFLOW_HOME with a SQLite metadata DB, the project's dags/ and plugins/,
no examples. ``plugins/`` goes on sys.path exactly as Airflow puts it there.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="csv-import-airflow-"))

os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__LOAD_DEFAULT_CONNECTIONS", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}")
# Never reach real AWS from a test: fake credentials everywhere unless a fixture sets an endpoint.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

for path in (PROJECT_ROOT / "plugins", PROJECT_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

pytest_plugins = ["tests.fixtures.local_aws", "tests.fixtures.airflow"]

# In-process moto (mock_aws) and the local endpoint answer ConsumedCapacity alike, as DynamoDB does
# (include/local_aws/dynamodb_consumed_capacity.py): the endpoint patches moto's classes in whichever process runs
# it, so without this a test's figures would depend on whether an endpoint test ran earlier in the session.
from include.local_aws.dynamodb_consumed_capacity import install_consumed_capacity_patch  # noqa: E402

install_consumed_capacity_patch()
