"""``python -m qdsearch.world --port P --seed S``: serve the synthetic world."""

from __future__ import annotations

import sys

from qdsearch.world import main

sys.exit(main())
