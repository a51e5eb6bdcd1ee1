"""What the DAGs use: config, idempotent provisioning, thin operators, verification.

Airflow puts ``plugins/`` itself on ``sys.path``, so this package is imported as ``batch_import``.
"""

from __future__ import annotations
