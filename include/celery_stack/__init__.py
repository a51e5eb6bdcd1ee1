"""The production engine (CeleryExecutor on Postgres, Redis as the broker) as plain processes on this machine.

:mod:`.settings` reads the engine's Airflow settings (shared with docker-compose.yaml), :mod:`.services` runs
Postgres and Redis from the OS packages, :mod:`.stack` runs the Airflow components (``make demo EXECUTOR=celery``,
``tests/celery``), :mod:`.hostname` names each worker in the task instances it runs.
"""

from __future__ import annotations
