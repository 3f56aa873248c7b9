"""CI variant of the world benchmark (issue 9): ``experiments/world_ci.py``'s paired checks over held-out worlds.

1. ``operators``: qdsearch beats MAP-Elites with uniform operator choice at 600 calls on 12
   worlds where 6 of the 11 operators stall;
2. ``archive``: qdsearch beats the archive-free Evol-Instruct pool at 1200 calls on 10
   default worlds.

Each passes when the one-sided 95% t lower bound of the paired mean QD-score difference
is above zero and the mean gain is at least 5% of the other method's mean. Worlds run in
two processes; 74-88 s on 2 cores. What is not checked here (qdsearch vs uniform in
the default world, where the gain is smaller) is measured in ``experiments/results``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import world_ci  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))

# about 150 s: paired statistical checks over held-out worlds; the first test also runs the
# module's fixture, which on a loaded machine can take several times that
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return world_ci.run_checks(processes=2)


@pytest.mark.parametrize("check", world_ci.CHECKS, ids=lambda c: c.name)
def test_qdsearch_beats_the_baseline_over_held_out_worlds(results: pd.DataFrame, check: world_ci.Check) -> None:
    v = world_ci.verdict(results, check)
    assert v.n == len(check.worlds)  # every world ran
    assert v.passed, v.line() + "\n" + results[results["check"] == check.name].to_string(index=False)
