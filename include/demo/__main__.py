"""``python -m include.demo``: see :mod:`include.demo`."""

from __future__ import annotations

import sys

from include.demo.run import main

if __name__ == "__main__":
    sys.exit(main())
