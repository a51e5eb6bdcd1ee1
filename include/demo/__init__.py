"""``make demo`` (``python -m include.demo``): the whole pipeline on this machine in a few minutes.

Starts the local AWS endpoint and ``airflow standalone``, provisions, lands a generated week of CSV files,
backfills the import DAG over that week through Airflow's own backfill, prints a summary per file, then keeps
everything running for the UI until Ctrl-C (``CI=true``: exits after the summary, 0 only if every file came
out as expected).

``plugins/`` goes on ``sys.path`` here, as Airflow puts it there, so the demo reads the same config
(:mod:`batch_import.config`) and the same S3 layout (:mod:`batch_import.files`) as the DAGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT / "plugins"))

PROVISION_DAG_ID = "provision_batch_environment"
IMPORT_DAG_ID = "import_csv_to_dynamodb"
