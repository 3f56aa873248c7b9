"""CI variant of the world benchmark (issue 9): qdsearch against the archive-free baseline, paired over worlds.

Each repeat serves a synthetic world (``WorldConfig(seed=s)``, defaults otherwise: the
deceptive poetry region is on), judges the example seeds once (a shared seed phase) and
runs each method from it at the same LLM-call budget. The QD-score on the shared grid is
compared paired by world: the check passes when the one-sided 95% t lower bound of the
mean difference is above zero *and* the mean difference is at least ``MARGIN`` of the
baseline's mean, over ``len(WORLDS)`` held-out worlds, not one lucky run. About 55 s on
2 cores. Eight requests are in flight (one at a time is exactly reproducible but about
5x slower), so runs vary a little; the margin measured is far above that variation.

Not checked here, measured instead: qdsearch vs MAP-Elites with *uniform* operator
choice. With the bandit's rewards scaled by the all-operator mean it is +50.0 +- 16.8 QD
at 1200 calls on worlds 0-9 (10/10 wins, ``experiments/results/world-selection.md``; it
was +15.9 +- 14.9 when rewards were scaled by the largest one seen), but on the held-out
worlds 200-205 it was +19.7 with a one-sided 95% lower bound of -22.8 (world 203: 291 vs
353), so a check of this size would flake; it also takes the test to about 95 s.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "experiments/seeds/example_seeds.jsonl"
WORLDS = tuple(range(200, 206))  # world (and run) seeds; none of them was used to tune or choose anything
BUDGET = 1200  # counted LLM calls per method; below ~900 the comparison does not hold (see the test)
IN_FLIGHT = 8
MARGIN = 0.05  # the mean gain must be at least 5% of the baseline's mean QD-score


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """QD-score at BUDGET calls per world (rows) and method (columns)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import world_curves
    finally:
        sys.path.pop(0)
    from qdsearch.world import WorldConfig

    rows = []
    for seed in WORLDS:
        curve, _, _ = asyncio.run(
            world_curves.run_repeat(
                WorldConfig(seed=seed), ("qdsearch", "evol_instruct"), BUDGET, [BUDGET], str(SEEDS), IN_FLIGHT,
                optimum=False,
            )
        )  # fmt: skip
        for r in curve.itertuples():
            rows.append({"world": seed, "method": r.method, "qd_score": float(r.qd_score)})
    return pd.DataFrame(rows).pivot_table(index="world", columns="method", values="qd_score")


def _check(results: pd.DataFrame, ours: str, other: str) -> None:
    """The one-sided 95% t lower bound of the paired mean difference > 0, and the mean >= MARGIN of the other."""
    d = (results[ours] - results[other]).to_numpy()
    mean, base = float(d.mean()), float(results[other].mean())
    lower = float(mean - stats.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    msg = f"{ours} - {other}: mean {mean:+.1f}, 95% lower bound {lower:+.1f}, {other} mean {base:.1f}\n{results}"
    assert lower > 0, msg
    assert mean >= MARGIN * base, msg


def test_qdsearch_beats_archive_free_evol_instruct(results: pd.DataFrame) -> None:
    """MAP-Elites vs the archive-free Evol-Instruct pool at BUDGET calls.

    At small budgets it does not hold: Evol-Instruct pays 2 calls a child (its judging is
    evaluation) against qdsearch's 3, and early on any Evol child fills a new cell; on worlds
    0-9 qdsearch is -9.9 +- 24.8 at 300 calls, +16.6 +- 23.5 at 600, +45.1 +- 28.8 at 1200
    (9/10 wins). So this comparison is made at 1200 calls.
    """
    _check(results, "qdsearch", "evol_instruct")
