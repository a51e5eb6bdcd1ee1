"""Deployment helpers for real AWS: ``make push-image`` (:mod:`include.deploy.push_image`).

``plugins/`` goes on ``sys.path`` here, as Airflow puts it there, so the helpers read the same pipeline config
(:mod:`batch_import.config`) as the DAGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
