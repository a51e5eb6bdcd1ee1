"""``make demo`` (``python -m include.demo``): the whole pipeline on this machine in a few minutes.

Starts the local AWS endpoint and ``airflow standalone``, provisions, lands a generated week of CSV files,
backfills the import DAG over that week through Airflow's own backfill, prints a summary per file, then keeps
everything running for the UI until Ctrl-C (``CI=true``: exits after the summary, 0 only if every file came
out as expected).

``plugins/`` is on ``sys.path`` (see :mod:`include`), as Airflow puts it there, so the demo reads the same config
(:mod:`batch_import.config`) and the same S3 layout (:mod:`batch_import.files`) as the DAGs.
"""

from __future__ import annotations

from include import PROJECT_ROOT as PROJECT_ROOT

PROVISION_DAG_ID = "provision_batch_environment"
IMPORT_DAG_ID = "import_csv_to_dynamodb"
