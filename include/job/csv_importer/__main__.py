"""``python -m csv_importer`` runs the same entry point as the ``csv-importer`` command."""

from __future__ import annotations

from csv_importer.cli import main

raise SystemExit(main())
