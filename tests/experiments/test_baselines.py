"""The baselines experiment runs end to end at equal budget (against the scripted endpoint)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.fakes.world import world
from tests.helpers import write_seeds

pytestmark = pytest.mark.slow  # an experiment run end to end

ROOT = Path(__file__).resolve().parents[2]


def test_baselines_equal_budget(fake_openai: Any, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import baselines
    finally:
        sys.path.pop(0)
    fake = fake_openai(world)
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    argv = ["--base-url", fake.base_url, "--model", "fake", "--json-mode", "json_object", "--embed-base-url",
            fake.base_url, "--seeds", str(seeds), "--budget", "40", "--out", str(tmp_path), "--tag", "t"]  # fmt: skip
    assert baselines.main(argv) == 0
    df = pd.read_csv(tmp_path / "baselines-t.csv").set_index("method")
    assert list(df.index) == ["qdsearch", "evol_instruct", "new_question"]
    # equal budget: every method spent at most the budget, and came within one child of it
    assert (df["counted_calls"] <= 40).all() and (df["counted_calls"] >= 40 - 3).all()
    assert (df["qd_score"] > 0).all() and (df["coverage"] > 0).all()
    # qdsearch pays 3 calls a child (its judge), the baselines 2
    assert df.loc["qdsearch", "children"] < df.loc["evol_instruct", "children"]
    assert {"qdc_vendi", "qdc_quality_mean", "qdc_complexity_mean"} <= set(df.columns)
    assert "| method" in (tmp_path / "baselines-t.md").read_text()
