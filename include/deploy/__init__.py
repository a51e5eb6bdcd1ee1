"""Deployment helpers for real AWS: ``make push-image`` (:mod:`include.deploy.push_image`).

``plugins/`` is on ``sys.path`` (see :mod:`include`), as Airflow puts it there, so the helpers read the same pipeline config
(:mod:`batch_import.config`) as the DAGs.
"""

from __future__ import annotations

from include import PROJECT_ROOT as PROJECT_ROOT
