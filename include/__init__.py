"""Everything beside the DAGs and plugins: the job, the local endpoint, the demo, the benchmarks, deployment helpers.

``plugins/`` goes on ``sys.path`` here, as Airflow puts it there, so the demo, the benchmarks and the deployment
helpers read the same pipeline config (:mod:`batch_import.config`) and S3 layout as the DAGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
